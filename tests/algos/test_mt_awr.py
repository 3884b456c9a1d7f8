"""Offline MT+FT: the multi-task AWR step against a loop over tasks, resume, fine-tuning on a copy,
and adaptation on MACAW's toy family."""

import dataclasses

import numpy as np
import pytest
import torch

from paper_repro import buffers, nets
from paper_repro.algos import macaw, mt_awr

from test_macaw import TASKS, make_env, toy_buffer  # the toy family, in this folder

torch.set_num_threads(1)
TINY = mt_awr.Config(width=16, depth=2, batch=32, data_stride=1, train_steps=6, meta_batch=2)


def test_networks_are_bias_transform_mlps_without_head_on_obs_and_task_one_hot():
    data = [buffers.offline_arrays(toy_buffer(t["w"], 200, i), 0.99) for i, t in enumerate(TASKS)]
    state = mt_awr.train(make_env, TASKS, 10, dataclasses.replace(TINY, train_steps=1), seed=0, data=data)
    assert state["obs_dim"] == 2 + len(TASKS)
    keys = set(state["params"]["P"])
    assert {"pi0.W", "pi0.b", "pi0.b0", "pi0.Wb"} <= keys and not any(k.startswith("head") for k in keys)
    assert state["params"]["P"]["pi0.W"].shape == (2 + len(TASKS), 16)


def test_multitask_losses_vmapped_over_tasks_equal_a_loop():
    cfg = TINY
    p = macaw.init_params(2 + 3, 1, mt_awr.net_config(cfg), seed=0)
    data = [buffers.offline_arrays(toy_buffer(w, 100, i), 0.99) for i, w in enumerate([1.0, -1.0, 1.0])]
    d = buffers.sample_offline(data, 32, [np.random.default_rng(i) for i in range(3)], contiguous=False)
    onehots = torch.eye(3)
    lv, lp = torch.func.vmap(lambda b, h: mt_awr.losses(p["P"], p["V"], mt_awr.with_task(b, h), cfg))(d, onehots)
    for i in range(3):
        rv, rp = mt_awr.losses(p["P"], p["V"], mt_awr.with_task({k: v[i] for k, v in d.items()}, onehots[i]), cfg)
        torch.testing.assert_close(lv[i], rv)
        torch.testing.assert_close(lp[i], rp)


def test_nan_data_raises_naming_the_losses_and_step():
    """NaN returns in the offline data make the multi-task value loss NaN: training stops at step 0, naming both losses."""
    data = [buffers.offline_arrays(toy_buffer(t["w"], 200, i), 0.99) for i, t in enumerate(TASKS)]
    for d in data:
        d["G"] = np.full_like(d["G"], np.nan)
    with pytest.raises(FloatingPointError, match=r"MT\+FT losses are value nan, policy .* at step 0"):
        mt_awr.train(make_env, TASKS, 10, TINY, seed=3, data=data)


def test_resume_from_checkpoint_ends_where_an_uninterrupted_run_ends(tmp_path):
    data = [buffers.offline_arrays(toy_buffer(t["w"], 200, i), 0.99) for i, t in enumerate(TASKS)]
    straight = mt_awr.train(make_env, TASKS, 10, TINY, seed=3, data=data)
    ck = tmp_path / "ck.pt"

    def stop(m):
        if m["iteration"] == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        mt_awr.train(make_env, TASKS, 10, TINY, seed=3, data=data, checkpoint=str(ck), checkpoint_every=2, log=stop)
    resumed = mt_awr.train(make_env, TASKS, 10, TINY, seed=3, data=data, checkpoint=str(ck), checkpoint_every=2)
    for a, b in zip(nets.leaves(straight["params"]), nets.leaves(resumed["params"])):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.slow
def test_finetuning_on_a_test_tasks_data_finds_its_direction_and_leaves_the_state_alone():
    """Fine-tuned on each direction's data (100 steps), the two adapted policies part the right way: the reward is
    w·a, so the prior (one policy) returns +p and -p on the two tasks, summing to 0, and the adapted returns' sum
    says how far fine-tuning pulled the two copies apart in the right directions. Measured at seeds 0-4: 4.15,
    4.54, 4.72, 3.77, 4.20 (bar 2.0); each adapted return here (seed 0) is positive (1.7 and 2.5). At the
    default 20 steps the sums were 2.98, 3.00, 0.01, 1.11, 2.67: seed luck, so the test fine-tunes longer."""
    cfg = dataclasses.replace(TINY, train_steps=200, batch=64, finetune_steps=100)
    data = [buffers.offline_arrays(toy_buffer(t["w"], 2000, i), 0.99, 1) for i, t in enumerate(TASKS)]
    state = mt_awr.train(make_env, TASKS, 10, cfg, seed=0, data=data)
    before = {k: v.clone() for k, v in state["params"]["P"].items()}
    rows = {w: mt_awr.adapt_and_evaluate(state, lambda w=w: make_env({"w": w}), 10, eval_episodes=3, seed=0,
                                         adapt_data=buffers.offline_arrays(toy_buffer(w, 2000, 99), 0.99, 1))
            for w in (-1.0, 1.0)}
    prior = {w: r[0]["return"] for w, r in rows.items()}
    adapted = {w: r[1]["return"] for w, r in rows.items()}
    assert prior[1.0] == pytest.approx(-prior[-1.0], abs=1e-5), rows  # the same policy on w = ±1
    assert adapted[1.0] + adapted[-1.0] > 2.0, rows
    assert min(adapted.values()) > 0.5, rows
    assert all(torch.equal(before[k], v) for k, v in state["params"]["P"].items())

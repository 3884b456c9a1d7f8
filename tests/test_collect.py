"""The batched K-task loop: equals K one-task runs, resumes exactly, fails loudly on NaN."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from paper_repro import buffers, collect
from paper_repro.algos import sac, td3

SEEDS = [3, 11, 7]


def pendulum():
    return gym.make("Pendulum-v1")


def small(algo, **kw):
    base = dict(total_steps=300, learning_starts=50, batch_size=32, hidden=(32, 32), eval_every=150,
                eval_episodes=1, checkpoint_every=100, log_every=100)
    return algo.Config(**{**base, **kw})


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("algo", [sac, td3])
def test_batched_equals_separate_runs(algo, tmp_path):
    cfg = small(algo)
    batched = collect.train([pendulum] * 3, algo, cfg, tmp_path / "b", seeds=SEEDS, write_outputs=False)
    for k, seed in enumerate(SEEDS):
        one = collect.train([pendulum], algo, cfg, tmp_path / f"s{k}", seeds=[seed], write_outputs=False)
        np.testing.assert_array_equal(one["buffers"][0].arrays()["obs"][:51], batched["buffers"][k].arrays()["obs"][:51])
        for (n, p), q in zip(batched["agent"]["actor"].named_parameters(), one["agent"]["actor"].parameters()):
            torch.testing.assert_close(p[k], q[0], rtol=1e-4, atol=1e-5, msg=f"task {k} {n}")
        np.testing.assert_allclose(batched["buffers"][k].arrays()["reward"], one["buffers"][0].arrays()["reward"],
                                   rtol=1e-4, atol=1e-4)


class Crash(Exception):
    pass


@pytest.mark.parametrize("algo", [sac, td3])
def test_resume_ends_where_uninterrupted_run_ends(algo, tmp_path):
    cfg = small(algo, total_steps=250)
    full = collect.train([pendulum] * 2, algo, cfg, tmp_path / "full", seeds=SEEDS[:2])

    def crash(step):
        if step == 170:  # after the checkpoint at 100, mid-episode
            raise Crash

    with pytest.raises(Crash):
        collect.train([pendulum] * 2, algo, cfg, tmp_path / "cut", seeds=SEEDS[:2], callback=crash)
    assert (tmp_path / "cut" / collect.CHECKPOINT).exists()
    assert not list((tmp_path / "cut").glob("*.npz"))  # nothing complete-looking
    resumed = collect.train([pendulum] * 2, algo, cfg, tmp_path / "cut", seeds=SEEDS[:2])
    for a, b in zip(full["agent"]["actor"].parameters(), resumed["agent"]["actor"].parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for k in range(2):
        x = buffers.load_buffer(tmp_path / "full" / f"task{k}.npz")
        y = buffers.load_buffer(tmp_path / "cut" / f"task{k}.npz")
        for name in buffers.ARRAYS:
            np.testing.assert_array_equal(x[name], y[name])
        assert (tmp_path / "cut" / f"task{k}.curve.csv").read_text() == (tmp_path / "full" / f"task{k}.curve.csv").read_text()
    assert not (tmp_path / "cut" / collect.CHECKPOINT).exists()


def test_outputs(tmp_path):
    cfg = small(sac, total_steps=120)
    collect.train([pendulum] * 2, sac, cfg, tmp_path, seeds=[0, 1], tasks=[{"g": 10.0}, {"g": 9.0}])
    b = buffers.load_buffer(tmp_path / "task1.npz")
    assert len(b["reward"]) == 120 and b["task"] == {"g": 9.0} and b["config"] == dataclasses.asdict(cfg) | {"hidden": [32, 32]}
    assert b["truncated"].sum() == 0 and not b["terminated"].any()
    assert (tmp_path / "task0.curve.csv").read_text().splitlines()[0] == "env_steps,eval_return"
    policy = torch.load(tmp_path / "task0.policy.pt")
    assert policy["net.layers.0.weight"].shape == (3, 32)
    assert (tmp_path / "task0.npz.provenance.json").exists()
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"env_steps", "task", "train/critic_loss", "train/alpha", "time/steps_per_s"} <= set(header)


def test_no_auto_reset_transition_in_buffer(tmp_path):
    cfg = small(sac, total_steps=420, learning_starts=420)  # two full episodes of 200, random actions
    out = collect.train([pendulum], sac, cfg, tmp_path, seeds=[0], write_outputs=False)
    a = out["buffers"][0].arrays()
    assert a["truncated"].nonzero()[0].tolist() == [199, 399]
    # within an episode next_obs[t] == obs[t+1]; across the boundary the new episode starts fresh
    np.testing.assert_array_equal(a["next_obs"][:199], a["obs"][1:200])
    assert not np.array_equal(a["next_obs"][199], a["obs"][200])


def test_nan_loss_names_task_and_step(tmp_path, monkeypatch):
    real = sac.critic_loss

    def poisoned(agent, b, gens, cfg):
        loss, m = real(agent, b, gens, cfg)
        return loss * torch.tensor([1.0, float("nan")]), m

    monkeypatch.setattr(sac, "critic_loss", poisoned)
    with pytest.raises(FloatingPointError, match=r"critic_loss.*task 1.*step 50"):
        collect.train([pendulum] * 2, sac, small(sac), tmp_path, seeds=[0, 1])
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob("*.csv"))

"""MACAW Table 1's online fine-tuning: MACAW+FT and Offline PEARL+FT on the toy family of test_macaw."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from paper_repro.algos import macaw, offline_pearl, pearl
from test_macaw import TINY, make_env, toy_buffer

TASK = {"task_id": 0, "w": 1.0}


def macaw_state(seed=0):
    return macaw.train(make_env, [TASK], 10, dataclasses.replace(TINY, train_steps=0), seed=seed,
                       data=[macaw.task_data(toy_buffer(1.0, 200, 0), TINY)])


def pearl_state(seed=0):
    cfg = offline_pearl.Config(hidden=(16, 16), encoder_hidden=(16, 16), latent_dim=2, batch_size=32,
                               embedding_batch_size=16, eval_context=32, meta_batch=1)
    nets = pearl.Nets(2, 1, cfg, torch.Generator().manual_seed(seed))
    return pearl.new_state(nets, cfg, 2, 1)


def test_macaw_finetuning_rows_updates_and_determinism():
    """After the offline step, the rows come at the asked trajectory counts with the online steps so far;
    the Adam steps change the policy (the final return differs from a run that only collects); the same
    seed gives the same rows. (AWR's fixed point on this toy is the advantage-weighted mean of the data's
    actions, so fine-tuning improves it only slowly: no learning claim here.)"""
    state, data = macaw_state(), macaw.test_data(toy_buffer(1.0, 200, 1), TINY)
    ft = macaw.FineTune(lr=3e-3, value_steps=10, policy_steps=20, burn_in=0)
    kwargs = dict(adapt_data=data, trajectories=12, eval_at=[0, 6, 12], eval_episodes=4, seed=3)
    rows = macaw.finetune(state, lambda: make_env(TASK), 10, ft, **kwargs)
    assert [(r["trajectories"], r["steps"]) for r in rows] == [(0, 0), (6, 60), (12, 120)]
    assert rows == macaw.finetune(state, lambda: make_env(TASK), 10, ft, **kwargs)
    collect_only = macaw.finetune(state, lambda: make_env(TASK), 10, dataclasses.replace(ft, burn_in=12), **kwargs)
    assert collect_only[0] == rows[0] and collect_only[-1]["return"] != rows[-1]["return"]
    # keep_offline=False: the updates read only the trajectories collected online, not D_0 with them
    no_offline = macaw.finetune(state, lambda: make_env(TASK), 10, dataclasses.replace(ft, keep_offline=False), **kwargs)
    assert no_offline[0] == rows[0] and np.isfinite(no_offline[-1]["return"])
    assert [r["return"] for r in no_offline[1:]] != [r["return"] for r in rows[1:]]


class Clock(gym.Env):
    """Observation [t / 10, -1] at step t, reward t + 1: every transition's return-to-go is known by hand."""
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, -1.0], np.float32), {}

    def step(self, action):
        reward, self.t = float(self.t + 1), self.t + 1
        return np.array([self.t / 10, -1.0], np.float32), reward, False, False, {}


def test_macaw_finetuning_value_steps_regress_on_monte_carlo_returns(monkeypatch):
    """The value steps' target is each row's discounted return-to-go to the end of its 10-step episode,
    Σ_{k≥t} γ^{k−t} (k + 1), with no bootstrap from V(s_T) (Eq. 2; the authors' code under no_bootstrap)."""
    state, data = macaw_state(), macaw.test_data(toy_buffer(1.0, 200, 1), TINY)
    gamma = TINY.gamma
    by_hand = [sum(gamma ** (k - t) * (k + 1) for k in range(t, 10)) for t in range(10)]
    seen, value_loss = [], macaw.value_loss

    def spy(V, b, target, cfg):
        if (b["obs"][:, 1] == -1).all():  # the fine-tuning steps on Clock's data (not D_0's offline step)
            seen.append((b["obs"][:, 0].numpy().copy(), target.detach().numpy().copy()))
        return value_loss(V, b, target, cfg)

    monkeypatch.setattr(macaw, "value_loss", spy)
    ft = macaw.FineTune(value_steps=3, policy_steps=1, burn_in=0, keep_offline=False)
    macaw.finetune(state, lambda: gym.wrappers.TimeLimit(Clock(), 10), 10, ft, adapt_data=data, trajectories=5,
                   eval_at=[5], eval_episodes=1, seed=0)
    assert len(seen) == 6  # 3 value steps after trajectories 4 and 5 (a batch of 32 needs 40 rows)
    for obs, target in seen:
        np.testing.assert_allclose(target, np.take(by_hand, np.rint(obs * 10).astype(int)), rtol=1e-6)


def test_pearl_finetuning_rows_and_aggregate_without_offline_data():
    state, data = pearl_state(), offline_pearl.test_data(toy_buffer(1.0, 200, 1), offline_pearl.Config())
    for keep in (True, False):
        ft = offline_pearl.FineTune(steps=3, burn_in=1, keep_offline=keep)
        rows = offline_pearl.finetune(state, lambda: make_env(TASK), 10, ft, adapt_data=data, trajectories=4,
                                      eval_at=[0, 4], eval_episodes=2, seed=0)
        assert [(r["trajectories"], r["steps"]) for r in rows] == [(0, 0), (4, 40)]
        assert all(np.isfinite(r["return"]) for r in rows)


def test_pearl_finetuning_updates_after_every_trajectory_by_default(monkeypatch):
    """App. C.2's schedule: each trajectory, the first included, is followed by ``steps`` PEARL updates; ``burn_in``
    trajectories are collected without any first."""
    state, data = pearl_state(), offline_pearl.test_data(toy_buffer(1.0, 200, 1), offline_pearl.Config())
    calls, update = [], pearl.update
    monkeypatch.setattr(pearl, "update", lambda *a: (calls.append(a[-1]), update(*a))[1])
    assert offline_pearl.FineTune().burn_in == 0
    for burn_in, trajectories, want in ((0, 1, [0, 1]), (0, 2, [0, 1, 0, 1]), (1, 1, []), (1, 2, [0, 1])):
        calls.clear()
        ft = dataclasses.replace(offline_pearl.FineTune(steps=2), burn_in=burn_in)
        offline_pearl.finetune(state, lambda: make_env(TASK), 10, ft, adapt_data=data, trajectories=trajectories,
                               eval_at=[], eval_episodes=1, seed=0)
        assert calls == want, (burn_in, trajectories)


def test_pearl_finetuning_infers_z_from_contexts_of_d0s_size(monkeypatch):
    """z's posterior comes from D_0 first, then from contexts of D_0's size (32 here) drawn from the
    growing aggregate data, never from all of it (PEARL's policy saw z of contexts that size)."""
    state, data = pearl_state(), offline_pearl.test_data(toy_buffer(1.0, 200, 1), offline_pearl.Config())
    sizes, infer = [], pearl.infer
    monkeypatch.setattr(pearl, "infer", lambda nets, context, cfg: (sizes.append(context.size), infer(nets, context, cfg))[1])
    ft = offline_pearl.FineTune(steps=1, burn_in=0, keep_offline=True)
    offline_pearl.finetune(state, lambda: make_env(TASK), 10, ft, adapt_data=data, trajectories=8,
                           eval_at=[0, 8], eval_episodes=1, seed=0)
    assert sizes == [32] * 10  # two evaluations and eight trajectories; the aggregate grows to 112 rows

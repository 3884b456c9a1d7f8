"""SAC and TD3: losses on tiny batches, and learning Pendulum within a small budget."""

import time

import gymnasium as gym
import numpy as np
import pytest
import torch

from paper_repro import collect
from paper_repro.algos import sac, td3

ALGOS = pytest.mark.parametrize("algo", [sac, td3], ids=["sac", "td3"])
from paper_repro.buffers import Batch


def _agent(algo, cfg, k=2):
    gens = [torch.Generator().manual_seed(s) for s in range(k)]
    return algo.init(cfg, gens, 3, 1, np.array([-2.0], np.float32), np.array([2.0], np.float32)), gens


def _batch(k=2, n=8, terminated=0.0):
    g = torch.Generator().manual_seed(0)
    return Batch(torch.randn(k, n, 3, generator=g), torch.rand(k, n, 1, generator=g) * 4 - 2,
                 torch.randn(k, n, generator=g), torch.randn(k, n, 3, generator=g), torch.full((k, n), terminated))


@ALGOS
def test_terminated_transitions_do_not_bootstrap(algo):
    cfg = algo.Config(hidden=(16, 16))
    agent, gens = _agent(algo, cfg)
    b = _batch(terminated=1.0)
    loss, metrics = algo.critic_loss(agent, b, gens, cfg)
    q = agent["critic"](b.obs, b.action)
    scale = 0.5 if algo is sac else 1.0  # SAC halves its squared TD error, as in the SAC paper
    expect = scale * (q - b.reward[:, None]).pow(2).mean(-1).sum(1)
    torch.testing.assert_close(loss, expect)
    assert loss.shape == (2,) and metrics["train/critic_loss"].shape == (2,)


@ALGOS
def test_update_changes_parameters_and_reports_per_task_metrics(algo):
    cfg = algo.Config(hidden=(16, 16))
    agent, gens = _agent(algo, cfg)
    before = [p.clone() for p in agent["actor"].parameters()]
    metrics = algo.update(agent, _batch(), gens, 0, cfg, lambda name, loss: None)
    assert all(v.shape == (2,) for v in metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, agent["actor"].parameters()))


@ALGOS
def test_bf16_autocast_update_runs_with_fp32_master_weights(algo):
    cfg = algo.Config(hidden=(16, 16), amp_bf16=True)
    agent, gens = _agent(algo, cfg)
    metrics = algo.update(agent, _batch(), gens, 0, cfg, lambda name, loss: None)
    assert all(torch.isfinite(v).all() for v in metrics.values())
    assert all(p.dtype == torch.float32 for p in agent["critic"].parameters())


@pytest.mark.slow
@ALGOS
def test_learns_pendulum(algo, tmp_path):
    torch.set_num_threads(1)
    cfg = algo.Config(total_steps=8000, learning_starts=1000, hidden=(64, 64), eval_every=8000, eval_episodes=10,
                    checkpoint_every=10**9, log_every=10**9)
    t0 = time.perf_counter()
    out = collect.train([lambda: gym.make("Pendulum-v1")], algo, cfg, tmp_path, seeds=[0], write_outputs=False)
    final = out["curves"][0][-1][1]
    print(f"{algo.__name__} Pendulum-v1: return {final:.1f} after {cfg.total_steps} steps in {time.perf_counter() - t0:.1f} s")
    assert final > -250

"""PEARL: the product-of-Gaussians posterior and its KL, the batched-over-tasks update against a loop
over tasks, the stop-gradient into the encoder, checkpoint/resume, NaN detection, the test-time rows,
CUDA against CPU, and learning to identify a hidden goal on a 1-D point task."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from paper_repro import io
from paper_repro.algos import pearl
from paper_repro.buffers import Batch


class PointGoal(gym.Env):
    """A point on a line starts near 0.3 and moves by 0.2·a per step; reward -|x - goal|; the goal is
    the hidden task (starting off-centre, the first rewards already tell goals ±g apart)."""

    def __init__(self, goal: float, nan_reward: bool = False):
        self.goal, self.nan_reward = goal, nan_reward
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.3 + float(self.np_random.uniform(-0.05, 0.05))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += 0.2 * float(np.clip(action[0], -1, 1))
        reward = math.nan if self.nan_reward else -abs(self.x - self.goal)
        return np.array([self.x], np.float32), reward, False, False, {}


HORIZON = 10


def make_env(task):
    return gym.wrappers.TimeLimit(PointGoal(task["goal"], task.get("nan", False)), HORIZON)


GOALS = [{"task_id": i, "goal": g} for i, g in enumerate([-1.0, -0.7, 0.7, 1.0])]

TINY = pearl.Config(
    latent_dim=2, encoder_hidden=(16,), hidden=(16, 16), num_iterations=4, num_initial_steps=20,
    num_tasks_sample=2, num_steps_prior=10, num_steps_posterior=10, num_extra_rl_steps_posterior=10,
    num_train_steps_per_itr=5, meta_batch=3, batch_size=8, embedding_batch_size=6)


def tiny_nets(cfg=TINY, dtype=torch.float64, obs_dim=3, act_dim=2):
    return pearl.Nets(obs_dim, act_dim, cfg, torch.Generator().manual_seed(0)).to(dtype)


def random_batch(tasks, n, obs_dim=3, act_dim=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return Batch(obs=torch.randn(tasks, n, obs_dim, generator=g, dtype=torch.float64),
                 action=torch.rand(tasks, n, act_dim, generator=g, dtype=torch.float64) * 2 - 1,
                 reward=torch.randn(tasks, n, generator=g, dtype=torch.float64),
                 next_obs=torch.randn(tasks, n, obs_dim, generator=g, dtype=torch.float64),
                 terminated=(torch.rand(tasks, n, generator=g) < 0.3).double())


# --- posterior and KL ---------------------------------------------------------------


def test_product_of_gaussians_is_the_normalised_product_of_the_densities():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    var = torch.rand(4, 3, generator=g, dtype=torch.float64) + 0.1
    m, v = pearl.product_of_gaussians(mu, var)
    # Σ_n log N(z; μ_n, σ_n²) - log N(z; μ, σ²) must not depend on z
    z = torch.randn(7, 1, 3, generator=g, dtype=torch.float64) * 2
    factors = torch.distributions.Normal(mu, var.sqrt()).log_prob(z).sum(1)
    product = torch.distributions.Normal(m, v.sqrt()).log_prob(z[:, 0])
    diff = factors - product
    torch.testing.assert_close(diff, diff[:1].expand_as(diff))
    # two factors: the textbook closed form
    m2, v2 = pearl.product_of_gaussians(mu[:2], var[:2])
    torch.testing.assert_close(v2, var[0] * var[1] / (var[0] + var[1]))
    torch.testing.assert_close(m2, (mu[0] * var[1] + mu[1] * var[0]) / (var[0] + var[1]))


def test_posterior_narrows_as_context_grows():
    nets = tiny_nets()
    context = pearl.context_of(random_batch(2, 12), TINY)
    variances = [pearl.posterior(nets, context[:, :n])[1] for n in range(1, 13)]
    for before, after in zip(variances, variances[1:]):
        assert (after < before).all()


def test_kl_to_the_standard_normal_prior():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 5, generator=g, dtype=torch.float64)
    var = torch.rand(3, 5, generator=g, dtype=torch.float64) + 0.05
    expected = torch.distributions.kl_divergence(torch.distributions.Normal(mu, var.sqrt()),
                                                 torch.distributions.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(pearl.kl_to_prior(mu, var), expected)
    assert float(pearl.kl_to_prior(torch.zeros(1, 5), torch.ones(1, 5))) == 0.0


# --- the batched update -------------------------------------------------------------


def grads(loss, params):
    return [torch.zeros_like(p) if g is None else g
            for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True))]


def test_batched_losses_and_gradients_equal_a_loop_over_tasks():
    cfg, T, N, C = TINY, 3, 5, 4
    nets = tiny_nets()
    params = [p for p in nets.parameters() if p.requires_grad]
    b, ctx_b = random_batch(T, N), random_batch(T, C, seed=2)
    context = pearl.context_of(ctx_b, cfg)
    g = torch.Generator().manual_seed(3)
    eps_z = torch.randn(T, cfg.latent_dim, generator=g, dtype=torch.float64)
    eps_a = torch.randn(T, N, 2, generator=g, dtype=torch.float64)

    def task(x, t):
        return Batch(*(v[t:t + 1] for v in x))

    qf, kl, z, _, _ = pearl.critic_losses(nets, context, b, eps_z, cfg)
    loop = [pearl.critic_losses(nets, context[t:t + 1], task(b, t), eps_z[t:t + 1], cfg) for t in range(T)]
    torch.testing.assert_close(qf, sum(x[0] for x in loop) / T)
    torch.testing.assert_close(kl, sum(x[1] for x in loop))
    torch.testing.assert_close(z, torch.cat([x[2] for x in loop]))
    batched = grads(qf + kl, params)
    looped = [sum(gs) for gs in zip(*(grads(x[0] / T + x[1], params) for x in loop))]
    for a, e in zip(batched, looped):
        torch.testing.assert_close(a, e)

    vf, pi, _ = pearl.actor_value_losses(nets, b, z, eps_a, cfg)
    loop = [pearl.actor_value_losses(nets, task(b, t), z[t:t + 1], eps_a[t:t + 1], cfg) for t in range(T)]
    torch.testing.assert_close(vf, sum(x[0] for x in loop) / T)
    torch.testing.assert_close(pi, sum(x[1] for x in loop) / T)
    batched = grads(vf + pi, params)
    looped = [sum(gs) for gs in zip(*(grads((x[0] + x[1]) / T, params) for x in loop))]
    for a, e in zip(batched, looped):
        torch.testing.assert_close(a, e)


def test_encoder_is_trained_by_the_critic_and_kl_only():
    cfg = TINY
    nets = tiny_nets()
    enc = list(nets.encoder.parameters())
    b = random_batch(2, 5)
    context = pearl.context_of(random_batch(2, 4, seed=2), cfg)
    eps_z = torch.randn(2, cfg.latent_dim, dtype=torch.float64)
    qf, kl, z, _, _ = pearl.critic_losses(nets, context, b, eps_z, cfg)
    assert all(g.abs().sum() > 0 for g in grads(qf, enc))
    assert all(g.abs().sum() > 0 for g in grads(kl, enc))
    vf, pi, _ = pearl.actor_value_losses(nets, b, z, torch.randn(2, 5, 2, dtype=torch.float64), cfg)
    assert not (vf + pi).requires_grad or all(g.abs().sum() == 0 for g in grads(vf + pi, enc))
    # and the target network is not trained
    assert not any(p.requires_grad for p in nets.target_vf.parameters())


# --- meta-training ------------------------------------------------------------------


def test_train_logs_counts_env_steps_and_calls_on_eval(tmp_path):
    logs, evals = [], []
    state = pearl.train(make_env, GOALS, HORIZON, TINY, seed=0, log=logs.append,
                        on_eval=lambda s, n: evals.append(n), eval_every=100)
    per_iter = TINY.num_tasks_sample * (TINY.num_steps_prior + TINY.num_steps_posterior + TINY.num_extra_rl_steps_posterior)
    expected = [len(GOALS) * TINY.num_initial_steps + per_iter * (i + 1) for i in range(TINY.num_iterations)]
    assert [m["env_steps"] for m in logs] == expected  # [140, 200, 260, 320]
    assert [m["iteration"] for m in logs] == list(range(TINY.num_iterations))
    assert all(np.isfinite(v) for m in logs for v in m.values())
    assert {"train/qf_loss", "train/kl_loss", "train/vf_loss", "train/policy_loss"} <= set(logs[0])
    assert evals == [140, 200, 320]  # crossing 100, crossing 200, and the end
    assert pearl.Config(**state["config"]) == TINY and state["obs_dim"] == 1 and state["act_dim"] == 1


def test_resume_from_checkpoint_ends_bit_exactly_where_an_uninterrupted_run_ends(tmp_path):
    cfg = TINY
    straight = pearl.train(make_env, GOALS, HORIZON, cfg, seed=3)
    ckpt = tmp_path / "ckpt.pt"

    class Killed(Exception):
        pass

    def die_at_3(metrics):
        if metrics["iteration"] == 3:
            raise Killed

    with pytest.raises(Killed):
        pearl.train(make_env, GOALS, HORIZON, cfg, seed=3, log=die_at_3, checkpoint=str(ckpt), checkpoint_every=2)
    assert ckpt.exists()
    resumed = pearl.train(make_env, GOALS, HORIZON, cfg, seed=3, checkpoint=str(ckpt), checkpoint_every=2)
    other_seed = pearl.train(make_env, GOALS, HORIZON, cfg, seed=4)
    for k, v in straight["nets"].items():
        torch.testing.assert_close(resumed["nets"][k], v, rtol=0, atol=0)
    assert any(not torch.equal(other_seed["nets"][k], v) for k, v in straight["nets"].items())


def test_non_finite_loss_raises_naming_the_loss_and_iteration():
    tasks = [dict(t, nan=True) for t in GOALS]
    with pytest.raises(FloatingPointError, match="qf_loss.*iteration 0"):
        pearl.train(make_env, tasks, HORIZON, TINY, seed=0)


def test_adapt_and_evaluate_rows():
    """"prior": the prior mean's deterministic returns on the first 3 episode seeds; "adapted": the posterior
    mean's, of the 2 adaptation trajectories (the first with z from the prior, the second from the posterior
    of the first), on the 3 seeds after them. Recomputed by hand from the pieces; the posterior moved z."""
    from paper_repro.buffers import ReplayBuffer

    state = pearl.train(make_env, GOALS, HORIZON, TINY, seed=0)
    env_fn = lambda: make_env({"goal": 0.5})  # noqa: E731
    rows = pearl.adapt_and_evaluate(state, env_fn, HORIZON, adapt_trajectories=2, eval_episodes=3, seed=1)
    assert [(r["stage"], r["steps"]) for r in rows] == [("prior", 0), ("adapted", 0)]
    nets, env, gen = pearl.load_nets(state), env_fn(), torch.Generator().manual_seed(1)
    mu, var = pearl.prior(TINY)

    def mean_return(z, seeds):
        return float(np.mean([pearl.episode(nets, env, z, HORIZON, s, None) for s in seeds]))

    context = ReplayBuffer(0, 1, 1, grow=True)
    for k, s in enumerate((10_003, 10_004)):
        z = pearl.sample_z(*(pearl.infer(nets, context, TINY) if k >= TINY.num_exp_traj_eval else (mu, var)), gen)
        pearl.episode(nets, env, z, HORIZON, s, None, context)
    posterior = pearl.infer(nets, context, TINY)[0]
    assert not torch.allclose(posterior, mu, atol=1e-3)
    assert rows[0]["return"] == pytest.approx(mean_return(mu, range(10_000, 10_003)), rel=1e-6)
    assert rows[1]["return"] == pytest.approx(mean_return(posterior, range(10_005, 10_008)), rel=1e-6)
    assert rows[1]["return"] != pytest.approx(mean_return(mu, range(10_005, 10_008)), rel=1e-6)
    assert rows == pearl.adapt_and_evaluate(state, env_fn, HORIZON, adapt_trajectories=2, eval_episodes=3, seed=1)
    with pytest.raises(TypeError, match="relabel"):
        pearl.adapt_and_evaluate(state, env_fn, HORIZON, adapt_trajectories=2, eval_episodes=3, seed=1, relabel=1)


def test_staged_adaptation_conditions_on_all_context_so_far():
    """AdMRL's schedule: n = 0 is the prior mean's return (the classic protocol's "prior" row, same seed),
    then the posterior mean of all context after each stage; the samples are the context's size."""
    state = pearl.train(make_env, GOALS, HORIZON, TINY, seed=0)
    env_fn = lambda: make_env({"goal": 0.5})  # noqa: E731
    kw = dict(adapt_trajectories=0, eval_episodes=3, seed=1, stages=3, stage_trajectories=2)
    rows = pearl.adapt_and_evaluate(state, env_fn, HORIZON, **kw)
    assert [(r["stage"], r["steps"], r["samples"]) for r in rows] == [("adapted", n, n) for n in (0, 20, 40, 60)]
    classic = pearl.adapt_and_evaluate(state, env_fn, HORIZON, adapt_trajectories=2, eval_episodes=3, seed=1)
    assert rows[0]["return"] == classic[0]["return"]
    assert rows == pearl.adapt_and_evaluate(state, env_fn, HORIZON, **kw)
    assert len({r["return"] for r in rows}) == 4


def test_saved_model_is_plain_data_and_adapts_as_the_state(tmp_path):
    """model.pt loads with torch's weights_only loader (tensors, numbers, strings, lists, dicts only)."""
    state = pearl.train(make_env, GOALS, HORIZON, TINY, seed=0)
    io.save_checkpoint(tmp_path / "model.pt", state)
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    env_fn = lambda: make_env({"goal": 0.5})  # noqa: E731
    kw = dict(adapt_trajectories=2, eval_episodes=2, seed=1)
    rows = pearl.adapt_and_evaluate(loaded, env_fn, HORIZON, **kw)
    assert rows == pearl.adapt_and_evaluate(state, env_fn, HORIZON, **kw)


# --- devices ------------------------------------------------------------------------


def test_train_returns_cpu_tensors_and_an_unknown_device_is_refused():
    """The state (model.pt) holds CPU tensors, so it loads on a machine without a GPU. Config
    strings reach ``train`` through ``config.resolve_device``; a bad one given directly fails at
    once with torch's message (no check of ours)."""
    state = pearl.train(make_env, GOALS, HORIZON, dataclasses.replace(TINY, num_iterations=1), seed=0, device="cpu")
    assert all(t.device.type == "cpu" for t in state["nets"].values())
    with pytest.raises(RuntimeError, match="device string: gpu"):
        pearl.train(make_env, GOALS, HORIZON, TINY, seed=0, device="gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_matches_cpu_run(tmp_path):
    """Initial weights and every random draw come from the CPU generators on every device, so a CUDA
    run starts where the CPU run starts and stays within float32 tolerance of it over its first
    updates (2 iterations, 10 gradient steps); its state and its checkpoint hold CPU tensors, and
    test-time adaptation on CUDA gives the CPU's returns."""
    cfg = dataclasses.replace(TINY, num_iterations=2)
    ckpt = tmp_path / "ckpt.pt"
    cpu = pearl.train(make_env, GOALS, HORIZON, cfg, seed=0, device="cpu")
    gpu = pearl.train(make_env, GOALS, HORIZON, cfg, seed=0, device="cuda", checkpoint=str(ckpt), checkpoint_every=1)
    saved_at = []  # where each tensor of the checkpoint was when it was saved
    torch.load(ckpt, weights_only=True, map_location=lambda storage, location: saved_at.append(location) or storage)
    assert set(saved_at) == {"cpu"}
    for k, v in cpu["nets"].items():
        assert gpu["nets"][k].device.type == "cpu", k
        torch.testing.assert_close(gpu["nets"][k], v, rtol=1e-3, atol=1e-3, msg=k)
    kw = dict(adapt_trajectories=2, eval_episodes=2, seed=1)
    rows = {d: pearl.adapt_and_evaluate(cpu, lambda: make_env({"goal": 0.5}), HORIZON, device=d, **kw)
            for d in ("cpu", "cuda")}
    assert [r["return"] for r in rows["cuda"]] == pytest.approx([r["return"] for r in rows["cpu"]], rel=1e-3, abs=1e-3)


def returns_of_random_policy(goal, episodes, seed):
    env = make_env({"goal": goal})
    rng = np.random.default_rng(seed)
    out = []
    for i in range(episodes):
        env.reset(seed=seed + i)
        out.append(sum(env.step(rng.uniform(-1, 1, 1))[1] for _ in range(HORIZON)))
    return float(np.mean(out))


@pytest.mark.slow
def test_pearl_learns_to_infer_the_goal():
    """Goals ±1 (like cheetah-dir): the prior-mean policy cannot know the side; after two
    trajectories of context, the posterior-mean policy heads to the goal."""
    torch.set_num_threads(1)
    goals = [{"task_id": 0, "goal": -1.0}, {"task_id": 1, "goal": 1.0}]
    cfg = pearl.Config(
        encoder_hidden=(32, 32), hidden=(32, 32), num_iterations=40, num_initial_steps=50, num_tasks_sample=3,
        num_steps_prior=20, num_steps_posterior=0, num_extra_rl_steps_posterior=20, num_train_steps_per_itr=60,
        meta_batch=4, batch_size=64, embedding_batch_size=20, policy_lr=1e-3, qf_lr=1e-3, vf_lr=1e-3,
        context_lr=1e-3)
    state = pearl.train(make_env, goals, HORIZON, cfg, seed=0)
    prior, adapted, random = [], [], []
    for i, t in enumerate(goals):
        rows = pearl.adapt_and_evaluate(state, lambda t=t: make_env(t), HORIZON, adapt_trajectories=2,
                                        eval_episodes=2, seed=i)
        prior.append(rows[0]["return"])
        adapted.append(rows[1]["return"])
        random.append(returns_of_random_policy(t["goal"], 10, i))
    assert np.mean(adapted) > np.mean(prior) + 2.0, (adapted, prior)
    assert np.mean(adapted) > np.mean(random) + 2.0, (adapted, random)

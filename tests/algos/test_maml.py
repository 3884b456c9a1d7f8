"""MAML-TRPO: the vmapped inner loop against a loop over tasks, the meta-gradient against finite
differences, the TRPO solver and its line search, CUDA against CPU, and learning on MAML's 2-D
navigation toy problem."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from paper_repro import io, meta
from paper_repro.algos import maml


def tiny(dtype=torch.float32, tasks=3, K=4, T=6, seed=0):
    torch.manual_seed(seed)
    policy = maml.GaussianMLP(3, 2, (8,)).to(dtype)
    params = {k: v.detach().clone() for k, v in policy.named_parameters()}
    g = torch.Generator().manual_seed(seed)

    def batch():
        mask = torch.ones(tasks, K, T, dtype=dtype)
        mask[:, 0, -2:] = 0  # one trajectory ended early
        return maml.Trajectories(
            torch.randn(tasks, K, T, 3, generator=g, dtype=dtype), torch.randn(tasks, K, T, 2, generator=g, dtype=dtype),
            torch.randn(tasks, K, T, generator=g, dtype=dtype), mask, torch.randn(tasks, K, T, generator=g, dtype=dtype) * mask)

    return policy, params, batch(), batch()


def test_vmapped_inner_loop_matches_a_loop_over_tasks():
    policy, params, pre, _ = tiny()
    cfg = maml.Config(inner_steps=2)
    batched = maml.adapt_tasks(policy, params, pre, cfg)
    for i in range(pre.obs.shape[0]):
        one = maml.adapt(policy, params, maml.Trajectories(*(x[i] for x in pre)), cfg)
        for k in params:
            torch.testing.assert_close(batched[k][i], one[k], rtol=1e-5, atol=1e-6)


def test_inner_step_is_plain_gradient_descent():
    policy, params, pre, _ = tiny()
    b = maml.Trajectories(*(x[0] for x in pre))
    p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = maml.pg_loss(policy, p, b)
    grads = dict(zip(p, torch.autograd.grad(loss, list(p.values()))))
    adapted = maml.adapt(policy, params, b, maml.Config())
    for k in params:
        torch.testing.assert_close(adapted[k], params[k] - 0.1 * grads[k])


def test_meta_gradient_matches_finite_differences():
    policy, params, pre, post = tiny(torch.float64)
    cfg = maml.Config()
    old = maml.adapt_tasks(policy, params, pre, cfg)
    old_logp = torch.vmap(lambda p, b: maml.log_prob(policy, p, b.obs, b.action))(old, post).detach() + 0.1

    def f(p):
        return maml.surrogate(policy, p, pre, post, old_logp, cfg)

    g = meta.flat(torch.func.grad(f)(params))
    rng = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(g.shape, generator=rng, dtype=torch.float64)
        eps = 1e-6
        theta = meta.flat(params)
        fd = (f(meta.unflat(theta + eps * v, params)) - f(meta.unflat(theta - eps * v, params))) / (2 * eps)
        assert float(g @ v) == pytest.approx(float(fd), rel=1e-5, abs=1e-8)


def test_conjugate_gradient_solves_spd_systems():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 6))
    A = torch.tensor(m @ m.T + 6 * np.eye(6))
    b = torch.tensor(rng.normal(size=6))
    x, _ = meta.conjugate_gradient(lambda v: A @ v, b, iters=20)
    torch.testing.assert_close(A @ x, b, rtol=1e-8, atol=1e-8)


def test_trpo_update_stays_in_the_trust_region_and_improves_the_surrogate():
    policy, params, pre, post = tiny()
    cfg = maml.Config(max_kl=0.01)
    new, metrics = maml.update(policy, params, pre, post, cfg)
    assert metrics["train/kl"] <= 0.01 + 1e-6
    assert metrics["train/surrogate"] < metrics["train/surrogate_before"]
    assert any(not torch.equal(new[k], params[k]) for k in params)


def test_line_search_shrinks_the_step_by_backtrack_ratio():
    """Each rejected try shrinks the TRPO step by ``backtrack_ratio`` (rllab's 0.8), so an accepted step
    after i rejections is backtrack_ratio**i of the full step, whatever the ratio. A trust region of
    KL 1 makes the full step fail a few times."""
    policy, params, pre, post = tiny(torch.float64)
    assert maml.Config().backtrack_ratio == 0.8
    full_steps, tries = [], []
    for ratio in (0.5, 0.8):
        cfg = maml.Config(max_kl=1.0, backtrack_ratio=ratio)
        new, metrics = maml.update(policy, params, pre, post, cfg)
        i = metrics["train/line_search_steps"]
        assert 0 < i < cfg.line_search_steps
        tries.append(i)
        full_steps.append((meta.flat(new) - meta.flat(params)) / ratio**i)
    assert tries[0] < tries[1]  # the smaller ratio gets inside the trust region in fewer tries
    torch.testing.assert_close(full_steps[0], full_steps[1])


def test_baseline_fits_returns_and_returns_respect_episode_ends():
    rew = np.ones((2, 5), np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], np.float32)
    ret = maml.discounted_returns(rew, mask, 1.0)
    np.testing.assert_array_equal(ret, [[5, 4, 3, 2, 1], [2, 1, 0, 0, 0]])
    full = np.ones_like(mask)
    fitted = maml.fit_baseline(np.zeros((2, 5, 1), np.float32), maml.discounted_returns(rew, full, 1.0), full, 1e-5)
    np.testing.assert_allclose(fitted, [[5, 4, 3, 2, 1]] * 2, atol=0.05)  # the time features explain them


class PointNav(gym.Env):
    """MAML's 2-D navigation: move a point to a goal; reward = -distance; actions clipped to ±0.1."""

    def __init__(self, goal):
        self.goal = np.asarray(goal, np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = np.zeros(2, np.float32)
        return self.pos.copy(), {}

    def step(self, action):
        self.pos = self.pos + np.clip(action, -0.1, 0.1)
        return self.pos.copy(), -float(np.linalg.norm(self.pos - self.goal)), False, False, {}


@pytest.mark.slow
def test_maml_learns_to_adapt_on_point_navigation():
    """Three seeds, each: 25 meta-iterations on 30 goals, then 10 held-out goals. Averaged over the seeds,
    (a) the post-adaptation training return of the last 3 iterations is above the first 3's, (b) on held-out
    goals one inner step on 10 trajectories raises the return, (c) AdMRL's schedule (one step per stage of 10
    trajectories) after 3 stages (600 samples) is above n = 0. Measured at seeds 0, 1, 2: (a) +4.8, +2.9,
    +4.9; (b) +3.2, +4.0, +3.2; (c) +4.7, +5.6, +3.3; with no learning each is 0. The bars, 2, 1.5 and 2,
    are under every seed's value and about half the mean (which moves by about ±0.6 between seed triples)."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    goals = [{"goal": g} for g in rng.uniform(-0.5, 0.5, (40, 2))]

    def make_env(task):
        return gym.wrappers.TimeLimit(PointNav(task["goal"]), 20)

    cfg = maml.Config(hidden=(32, 32), trajectories=10, meta_batch=10, meta_iterations=25, init_log_std=-1.0)
    gains = []
    for seed in range(3):
        history = []
        state = maml.train(make_env, goals[:30], horizon=20, cfg=cfg, seed=seed, log=history.append)
        first = np.mean([h["train/adapted_return"] for h in history[:3]])
        last = np.mean([h["train/adapted_return"] for h in history[-3:]])
        rows = [row for i, t in enumerate(goals[30:])
                for row in maml.adapt_and_evaluate(state, lambda t=t: make_env(t), 20, adapt_trajectories=10,
                                                   eval_episodes=10, seed=i)]
        returns = {stage: np.mean([r["return"] for r in rows if r["stage"] == stage]) for stage in ("prior", "adapted")}
        staged = [row for i, t in enumerate(goals[30:])
                  for row in maml.adapt_and_evaluate(state, lambda t=t: make_env(t), 20, adapt_trajectories=0,
                                                     eval_episodes=10, seed=i, stages=3, stage_trajectories=10)]
        by_n = {n: np.mean([r["return"] for r in staged if r["steps"] == n]) for n in (0, 600)}
        gains.append((last - first, returns["adapted"] - returns["prior"], by_n[600] - by_n[0]))
    training, one_step, staged_gain = np.mean(gains, axis=0)
    assert training > 2.0, gains
    assert one_step > 1.5, gains
    assert staged_gain > 2.0, gains


def test_resume_from_checkpoint_ends_where_an_uninterrupted_run_ends(tmp_path):
    goals = [{"goal": g} for g in np.random.default_rng(0).uniform(-0.5, 0.5, (6, 2))]

    def make_env(task):
        return gym.wrappers.TimeLimit(PointNav(task["goal"]), 5)

    cfg = maml.Config(hidden=(8,), trajectories=2, meta_batch=2, meta_iterations=6)
    straight = maml.train(make_env, goals, 5, cfg, seed=3)["params"]

    ckpt = tmp_path / "ckpt.pt"

    class Killed(Exception):
        pass

    def die_at_4(metrics):
        if metrics["iteration"] == 4:
            raise Killed

    with pytest.raises(Killed):
        maml.train(make_env, goals, 5, cfg, seed=3, log=die_at_4, checkpoint=str(ckpt), checkpoint_every=2)
    assert ckpt.exists()
    resumed = maml.train(make_env, goals, 5, cfg, seed=3, checkpoint=str(ckpt), checkpoint_every=2)["params"]
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=0, atol=0)


def test_on_eval_is_called_when_env_steps_cross_a_multiple_and_at_the_end():
    goals = [{"goal": g} for g in np.random.default_rng(0).uniform(-0.5, 0.5, (4, 2))]

    def make_env(task):
        return gym.wrappers.TimeLimit(PointNav(task["goal"]), 5)

    cfg = maml.Config(hidden=(8,), trajectories=2, meta_batch=2, meta_iterations=5)  # 40 env steps per iteration
    calls = []
    state = maml.train(make_env, goals, 5, cfg, seed=0, on_eval=lambda s, n: calls.append((n, s["params"])), eval_every=100)
    assert [n for n, _ in calls] == [120, 200]  # crossing 100 (at 120) and the end, once
    assert calls[-1][1] is state["params"]
    rows = maml.adapt_and_evaluate(state, lambda: make_env(goals[0]), 5, adapt_trajectories=2, eval_episodes=3, seed=0)
    assert [(r["stage"], r["steps"]) for r in rows] == [("prior", 0), ("adapted", 0)]


def test_staged_adaptation_rows_and_update_rules():
    """AdMRL's schedule: evaluations at n = 0 and after each stage of ``stage_trajectories`` trajectories,
    counted in samples; deterministic per seed; "vpg" is MAML's inner step (nothing moves with a zero
    step size), "trpo" one TRPO step that stays in the trust region."""
    goals = [{"goal": g} for g in np.random.default_rng(0).uniform(-0.5, 0.5, (4, 2))]
    make_env = lambda: nav_env(goals[0])  # noqa: E731
    state = maml.train(nav_env, goals, 5, maml.Config(hidden=(8,), trajectories=2, meta_batch=2, meta_iterations=1), seed=0)
    kw = dict(adapt_trajectories=0, eval_episodes=3, seed=2, stages=2, stage_trajectories=4)
    rows = maml.adapt_and_evaluate(state, make_env, 5, **kw)
    assert [(r["stage"], r["steps"], r["samples"]) for r in rows] == [("adapted", 0, 0), ("adapted", 20, 20), ("adapted", 40, 40)]
    assert rows == maml.adapt_and_evaluate(state, make_env, 5, **kw)
    frozen = {**state, "config": {**state["config"], "inner_lr": 0.0}}
    flat = [r["return"] for r in maml.adapt_and_evaluate(frozen, make_env, 5, **kw)]
    assert flat[0] == rows[0]["return"] and len(set(flat)) == 3  # same policy, fresh episodes each time
    # a zero step moves nothing: the rows of a run whose inner step is the identity; the real step moves
    real_adapt = maml.adapt
    maml.adapt = lambda policy, params, batch, cfg: params
    try:
        unmoved = [r["return"] for r in maml.adapt_and_evaluate(state, make_env, 5, **kw)]
    finally:
        maml.adapt = real_adapt
    assert flat == unmoved and [r["return"] for r in rows] != unmoved
    trpo = maml.adapt_and_evaluate(state, make_env, 5, **kw, step="trpo")
    assert trpo[0] == rows[0] and [r["return"] for r in trpo[1:]] != [r["return"] for r in rows[1:]]
    with pytest.raises(ValueError, match="'vpg' or 'trpo'"):
        maml.adapt_and_evaluate(state, make_env, 5, **kw, step="sgd")


def test_trpo_step_of_staged_adaptation_is_one_trust_region_update():
    """MT-joint's fine-tune: the parameters after a stage are ``update`` on that stage's batch alone."""
    policy, params, pre, _ = tiny()
    one = maml.Trajectories(*(x[:1] for x in pre))
    cfg = maml.Config(inner_steps=0, max_kl=0.01)
    new, metrics = maml.update(policy, params, one, one, cfg)
    assert 0 < metrics["train/kl"] <= 0.01 + 1e-6 and metrics["train/surrogate"] < metrics["train/surrogate_before"]
    with torch.no_grad():  # no inner step: the KL is the plain policy's on the stage's observations
        kl = maml.gaussian_kl(policy, params, new, one.obs[0])
    assert float((kl * one.mask[0]).sum() / one.mask[0].sum()) == pytest.approx(metrics["train/kl"], rel=1e-4)


def test_no_inner_step_is_multi_task_trpo():
    """inner_steps 0 (AdMRL's MT-joint): one set of trajectories per task and iteration, counted once, and
    the post-update returns are the pre-update ones."""
    cfg = maml.Config(hidden=(8,), trajectories=2, meta_batch=2, meta_iterations=3, inner_steps=0)
    history = []
    maml.train(nav_env, NAV_GOALS, 5, cfg, seed=0, log=history.append)
    assert [h["env_steps"] for h in history] == [20, 40, 60]
    assert all(h["train/pre_return"] == h["train/adapted_return"] for h in history)


def test_saved_model_is_plain_data_and_adapts_as_the_state(tmp_path):
    """model.pt loads with torch's weights_only loader (tensors, numbers, strings, lists, dicts only)."""
    goals = [{"goal": g} for g in np.random.default_rng(0).uniform(-0.5, 0.5, (4, 2))]
    make_env = lambda task: gym.wrappers.TimeLimit(PointNav(task["goal"]), 5)  # noqa: E731
    state = maml.train(make_env, goals, 5, maml.Config(hidden=(8,), trajectories=2, meta_batch=2, meta_iterations=1),
                       seed=0)
    io.save_checkpoint(tmp_path / "model.pt", state)
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    kw = dict(adapt_trajectories=2, eval_episodes=2, seed=0)
    assert maml.adapt_and_evaluate(loaded, lambda: make_env(goals[0]), 5, **kw) == \
        maml.adapt_and_evaluate(state, lambda: make_env(goals[0]), 5, **kw)


# --- devices ------------------------------------------------------------------------


def nav_env(task):
    return gym.wrappers.TimeLimit(PointNav(task["goal"]), 5)


NAV_GOALS = [{"goal": g} for g in np.random.default_rng(0).uniform(-0.5, 0.5, (4, 2))]


def test_a_nan_reward_raises_naming_the_meta_iteration():
    cfg = maml.Config(hidden=(8,), trajectories=2, meta_batch=2, meta_iterations=2)
    with pytest.raises(FloatingPointError, match=r"MAML-TRPO: non-finite metrics at meta-iteration 0"):
        maml.train(nav_env, [{"goal": np.array([np.nan, 0.0])}], 5, cfg, seed=0)


def test_train_returns_cpu_tensors_and_an_unknown_device_is_refused():
    """The state (model.pt) holds CPU tensors, so it loads on a machine without a GPU. Config
    strings reach ``train`` through ``config.resolve_device``; a bad one given directly fails at
    once with torch's message (no check of ours)."""
    cfg = maml.Config(hidden=(8,), trajectories=2, meta_batch=2, meta_iterations=1)
    state = maml.train(nav_env, NAV_GOALS, 5, cfg, seed=0, device="cpu")
    assert all(t.device.type == "cpu" for t in state["params"].values())
    with pytest.raises(RuntimeError, match="device string: gpu"):
        maml.train(nav_env, NAV_GOALS, 5, cfg, seed=0, device="gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_matches_cpu_run(tmp_path):
    """Initial weights and every random draw come from the CPU generators on every device, so a CUDA
    run starts where the CPU run starts and stays within float32 tolerance of it over its first
    meta-updates; its state and its checkpoint hold CPU tensors, and test-time adaptation on CUDA
    gives the CPU's returns. The conjugate-gradient solve at rllab's damping (1e-5) amplifies
    rounding-level differences of its inputs ~10⁴-fold on this tiny problem (1e-7 noise in the
    observations moves the weights by ~1e-2 after one update, on the CPU alone); damping 0.1
    conditions it, so the comparison tests the device path and not the conditioning."""
    cfg = maml.Config(hidden=(8,), trajectories=2, meta_batch=2, meta_iterations=2, cg_damping=0.1)
    logs = {"cpu": [], "cuda": []}
    ckpt = tmp_path / "ckpt.pt"
    cpu = maml.train(nav_env, NAV_GOALS, 5, cfg, seed=0, log=logs["cpu"].append, device="cpu")
    gpu = maml.train(nav_env, NAV_GOALS, 5, cfg, seed=0, log=logs["cuda"].append, device="cuda",
                     checkpoint=str(ckpt), checkpoint_every=1)
    saved_at = []  # where each tensor of the checkpoint was when it was saved
    torch.load(ckpt, weights_only=True, map_location=lambda storage, location: saved_at.append(location) or storage)
    assert set(saved_at) == {"cpu"}
    # an accepted line-search step that differs is a discrete change: name it before comparing weights
    assert [m["train/line_search_steps"] for m in logs["cuda"]] == [m["train/line_search_steps"] for m in logs["cpu"]]
    for k, v in cpu["params"].items():
        assert gpu["params"][k].device.type == "cpu", k
        torch.testing.assert_close(gpu["params"][k], v, rtol=1e-3, atol=1e-3, msg=k)
    kw = dict(adapt_trajectories=2, eval_episodes=2, seed=1)
    rows = {d: maml.adapt_and_evaluate(cpu, lambda: nav_env(NAV_GOALS[0]), 5, device=d, **kw) for d in ("cpu", "cuda")}
    assert [r["return"] for r in rows["cuda"]] == pytest.approx([r["return"] for r in rows["cpu"]], rel=1e-3, abs=1e-3)

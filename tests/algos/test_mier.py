"""MIER: the vmapped model meta-loss against a loop, context adaptation, the context-conditioned SAC,
Algorithm 1 (checkpoint/resume, NaN checks, learning on a toy family) and Algorithm 2 (relabelling)."""

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from paper_repro import io
from paper_repro.algos import mier
from paper_repro.buffers import Batch

torch.set_num_threads(1)


def _setup(dtype=torch.float64, tasks=3, n=16, predict_dynamics=True, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = mier.Config(model_hidden=(16, 16), predict_dynamics=predict_dynamics, **kw)
    model = mier.ContextModel(3, 2, cfg).to(dtype)
    params = mier.init_params(model, cfg)
    params = {k: (v.detach().to(dtype) + (0.1 * torch.randn_like(v.to(dtype)) if k == "context" else 0)
                  ).requires_grad_(True) for k, v in params.items()}

    def batch():
        return Batch(torch.randn(tasks, n, 3, dtype=dtype), torch.randn(tasks, n, 2, dtype=dtype),
                     torch.randn(tasks, n, dtype=dtype), torch.randn(tasks, n, 3, dtype=dtype),
                     torch.zeros(tasks, n, dtype=dtype))
    return cfg, model, params, batch(), batch()


@pytest.mark.parametrize("predict_dynamics", [True, False])
def test_vmapped_meta_loss_matches_loop(predict_dynamics):
    cfg, model, params, adapt, evaluate = _setup(predict_dynamics=predict_dynamics)
    loss, _, post = mier.model_meta_loss(model, params, adapt, evaluate, cfg)
    ref, ref_post = mier.model_meta_loss_loop(model, params, adapt, evaluate, cfg)
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(post, ref_post)
    keys = list(params)
    g1 = torch.autograd.grad(loss, [params[k] for k in keys])
    g2 = torch.autograd.grad(ref, [params[k] for k in keys])
    for k, a, b in zip(keys, g1, g2):
        torch.testing.assert_close(a, b, msg=k)


def test_adapt_context_matches_manual_autograd_steps():
    cfg, model, params, adapt, _ = _setup()
    theta = {k: v for k, v in params.items() if k != "context"}
    b = Batch(*(x[0] for x in adapt))
    ctx = params["context"]
    for _ in range(cfg.inner_steps):
        (g,) = torch.autograd.grad(mier.nll(model, theta, ctx, b, cfg), ctx, create_graph=True)
        g = g * torch.clamp(cfg.inner_grad_clip / (g.norm() + 1e-12), max=1.0)
        ctx = ctx - cfg.inner_lr * g
    torch.testing.assert_close(mier.adapt_context(model, theta, params["context"], b, cfg), ctx)


def test_meta_gradient_matches_finite_differences():
    cfg, model, params, adapt, evaluate = _setup(inner_grad_clip=None)

    def f():
        return mier.model_meta_loss(model, params, adapt, evaluate, cfg)[0]
    loss = f()
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    eps = 1e-6
    checks = [("context", i) for i in range(cfg.context_dim)] + [("net.0.weight", 0), ("net.0.weight", 7),
                                                              ("net.4.bias", 1), ("min_logvar", 0)]
    with torch.no_grad():
        for k, i in checks:
            flat = params[k].view(-1)
            old = flat[i].item()
            flat[i] = old + eps
            up = f().item()
            flat[i] = old - eps
            down = f().item()
            flat[i] = old
            fd = (up - down) / (2 * eps)
            assert abs(fd - grads[k].view(-1)[i].item()) < 1e-6 * max(1.0, abs(fd)), (k, i, fd)


def test_update_raises_on_nan_with_step():
    cfg, model, params, adapt, evaluate = _setup(dtype=torch.float32)
    opt = torch.optim.Adam(params.values(), lr=1e-3)
    m, ctx = mier.model_update(model, params, opt, adapt, evaluate, cfg, step=0)
    assert set(m) >= {"train/model_loss", "train/model_nll_pre", "train/model_nll_post"}
    assert ctx.shape == (3, cfg.context_dim) and not ctx.requires_grad
    bad = adapt._replace(reward=adapt.reward * float("nan"))
    with pytest.raises(FloatingPointError, match="step 7"):
        mier.model_update(model, params, opt, bad, evaluate, cfg, step=7)


def test_context_adaptation_identifies_task_parameter():
    """Toy family: r = w·a[0] + s[0], w ~ U(-1, 1) per task. After meta-training, adapting the context
    on a few transitions must predict the held-out rewards much better than the prior context."""
    torch.manual_seed(0)
    cfg = mier.Config(model_hidden=(64, 64), predict_dynamics=False, adapt_batch=32)
    model = mier.ContextModel(2, 1, cfg)
    params = mier.init_params(model, cfg)
    opt = torch.optim.Adam(params.values(), lr=3e-3)

    def batches(tasks, n):
        w = torch.rand(tasks, 1, 1) * 2 - 1
        def one():
            s, a = torch.randn(tasks, n, 2), torch.rand(tasks, n, 1) * 2 - 1
            return Batch(s, a, (w * a + s[..., :1])[..., 0], s, torch.zeros(tasks, n))
        return one(), one()

    for step in range(300):
        mier.model_update(model, params, opt, *batches(10, cfg.adapt_batch), cfg, step=step)
    theta = {k: v for k, v in params.items() if k != "context"}
    adapt, evaluate = batches(50, cfg.adapt_batch)
    post = mier.adapt_contexts(model, theta, params["context"], adapt, cfg).detach()
    with torch.no_grad():
        pre_mean = torch.func.vmap(lambda b: torch.func.functional_call(model, theta, (b.obs, b.action, params["context"]))[0])(evaluate)
        post_mean = torch.func.vmap(lambda c, b: torch.func.functional_call(model, theta, (b.obs, b.action, c))[0])(post, evaluate)
    pre_err = ((pre_mean[..., 0] - evaluate.reward) ** 2).mean().item()
    post_err = ((post_mean[..., 0] - evaluate.reward) ** 2).mean().item()
    print(f"prior-context MSE {pre_err:.4f}, adapted-context MSE {post_err:.4f}")
    assert post_err < 0.3 * pre_err, (pre_err, post_err)


# --- Algorithms 1 and 2 on a toy family ------------------------------------------------


class Target(gym.Env):
    """Toy reward-only family: r = -(a - w)², w the task; states are uniform noise."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, w, nan_reward=False):
        self.w, self.nan_reward = w, nan_reward

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        r = float("nan") if self.nan_reward else -float((action[0] - self.w) ** 2)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), r, False, False, {}


def make_env(task):
    return gym.wrappers.TimeLimit(Target(task["w"], task.get("nan", False)), 10)


TASKS = [{"task_id": i, "w": w} for i, w in enumerate(np.linspace(-0.8, 0.8, 6))]
TINY = mier.Config(model_hidden=(16, 16), sac_hidden=(16, 16), epochs=4, tasks_per_epoch=2, steps_prior=10,
                   steps_adapted=10, initial_repeats=1, train_steps=3, meta_batch=2, adapt_batch=8,
                   predict_dynamics=False, test_model_steps=2, test_batch=16, relabel_every=2, relabel_states=40,
                   relabel_tasks=4, model_buffer_size=80)


def final_weights(state):
    return {**{f"model.{k}": v for k, v in state["model"].items()},
            **{f"actor.{k}": v for k, v in state["actor"].items()},
            **{f"critic.{k}": v for k, v in state["critic"].items()}, "log_alpha": state["log_alpha"]}


def test_resume_from_checkpoint_ends_where_an_uninterrupted_run_ends(tmp_path):
    straight = mier.train(make_env, TASKS, 10, TINY, seed=3)
    ckpt = tmp_path / "ckpt.pt"

    class Killed(Exception):
        pass

    def die_at_2(metrics):
        if metrics["iteration"] == 2:
            raise Killed

    with pytest.raises(Killed):
        mier.train(make_env, TASKS, 10, TINY, seed=3, log=die_at_2, checkpoint=str(ckpt), checkpoint_every=1)
    assert ckpt.exists()
    logged = []
    resumed = mier.train(make_env, TASKS, 10, TINY, seed=3, log=logged.append, checkpoint=str(ckpt),
                         checkpoint_every=1)
    assert [m["iteration"] for m in logged] == [2, 3]
    a, b = final_weights(straight), final_weights(resumed)
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)
    for x, y in zip(straight["buffers"], resumed["buffers"]):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_train_logs_env_steps_and_calls_on_eval():
    logged, evals = [], []
    state = mier.train(make_env, TASKS, 10, TINY, seed=0, log=logged.append,
                       on_eval=lambda s, n: evals.append(n), eval_every=100)
    # initial data: 6 tasks x 10 steps; then 2 tasks x 20 steps per epoch
    assert [m["env_steps"] for m in logged] == [100, 140, 180, 220]
    assert evals == [100, 220]
    assert {"train/model_nll_post", "train/critic_loss", "train/actor_loss", "collect/reward_prior",
            "collect/reward_adapted"} <= set(logged[0])
    sizes = [len(b["reward"]) for b in state["buffers"]]
    assert sum(sizes) == 220 and all(s >= 10 for s in sizes)
    assert all(b["prior"].sum() >= 10 for b in state["buffers"])


def test_nan_reward_raises_naming_the_model_loss_and_epoch():
    tasks = [dict(t, nan=True) for t in TASKS]
    with pytest.raises(FloatingPointError, match="model meta-loss is nan at epoch 0"):
        mier.train(make_env, tasks, 10, TINY, seed=0)


def test_sac_nan_raises_naming_the_loss():
    agent = mier.init_agent(TINY, torch.Generator().manual_seed(0), 2, 1, -np.ones(1), np.ones(1))
    n = 4
    b = mier.policy_batch(Batch(torch.zeros(n, 2), torch.zeros(n, 1), torch.full((n,), float("nan")),
                                torch.zeros(n, 2), torch.zeros(n)), torch.zeros(n, TINY.context_dim))
    with pytest.raises(FloatingPointError, match="critic_loss .* at epoch 5, step 9"):
        mier.sac_update(agent, b, torch.Generator().manual_seed(0), TINY, "epoch 5, step 9")


def test_adapt_and_evaluate_rows_and_state_not_mutated():
    state = mier.train(make_env, TASKS, 10, TINY, seed=0)
    before = {k: v.clone() for k, v in final_weights(state).items()}
    for relabel in (True, False):
        rows = mier.adapt_and_evaluate(state, lambda: make_env({"w": 0.3}), 10, adapt_trajectories=2, eval_episodes=3,
                                       seed=1, relabel=relabel, relabel_steps=(0, 2, 5))
        expected = [("prior", 0), ("adapted", 0), ("adapted", 2), ("adapted", 5)]
        assert [(r["stage"], r["steps"]) for r in rows] == expected
        assert all(np.isfinite(r["return"]) for r in rows)
    for k, v in final_weights(state).items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, msg=k)


def test_saved_model_is_plain_data_and_adapts_as_the_state(tmp_path):
    """model.pt loads with torch's weights_only loader (tensors, numbers, strings, lists, dicts only)."""
    state = mier.train(make_env, [dict(t, w=np.float64(t["w"])) for t in TASKS], 10, TINY, seed=0)
    io.save_checkpoint(tmp_path / "model.pt", state)
    loaded = torch.load(tmp_path / "model.pt", weights_only=True)
    kw = dict(adapt_trajectories=2, eval_episodes=2, seed=1, relabel_steps=(0, 2))
    env_fn = lambda: make_env({"w": 0.3})  # noqa: E731
    a, b = (pd.DataFrame(mier.adapt_and_evaluate(s, env_fn, 10, **kw)) for s in (loaded, state))
    pd.testing.assert_frame_equal(a, b)  # NaN (no relabelled reward yet at step 0) equals NaN here


def test_relabel_false_uses_only_the_test_task_data():
    state = mier.train(make_env, TASKS, 10, TINY, seed=0)
    for b in state["buffers"]:  # poison the meta-training data: only relabelling reads it
        b["obs"][:] = float("nan")
    kw = dict(adapt_trajectories=2, eval_episodes=1, seed=0, relabel_steps=(0, 3))
    mier.adapt_and_evaluate(state, lambda: make_env({"w": 0.3}), 10, relabel=False, **kw)
    with pytest.raises(FloatingPointError, match="test-time step 0"):
        mier.adapt_and_evaluate(state, lambda: make_env({"w": 0.3}), 10, relabel=True, **kw)


def test_model_finetuning_steps_are_a_test_time_option(monkeypatch):
    """Alg. 2's model fine-tuning runs model_steps Adam steps (Config.test_model_steps by default; the
    authors use 0 on negated joints), and not at all where nothing relabels."""
    state = mier.train(make_env, TASKS, 10, TINY, seed=0)
    calls = []
    real = mier.finetune_model

    def spy(model, theta, ctx, data, cfg, steps, rng):
        calls.append(steps)
        return real(model, theta, ctx, data, cfg, steps, rng)

    monkeypatch.setattr(mier, "finetune_model", spy)
    kw = dict(adapt_trajectories=2, eval_episodes=1, seed=0)
    run = lambda **o: mier.adapt_and_evaluate(state, lambda: make_env({"w": 0.3}), 10, **kw, **o)  # noqa: E731
    run(relabel_steps=(0, 3))
    run(relabel_steps=(0, 3), test_model_steps=0)
    run(relabel_steps=(0, 3), test_model_steps=7)
    assert calls == [TINY.test_model_steps, 0, 7]
    run(relabel_steps=(0,))                    # context adaptation only (Fig. 2's protocol)
    run(relabel_steps=(0, 3), relabel=False)   # the ablation trains on the test task's own data
    assert calls == [TINY.test_model_steps, 0, 7]
    # 0 steps leave the meta-trained model as it is
    theta = {k: v for k, v in state["model"].items() if k != "context"}
    model = mier.ContextModel(2, 1, TINY)
    data = Batch(torch.zeros(8, 2), torch.zeros(8, 1), torch.zeros(8), torch.zeros(8, 2), torch.zeros(8))
    same = real(model, theta, state["model"]["context"], data, TINY, 0, np.random.default_rng(0))
    for k, v in theta.items():
        torch.testing.assert_close(same[k], v, rtol=0, atol=0)


def test_relabelling_evaluations_carry_diagnostics_that_change_nothing():
    """Rows of a relabelling schedule carry the model's errors (meta-trained and fine-tuned), the
    relabelled and real rewards, and Q(s0, pi(s0)) against the discounted return; computing them draws
    no random numbers, so the returns equal those of a run without them."""
    state = mier.train(make_env, TASKS, 10, TINY, seed=0)
    kw = dict(adapt_trajectories=2, eval_episodes=2, seed=4)
    env = lambda: make_env({"w": 0.3})  # noqa: E731
    plain = mier.adapt_and_evaluate(state, env, 10, relabel_steps=(0,), **kw)
    assert not any(k.startswith("diag/") for r in plain for k in r)
    rows = mier.adapt_and_evaluate(state, env, 10, relabel_steps=(0, 3), **kw)
    assert [r["return"] for r in rows[:2]] == [r["return"] for r in plain]
    at0, at3 = rows[1], rows[2]
    assert np.isnan(at0["diag/relabelled_reward_mean"]) and np.isfinite(at3["diag/relabelled_reward_mean"])
    for key in ("diag/model_reward_rmse_meta", "diag/model_reward_rmse_finetuned", "diag/q_s0",
                "diag/discounted_return", "diag/eval_reward_mean"):
        assert np.isfinite(at3[key]), key
    # the real rewards of the evaluation episodes: -(a - w)^2, so their mean is at most 0
    assert at3["diag/eval_reward_mean"] <= 0 and at3["diag/discounted_return"] <= 0
    same = mier.adapt_and_evaluate(state, env, 10, relabel_steps=(0, 3), test_model_steps=0, **kw)[2]
    assert same["diag/model_reward_rmse_meta"] == same["diag/model_reward_rmse_finetuned"]
    ablation = mier.adapt_and_evaluate(state, env, 10, relabel_steps=(0, 3), relabel=False, **kw)[2]
    assert np.isnan(ablation["diag/relabelled_reward_mean"]) and "diag/model_reward_rmse_finetuned" not in ablation


@pytest.mark.parametrize("predict_dynamics", [True, False])
def test_relabel_samples_rewards_and_next_states_from_the_model(predict_dynamics):
    cfg = mier.Config(model_hidden=(16, 16), sac_hidden=(16, 16), predict_dynamics=predict_dynamics)
    torch.manual_seed(0)
    model = mier.ContextModel(3, 2, cfg)
    theta = {k: v.detach() for k, v in model.named_parameters()}
    agent = mier.init_agent(cfg, torch.Generator().manual_seed(0), 3, 2, -np.ones(2), np.ones(2))
    n = 7
    batch = Batch(torch.randn(n, 3), torch.full((n, 2), 0.5), torch.full((n,), 1e6), torch.full((n, 3), 1e6),
                  torch.ones(n))
    ctx = torch.randn(cfg.context_dim)
    out = mier.relabel_batch(model, theta, ctx, agent, torch.Generator().manual_seed(5), batch, cfg)
    assert out.obs.shape == (n, 3) and out.action.shape == (n, 2) and out.reward.shape == (n,)
    assert out.next_obs.shape == (n, 3) and out.terminated.shape == (n,)
    torch.testing.assert_close(out.obs, batch.obs)
    # replay the same random draws: policy action (dynamics model only), then the model's Gaussian noise
    g = torch.Generator().manual_seed(5)
    c = ctx.expand(n, -1)
    with torch.no_grad():
        a = agent["actor"](torch.cat([batch.obs, c], -1)[None], [g])[0][0] if predict_dynamics else batch.action
        mean, logvar = model(batch.obs, a, c)
        sample = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g)
    torch.testing.assert_close(out.action, a)
    torch.testing.assert_close(out.reward, sample[:, -1])
    assert (out.reward.abs() < 1e3).all()  # not the buffer's reward
    if predict_dynamics:
        assert not torch.allclose(out.action, batch.action)
        torch.testing.assert_close(out.next_obs, batch.obs + sample[:, :-1])
        assert (out.terminated == 0).all()
    else:  # reward-only model: the buffer's (real) action and next state are kept
        torch.testing.assert_close(out.next_obs, batch.next_obs)
        assert (out.terminated == 1).all()


def test_disjoint_rows_never_hit_taken_rows():
    rng = np.random.default_rng(0)
    for _ in range(50):
        taken = rng.integers(0, 40, 15)
        rows = mier.disjoint_rows(rng, 40, taken, 2000)
        assert rows.min() >= 0 and rows.max() < 40 and not set(rows) & set(taken)
        assert set(rows) == set(range(40)) - set(taken)  # uniform over the complement: all hit


@pytest.mark.parametrize("predict_dynamics", [True, False])
def test_model_loss_reductions(predict_dynamics):
    """per_head_mean (the authors'): reward NLL + next-state NLL averaged over dimensions, each term
    err²/σ² + log σ²; sum: 0.5·NLL summed over outputs."""
    cfg, model, params, adapt, _ = _setup(predict_dynamics=predict_dynamics, model_loss="per_head_mean")
    theta = {k: v for k, v in params.items() if k != "context"}
    b = mier.Batch(*(x[0] for x in adapt))
    mean, logvar = model(b.obs, b.action, params["context"].expand(len(b.obs), -1))
    d = (mean - mier.targets(b, cfg)) ** 2 * torch.exp(-logvar) + logvar
    want = d[:, -1].mean() + d[:, :-1].mean() if predict_dynamics else d.mean()
    torch.testing.assert_close(mier.nll(model, theta, params["context"], b, cfg), want)
    summed = mier.nll(model, theta, params["context"], b, mier.dataclasses.replace(cfg, model_loss="sum"))
    torch.testing.assert_close(summed, 0.5 * d.sum(-1).mean())


def test_meta_gradient_is_clipped_per_tensor():
    """Every meta-gradient tensor is clipped to norm meta_grad_clip before the Adam step (the authors'
    tf.clip_by_norm per variable); the rate is logged; None leaves the gradients alone."""
    for clip in (1e-4, None):
        cfg, model, params, adapt, evaluate = _setup(dtype=torch.float32, meta_grad_clip=clip)
        loss, _, _ = mier.model_meta_loss(model, params, adapt, evaluate, cfg)
        raw = torch.autograd.grad(loss, list(params.values()))
        opt = torch.optim.SGD(params.values(), lr=0.0)
        metrics, _ = mier.model_update(model, params, opt, adapt, evaluate, cfg)
        for g, p in zip(raw, params.values()):
            if clip is None:
                torch.testing.assert_close(p.grad, g)
            else:
                assert p.grad.norm() <= clip * (1 + 1e-4)
                torch.testing.assert_close(p.grad, g * min(1.0, clip / float(g.norm())))
        assert (metrics.get("train/meta_grad_clip_rate") == 1.0) == (clip is not None)
        assert 0 <= metrics["train/inner_clip_rate"] <= 1 and metrics["train/inner_grad_norm"] > 0


def test_model_buffer_is_a_fifo_of_relabelled_chunks():
    buf = mier.ModelBuffer(capacity=20, chunk=10)
    for i in range(3):
        buf.add(Batch(*(torch.full((10, 1), float(i)) for _ in range(5))))
    drawn = buf.sample(500, np.random.default_rng(0))
    assert drawn.obs.shape == (500, 1) and set(drawn.obs.flatten().tolist()) == {1.0, 2.0}


def test_relabelling_schedules(monkeypatch):
    """buffer (the authors'): relabel_states states every relabel_every loop steps of sac_repeats SAC
    updates each; per_update: a fresh batch for every SAC update. The evaluation schedule counts SAC
    updates either way."""
    state = mier.train(make_env, TASKS, 10, TINY, seed=0)
    calls = []
    real = mier.relabel_batch

    def spy(model, theta, ctx, agent, gen, batch, cfg):
        calls.append(len(batch.obs))
        return real(model, theta, ctx, agent, gen, batch, cfg)

    monkeypatch.setattr(mier, "relabel_batch", spy)
    kw = dict(adapt_trajectories=2, eval_episodes=1, seed=0, relabel_steps=(0, 4, 12))
    rows = mier.adapt_and_evaluate(state, lambda: make_env({"w": 0.3}), 10, sac_repeats=2, relabel_every=3, **kw)
    assert [r["steps"] for r in rows] == [0, 0, 4, 12]
    assert calls == [TINY.relabel_states] * 2  # at updates 0 and 6
    calls.clear()
    mier.adapt_and_evaluate(state, lambda: make_env({"w": 0.3}), 10, relabel_schedule="per_update", **kw)
    assert calls == [TINY.test_batch - 1] * 12  # real_ratio 0.05 of 16: 1 own transition per batch


def test_test_time_context_adaptation_and_options(monkeypatch):
    """The test task's context takes test_context_steps steps, the first inner_steps at inner_lr, the
    rest at a tenth (the authors' fast_adapt_model); options outside TEST_TIME are refused."""
    state = mier.train(make_env, TASKS, 10, TINY, seed=0)
    calls = []
    real = mier.adapt_context

    def spy(model, theta, ctx, batch, cfg, steps=None, lr=None, with_norms=False):
        calls.append((steps, lr))
        return real(model, theta, ctx, batch, cfg, steps, lr, with_norms)

    monkeypatch.setattr(mier, "adapt_context", spy)
    kw = dict(adapt_trajectories=2, eval_episodes=1, seed=0)
    mier.adapt_and_evaluate(state, lambda: make_env({"w": 0.3}), 10, **kw)
    assert calls == [(TINY.inner_steps, None), (TINY.test_context_steps - TINY.inner_steps, TINY.inner_lr / 10)]
    with pytest.raises(TypeError, match="inner_lr"):
        mier.adapt_and_evaluate(state, lambda: make_env({"w": 0.3}), 10, inner_lr=0.5, **kw)
    with pytest.raises(ValueError, match="relabel_schedule"):
        mier.adapt_and_evaluate(state, lambda: make_env({"w": 0.3}), 10, relabel_schedule="fresh", **kw)


def _all_cpu(tree) -> bool:
    if torch.is_tensor(tree):
        return tree.device.type == "cpu"
    if isinstance(tree, dict):
        return all(_all_cpu(v) for v in tree.values())
    if isinstance(tree, (list, tuple)):
        return all(_all_cpu(v) for v in tree)
    return True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_matches_cpu_run():
    """Networks and updates on the GPU, environments and random draws on the CPU: a CUDA run stays
    within float tolerance of the CPU run over its first updates, and its saved state is CPU tensors."""
    cfg = mier.dataclasses.replace(TINY, epochs=2)
    runs = {dev: mier.train(make_env, TASKS, 10, cfg, seed=0, device=dev) for dev in ("cpu", "cuda")}
    assert _all_cpu(runs["cuda"])
    for name, w in final_weights(runs["cpu"]).items():
        torch.testing.assert_close(final_weights(runs["cuda"])[name], w, rtol=1e-3, atol=1e-4, msg=name)
    kw = dict(adapt_trajectories=2, eval_episodes=1, seed=0, relabel_steps=(0, 4))
    rows = {dev: mier.adapt_and_evaluate(runs["cpu"], lambda: make_env({"w": 0.3}), 10, device=dev, **kw)
            for dev in ("cpu", "cuda")}
    np.testing.assert_allclose([r["return"] for r in rows["cuda"]], [r["return"] for r in rows["cpu"]], rtol=1e-3,
                               atol=1e-3)


def test_saved_state_is_on_the_cpu():
    assert _all_cpu(mier.train(make_env, TASKS, 10, TINY, seed=0, device="cpu"))


@pytest.mark.slow
def test_mier_learns_the_toy_family():
    """After a short meta-training, the adapted context fits the data better than the prior one (NLL),
    and with adapted contexts the policy beats a uniformly random policy and every task-blind
    constant action on held-out tasks: it uses the context."""
    torch.manual_seed(0)
    cfg = mier.Config(model_hidden=(64, 64), sac_hidden=(64, 64), epochs=8, tasks_per_epoch=4, steps_prior=20,
                      steps_adapted=20, initial_repeats=3, train_steps=120, meta_batch=6, adapt_batch=32,
                      predict_dynamics=False, test_model_steps=0, test_batch=64)
    logged = []
    state = mier.train(make_env, TASKS, 10, cfg, seed=0, log=logged.append)
    assert logged[-1]["train/critic_loss"] < logged[0]["train/critic_loss"]
    assert logged[-1]["train/model_nll_post"] < logged[-1]["train/model_nll_pre"]
    returns = []
    for i, w in enumerate((-0.6, -0.1, 0.5)):
        rows = mier.adapt_and_evaluate(state, lambda w=w: make_env({"w": w}), 10, adapt_trajectories=2,
                                       eval_episodes=3, seed=i, relabel_steps=(0,))
        returns.append(rows[1]["return"])
    ws = np.array([-0.6, -0.1, 0.5])
    random_return = -10 * np.mean(1 / 3 + ws**2)  # E[(a-w)²], a ~ U(-1, 1)
    best_constant = -10 * np.var(ws)  # the best action that ignores the task
    print("adapted returns", returns, "random", random_return, "best constant action", best_constant)
    assert np.mean(returns) > random_return and np.mean(returns) > best_constant, (returns, best_constant)

"""MACAW: network sizes, the losses on hand-computed batches, the vmapped meta-step against a loop
and finite differences, resume, the ablations as config switches, and adaptation on a toy family."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch

from paper_repro import buffers, nets
from paper_repro.algos import macaw

torch.set_num_threads(1)


def n_params(tree) -> int:
    return sum(v.numel() for v in tree.values())


def test_parameter_counts_match_the_authors_networks():
    """Weight-transform policy (with head) and value function for half-cheetah's 17-d observation and
    6-d action (spec: 2,632,963 and 2,232,601); BiasLinear at width 100 for the authors' 20-d one
    (57,763); the equal-parameter width computed, 720 for 17-d (724 for the authors' 20-d)."""
    cfg = macaw.Config()
    p = macaw.init_params(17, 6, cfg, seed=0)
    assert n_params(p["P"]) == 2_632_963 and n_params(p["V"]) == 2_232_601
    assert len(p["rho"]["P"]) == 18 and len(p["rho"]["V"]) == 12  # one learned step size per tensor
    bias = dataclasses.replace(cfg, weight_transform=False)
    assert n_params(macaw.init_params(20, 6, bias, seed=0)["P"]) == 57_763
    assert macaw.hidden_width(17, 6, dataclasses.replace(bias, equal_params=True)) == 720
    assert macaw.hidden_width(20, 6, dataclasses.replace(bias, equal_params=True)) == 724
    assert macaw.hidden_width(17, 6, bias) == 100


def test_weight_transform_layer_is_x_W_plus_b_with_the_authors_layout():
    g = torch.Generator().manual_seed(0)
    p = nets.init_layer("wt", "l", 3, 4, g, latent=5)
    theta = p["l.A"] @ p["l.z"] + p["l.a"]
    x = torch.randn(7, 3)
    torch.testing.assert_close(nets.apply_layer(p, "wt", "l", x), x @ theta[:12].view(3, 4) + theta[12:])
    b = nets.init_layer("bias", "l", 3, 4, g)
    torch.testing.assert_close(nets.apply_layer(b, "bias", "l", x), x @ b["l.W"] + b["l.b"] + b["l.b0"] @ b["l.Wb"])


def test_awr_weights_normalise_with_unbiased_std_and_clip_at_20():
    cfg = macaw.Config()
    adv = torch.tensor([0.0, 1.0, 2.0, 30.0])
    z = (adv - adv.mean()) / adv.std(unbiased=True)
    want = torch.exp(torch.clamp(z, max=np.log(20)))
    torch.testing.assert_close(macaw.awr_weights(adv, cfg), want)
    assert macaw.awr_weights(adv * 1000, cfg).max() <= 20 + 1e-4
    hot = macaw.awr_weights(adv, dataclasses.replace(cfg, temperature=0.5))
    torch.testing.assert_close(hot, torch.exp(torch.clamp(z / 0.5, max=np.log(20))))


def _tiny(**kw):
    return macaw.Config(width=8, depth=2, latent=4, adv_head=4, inner_batch=6, outer_batch=5, eval_batch=5,
                        data_stride=1, **kw)


def _batch(k, n, obs=3, act=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(k, n, obs, generator=g), "action": torch.rand(k, n, act, generator=g) * 2 - 1,
            "G": torch.randn(k, n, generator=g), "s_T": torch.randn(k, n, obs, generator=g),
            "disc_T": torch.rand(k, n, generator=g), "boot": (torch.rand(k, n, generator=g) > 0.5).float()}


def test_enriched_inner_loss_adds_lambda_head_regression_onto_raw_advantages():
    cfg = _tiny()
    p = macaw.init_params(3, 2, cfg, seed=0)
    d = {k: v[0] for k, v in _batch(1, 6).items()}
    adv = macaw.advantages(p["V"], d, cfg)
    mean, h = macaw.policy_mean(p["P"], d["obs"], cfg)
    awr = -(macaw.log_prob(mean, d["action"], cfg) * macaw.awr_weights(adv, cfg)).mean()
    head = (macaw.advantage_head(p["P"], h, d["action"], cfg) - adv).pow(2).mean()
    lam = torch.tensor(0.3)
    torch.testing.assert_close(macaw.policy_loss(p["P"], d, adv, lam, cfg, inner=True), awr + 0.3 * head)
    torch.testing.assert_close(macaw.policy_loss(p["P"], d, adv, lam, cfg, inner=False), awr)
    # the bootstrap is cut where the episode terminated, unless bootstrap_at_termination (the authors')
    v_T = macaw.value(p["V"], d["s_T"], cfg)
    torch.testing.assert_close(macaw.bootstrapped_returns(p["V"], d, cfg), d["G"] + d["disc_T"] * d["boot"] * v_T)
    always = dataclasses.replace(cfg, bootstrap_at_termination=True)
    torch.testing.assert_close(macaw.bootstrapped_returns(p["V"], d, always), d["G"] + d["disc_T"] * v_T)


@pytest.mark.parametrize("variant", [{}, {"adv_coef": 0.0}, {"weight_transform": False}, {"loss": "imitation"}])
def test_vmapped_meta_losses_match_a_loop_and_reach_every_learned_rate(variant):
    cfg = _tiny(**variant)
    p = macaw.init_params(3, 2, cfg, seed=1)
    tr, ts = _batch(3, 6, seed=2), _batch(3, 5, seed=3)
    lv, lp = macaw.meta_losses(p, tr, ts, cfg, n_train=7)
    rv, rp = macaw.meta_losses_loop(p, tr, ts, cfg, n_train=7)
    torch.testing.assert_close(lv, rv)
    torch.testing.assert_close(lp, rp)
    leaves = nets.leaves(p, trainable=True)
    grads = torch.autograd.grad(lv + lp, leaves, allow_unused=True)
    ref = torch.autograd.grad(rv + rp, leaves, allow_unused=True)
    for g, r in zip(grads, ref):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    # every learned step size gets a meta-gradient, except the head's: the outer loss is plain AWR
    for name in ("P", "V"):
        for k, rho in p["rho"][name].items():
            g = torch.autograd.grad(macaw.meta_losses(p, tr, ts, cfg, 7)[1 if name == "P" else 0], rho,
                                    allow_unused=True)[0]
            if k.startswith("head"):
                assert g is None or g == 0, k
            else:
                assert g is not None and torch.isfinite(g) and g != 0, (name, k)
    if macaw.has_head(cfg):  # λ is meta-learned through the inner step
        assert torch.autograd.grad(sum(macaw.meta_losses(p, tr, ts, cfg, 7)), p["rho"]["lam"])[0] != 0
    assert ("head0.W" in p["P"] or "head0.z" in p["P"]) == (cfg.loss == "awr" and cfg.adv_coef > 0)
    assert not p["V"] if cfg.loss == "imitation" else p["V"]


@pytest.mark.parametrize("loss", ["awr", "imitation"])
def test_theta_space_inner_step_equals_the_generic_one(loss):
    """The closed-form θ-space step (spec §6.3) gives the same adapted networks, soft value target,
    meta-losses and meta-gradients as adapting (z, A, a) themselves (float64)."""
    generic = _tiny(theta_space=False, loss=loss)
    closed = dataclasses.replace(generic, theta_space=True)
    p = nets.tree_map(lambda t: t.detach().double().requires_grad_(t.requires_grad), macaw.init_params(3, 2, generic, seed=7))
    tr, ts = (nets.tree_map(lambda t: t.double(), b) for b in (_batch(3, 6, seed=8), _batch(3, 5, seed=9)))
    lrs, lam = macaw.step_sizes(p["rho"])
    lrs = {n: {k: v * 50 for k, v in d.items()} for n, d in lrs.items()}  # big steps: the second-order term shows
    d = {k: v[0] for k, v in tr.items()}
    gp, gv, gt = macaw.adapt(p["P"], p["V"], lrs, lam, d, generic)
    cp, cv, ct = macaw.adapt(p["P"], p["V"], lrs, lam, d, closed)
    assert all(k.endswith(".theta") for k in cp)
    for g, c in ((gp, cp), (gv, cv), (gt, ct)):
        torch.testing.assert_close(macaw._theta(g) if g else {}, c if g else {})
    a = macaw.meta_losses(p, tr, ts, generic, 3)
    b = macaw.meta_losses(p, tr, ts, closed, 3)
    torch.testing.assert_close(a, b)
    leaves = nets.leaves(p, trainable=True)
    for x, y in zip(torch.autograd.grad(sum(a), leaves, allow_unused=True),
                    torch.autograd.grad(sum(b), leaves, allow_unused=True)):
        if x is None or y is None:
            assert (x is None or not x.any()) and (y is None or not y.any())
        else:
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-9)


def test_inner_step_equals_one_written_by_hand():
    """Alg. 1 lines 5-7 by hand (float64, plain autograd): V' = V - η_V ∇_V mean((V(s) - G)²); the soft target
    α·V + (1 - α)·V'; A = G + γ^{e-t}·boot·V'(s_T) - V'(s); w = exp(min((A - mean A)/(T·(std A + 1e-8)), log 20));
    P' = P - η_P ∇_P [-mean(log N(a; μ(s), σ²)·w) + λ·mean((Â(s, a) - A)²)], one learned η per tensor."""
    cfg = _tiny(theta_space=False)
    assert not cfg.bootstrap_at_termination and cfg.loss == "awr"
    p = nets.tree_map(lambda t: t.detach().double(), macaw.init_params(3, 2, cfg, seed=3))
    d = {k: v[0].double() for k, v in _batch(1, 6, seed=4).items()}
    lrs, lam = macaw.step_sizes(p["rho"])
    lrs = {n: {k: v * 10 for k, v in t.items()} for n, t in lrs.items()}  # steps big enough to move V's advantages
    P, V = p["P"], p["V"]

    def sgd(params, loss_of, lr):
        leaf = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        grads = torch.autograd.grad(loss_of(leaf), list(leaf.values()), allow_unused=True)
        return {k: params[k] - lr[k] * (torch.zeros_like(params[k]) if g is None else g) for k, g in zip(leaf, grads)}

    V1 = sgd(V, lambda v: (macaw.value(v, d["obs"], cfg) - d["G"]).pow(2).mean(), lrs["V"])
    target = {k: cfg.target_alpha * V[k] + (1 - cfg.target_alpha) * V1[k] for k in V}
    adv = d["G"] + d["disc_T"] * d["boot"] * macaw.value(V1, d["s_T"], cfg) - macaw.value(V1, d["obs"], cfg)
    w = torch.exp(torch.clamp((adv - adv.mean()) / (cfg.temperature * (adv.std() + 1e-8)), max=np.log(cfg.adv_clip)))

    def policy_loss(pp):
        mean, h = macaw.policy_mean(pp, d["obs"], cfg)
        z = (d["action"] - mean) / cfg.action_sigma
        logp = (-0.5 * z**2 - np.log(cfg.action_sigma) - 0.5 * np.log(2 * np.pi)).sum(-1)
        return -(logp * w).mean() + lam * (macaw.advantage_head(pp, h, d["action"], cfg) - adv).pow(2).mean()
    P1 = sgd(P, policy_loss, lrs["P"])
    got_P, got_V, got_target = macaw.adapt(P, V, lrs, lam, d, cfg)
    for want, got in ((P1, got_P), (V1, got_V), (target, got_target)):
        assert set(want) == set(got)
        for k in want:
            torch.testing.assert_close(got[k], want[k], msg=k)
    assert any(not torch.allclose(P1[k], P[k]) for k in P) and any(not torch.allclose(V1[k], V[k]) for k in V)


def test_meta_gradient_matches_finite_differences():
    """Policy parameters and their learned step sizes (the value side has stop-gradients by design:
    its soft target and the advantages, so finite differences of the whole loss do not apply)."""
    cfg = _tiny()
    p = macaw.init_params(3, 2, cfg, seed=4)
    p = nets.tree_map(lambda t: t.detach().double().requires_grad_(t.requires_grad), p)
    tr, ts = (nets.tree_map(lambda t: t.double(), b) for b in (_batch(2, 6, seed=5), _batch(2, 5, seed=6)))
    loss = lambda: sum(macaw.meta_losses(p, tr, ts, cfg, 2))  # noqa: E731
    checks = [("P", "pi0.z"), ("P", "head0.A"), ("P", "pi2.a")]
    for net, key in checks:
        t = p[net][key]
        g = torch.autograd.grad(loss(), t)[0]
        idx = tuple(0 for _ in t.shape)
        with torch.no_grad():
            t[idx] += 1e-6
            up = loss()
            t[idx] -= 2e-6
            down = loss()
            t[idx] += 1e-6
        assert float(g[idx]) == pytest.approx(float((up - down) / 2e-6), rel=1e-4, abs=1e-8), key
    for rho in (p["rho"]["P"]["pi0.A"], p["rho"]["lam"]):
        g = torch.autograd.grad(loss(), rho)[0]
        with torch.no_grad():
            rho += 1e-6
            up = loss()
            rho -= 2e-6
            down = loss()
            rho += 1e-6
        assert float(g) == pytest.approx(float((up - down) / 2e-6), rel=1e-4, abs=1e-8)


class Direction(gym.Env):
    """Toy family: the reward is the action times a hidden sign (w), so a task's data tell which way to act."""
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, w):
        self.w = w

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        r = float(self.w * np.clip(action[0], -1, 1))
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), r, False, False, {}


def make_env(task):
    return gym.wrappers.TimeLimit(Direction(task["w"]), 10)


def toy_buffer(w, n, seed):
    """n random-policy transitions of the toy task, 10-step episodes."""
    rng = np.random.default_rng(seed)
    act = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    trunc = np.zeros(n, bool)
    trunc[9::10] = True
    return {"obs": rng.uniform(-1, 1, (n, 2)).astype(np.float32), "action": act,
            "reward": (w * act[:, 0]).astype(np.float32), "next_obs": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
            "terminated": np.zeros(n, bool), "truncated": trunc}


TASKS = [{"task_id": i, "w": w} for i, w in enumerate([-1.0, 1.0, -1.0, 1.0])]
TINY = macaw.Config(width=16, depth=2, latent=8, adv_head=8, inner_batch=32, outer_batch=32, eval_batch=32,
                    data_stride=1, train_steps=6, meta_batch=2)


def test_resume_from_checkpoint_ends_where_an_uninterrupted_run_ends(tmp_path):
    data = [macaw.task_data(toy_buffer(t["w"], 200, i), TINY) for i, t in enumerate(TASKS)]
    straight = macaw.train(make_env, TASKS, 10, TINY, seed=3, data=data)
    ck = tmp_path / "ck.pt"
    with pytest.raises(KeyboardInterrupt):
        def stop(m):
            if m["iteration"] == 3:
                raise KeyboardInterrupt
        macaw.train(make_env, TASKS, 10, TINY, seed=3, data=data, checkpoint=str(ck), checkpoint_every=2, log=stop)
    resumed = macaw.train(make_env, TASKS, 10, TINY, seed=3, data=data, checkpoint=str(ck), checkpoint_every=2)
    for a, b in zip(nets.leaves(straight["params"]), nets.leaves(resumed["params"])):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(t.device.type == "cpu" for t in nets.leaves(straight["params"]))


def test_nan_data_raises_naming_the_loss_task_and_step():
    bad = toy_buffer(1.0, 200, 1)
    bad["reward"][:] = np.nan
    data = [macaw.task_data(b, TINY) for b in (toy_buffer(-1.0, 200, 0), bad)]  # task 1's data are bad
    with pytest.raises(FloatingPointError, match="MACAW outer value loss is nan on training task 1 at meta-step 0"):
        macaw.train(make_env, TASKS[:2], 10, dataclasses.replace(TINY, meta_batch=2), seed=0, data=data)


@pytest.mark.slow
def test_macaw_adapts_to_the_direction_in_the_test_tasks_data():
    """After a short meta-training on tasks of both signs, one inner step on a test task's offline
    data turns the policy toward that task's sign: the adapted return beats the prior return on a
    held-out task of each sign."""
    cfg = dataclasses.replace(TINY, train_steps=300, inner_batch=64, outer_batch=64, eval_batch=64)
    data = [macaw.task_data(toy_buffer(t["w"], 2000, i), cfg) for i, t in enumerate(TASKS)]
    state = macaw.train(make_env, TASKS, 10, cfg, seed=0, data=data)
    for w in (-1.0, 1.0):
        inner, _ = macaw.task_data(toy_buffer(w, 2000, 99), cfg)
        rows = macaw.adapt_and_evaluate(state, lambda: make_env({"w": w}), 10, adapt_data=inner, eval_episodes=3,
                                        seed=0)
        prior, adapted = rows[0]["return"], rows[1]["return"]
        assert adapted > 0.5 and adapted > prior + 0.5, (w, rows)


def test_middle_slice_is_the_papers_or_the_codes():
    """``middle_mode``: the middle episodes (App. D.3) or those centred at a quarter of the lifetime
    (the authors' code); the test task adapts on the same slice of its own buffer as the inner loop."""
    buf = toy_buffer(1.0, 1000, 0)  # 100 episodes of 10
    cfg = dataclasses.replace(TINY, inner_slice="middle", slice_episodes=10)
    for mode, start in (("paper", 450), ("code", 200)):
        c = dataclasses.replace(cfg, middle_mode=mode)
        inner, outer = macaw.task_data(buf, c)
        np.testing.assert_array_equal(inner["obs"], buf["obs"][start:start + 100])
        np.testing.assert_array_equal(macaw.test_data(buf, c)["obs"], inner["obs"])
        assert len(outer["obs"]) == 1000  # the outer data stay the whole (strided) buffer

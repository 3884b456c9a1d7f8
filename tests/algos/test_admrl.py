"""AdMRL's model-based learner (AdMRL spec §8): the task gradient's pieces against explicit matrices,
finite differences and a toy with a known answer; the CG solve; samplers; batched = loop; resume."""

from __future__ import annotations

import dataclasses

import gymnasium
import numpy as np
import pytest
import torch
from torch.func import grad

from paper_repro import meta
from paper_repro.algos import admrl, admrl_envs, admrl_gradient, admrl_model_error, slbo

torch.set_default_dtype(torch.float32)

TINY = admrl.Config(n_tasks=3, n_slbo_first=1, n_slbo=1, n_zeroshot=1, n_inner=1, n_policy=1, n_model=3,
                    virtual_envs=2, collect_envs=2, grad_envs=2, model_hidden=(16, 16), task_cg_iters=5, vf_epochs=1,
                    test_zeroshot=1, test_inner=1, test_stages=1, test_collect_envs=2, eval_episodes=1)


def tiny_policy(obs_dim=3, act_dim=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pi = admrl.init_policy([gen], obs_dim, act_dim, dataclasses.replace(TINY, policy_hidden=(4,)))
    pi = {k: v[0].double() for k, v in pi.items()}
    nz = admrl.Normalizers(*(t.double() for t in admrl.init_normalizers(obs_dim)))
    return pi, nz


def logp_fn(pi, nz, s, a):
    return lambda th: admrl.log_prob(meta.unflat(th, pi), nz, s, a)


def test_hessian_vector_equals_the_explicit_matrix():
    """H·v = (1/N) Σ A_t (∇ℓ∇ℓᵀ + ∇²ℓ) v, the matrix built with autograd's hessian per step."""
    torch.manual_seed(0)
    pi, nz = tiny_policy()
    s, a, adv = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64), torch.randn(7, dtype=torch.float64)
    theta = meta.flat(pi)
    logp = logp_fn(pi, nz, s, a)
    P = theta.numel()
    H = torch.zeros(P, P, dtype=torch.float64)
    for t in range(7):
        lt = lambda th, t=t: logp(th)[t]  # noqa: E731
        g = grad(lt)(theta)
        H += adv[t] * (torch.outer(g, g) + torch.autograd.functional.hessian(lt, theta))
    H /= 7
    hv = admrl.hessian_vector(logp, theta, adv)
    v = torch.randn(P, dtype=torch.float64)
    torch.testing.assert_close(hv(v), H @ v)


def test_trajectory_estimator_equals_the_explicit_matrix_over_whole_episodes():
    """hessian_estimator: trajectory (Eqs. 7, 20): H = (1/N) Σ_e R_e (∇L_e ∇L_eᵀ + ∇²L_e) with L_e the
    log-probability of complete episode e, N the samples; the incomplete tail of a row takes no part."""
    torch.manual_seed(0)
    pi, nz = tiny_policy()
    E, T, horizon = 2, 5, 3
    term = torch.tensor([[False, True, False, False, False], [False, False, False, False, False]])
    M = admrl.episode_matrix(term, horizon)
    # row 0: [0, 1] terminated, [2, 3, 4] timed out; row 1: [0, 1, 2] timed out, [3, 4] incomplete
    assert admrl.complete_episodes(term, horizon) == [(0, 0, 2), (0, 2, 5), (1, 0, 3)]
    assert M.sum(1).tolist() == [2, 3, 3] and M[:, 8:].sum() == 0
    s, a = torch.randn(E * T, 3, dtype=torch.float64), torch.randn(E * T, 2, dtype=torch.float64)
    R = torch.randn(3, dtype=torch.float64)
    theta = meta.flat(pi)
    steps = logp_fn(pi, nz, s, a)
    H = torch.zeros(theta.numel(), theta.numel(), dtype=torch.float64)
    for e in range(3):
        le = lambda th, e=e: (M[e] * steps(th)).sum()  # noqa: E731
        g = grad(le)(theta)
        H += R[e] * (torch.outer(g, g) + torch.autograd.functional.hessian(le, theta))
    hv = admrl.hessian_vector(lambda th: M @ steps(th), theta, R, n=E * T)
    v = torch.randn(theta.numel(), dtype=torch.float64)
    torch.testing.assert_close(hv(v), H @ v / (E * T))


def test_authors_td_zeroes_the_bootstrap_before_a_termination():
    """task_gae: authors (P18) takes V(s_{t+1})·(1 - done_{t+1}), as the code's td; fixed keeps V(s_{t+1})."""
    rew = torch.zeros(1, 4, dtype=torch.float64)
    term = torch.tensor([[False, True, False, False]])
    v = torch.zeros(1, 4, dtype=torch.float64)
    v_next = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    fixed = admrl.gae(rew, term, v, v_next, 0.5, 0.0)
    authors = admrl.gae(rew, term, v, v_next, 0.5, 0.0, authors_td=True)
    torch.testing.assert_close(fixed, torch.tensor([[0.5, 0.0, 1.5, 2.0]], dtype=torch.float64))
    torch.testing.assert_close(authors, torch.tensor([[0.0, 0.0, 1.5, 2.0]], dtype=torch.float64))


@pytest.fixture(scope="module")
def tiny_run():
    """TINY on hopper-2d at seed 3, with the spec's defaults: shared by the tests that compare against it."""
    return admrl.train("hopper-2d", TINY, seed=3)


@pytest.mark.parametrize("switch,changes", [({"hessian_estimator": "trajectory"}, "implicit"),
                                            ({"task_gae": "authors"}, "implicit"),
                                            ({"grad_normalizer": "shared"}, "g_hat")])
def test_each_departure_switch_changes_the_task_step_where_it_should(tiny_run, switch, changes):
    """The spec's departures from the code, switched back one at a time (same seed). θ*'s rollout never
    depends on them: g* is equal. ``hessian_estimator`` and ``task_gae`` change only the implicit term
    (H, B, p), not ĝ; ``task_gae`` only through V(s_{t+1}) before a termination, which TINY's virtual
    hopper rollouts contain. ``grad_normalizer: shared`` has θ̂ read another normaliser, so its real
    rollout, and ĝ with it, change. The step taken is x + α·grad, clipped."""
    base = tiny_run["snapshots"][1]["stats"]
    run = admrl.train("hopper-2d", dataclasses.replace(TINY, **switch), seed=3)
    stats = run["snapshots"][1]["stats"]
    assert stats["g_star"] == base["g_star"]
    if changes == "implicit":
        assert stats["g_hat"] == base["g_hat"]
    assert not np.allclose(stats[changes], base[changes], rtol=1e-4, atol=0), (stats[changes], base[changes])
    assert not np.allclose(stats["grad"], base["grad"], rtol=1e-4, atol=0)
    x1 = np.asarray(run["snapshots"][1]["x"])
    np.testing.assert_allclose(stats["x_next"], np.clip(x1 + admrl.ALPHA["hopper-2d"] * np.asarray(stats["grad"]), -1, 1),
                               rtol=1e-6)
    assert run["snapshots"][2]["x"] == stats["x_next"]


def test_a_bad_choice_names_the_key_and_the_allowed_values():
    with pytest.raises(ValueError, match=r"hessian_estimator = 'exact'.*per_step.*trajectory"):
        dataclasses.replace(TINY, hessian_estimator="exact")


def test_task_jacobian_and_return_gradients_equal_finite_differences():
    fam_box = admrl.box("ant-2d")
    torch.manual_seed(1)
    pi, nz = tiny_policy(obs_dim=29, act_dim=8)
    vf = {k: v[0].double() for k, v in admrl.init_value([torch.Generator().manual_seed(2)], 29, TINY).items()}
    E, T = 2, 6
    b = admrl.Batch(torch.randn(E, T, 29, dtype=torch.float64), torch.randn(E, T, 8, dtype=torch.float64),
                    torch.zeros(E, T, dtype=torch.float64), torch.randn(E, T, 29, dtype=torch.float64),
                    torch.zeros(E, T, dtype=torch.bool))
    x = torch.tensor([0.2, -0.4], dtype=torch.float64)
    from paper_repro import envs
    fam = envs.get_family("ant-2d")

    def adv_of(x_):
        r = fam.model_reward(b.obs, b.act, b.next_obs, admrl.to_psi(x_, *fam_box))
        v, v2 = admrl.value(vf, nz, b.obs), admrl.value(vf, nz, b.next_obs)
        return admrl.gae(r, b.term, v, v2, 0.99, 0.95).reshape(-1)

    theta = meta.flat(pi)
    logp = logp_fn(pi, nz, b.obs.reshape(-1, 29), b.act.reshape(-1, 8))
    B = admrl.task_jacobian(logp, theta, adv_of, x)
    eps = 1e-6
    for i in range(2):
        dx = torch.zeros(2, dtype=torch.float64)
        dx[i] = eps
        fd = (admrl.policy_gradient(logp, theta, adv_of(x + dx)) - admrl.policy_gradient(logp, theta, adv_of(x - dx))) / (2 * eps)
        torch.testing.assert_close(B[:, i], fd, rtol=1e-5, atol=1e-8)


def test_conjugate_gradient_solves_the_damped_normal_equations():
    torch.manual_seed(0)
    P, k = 6, 3
    M = torch.randn(P, P, dtype=torch.float64)
    H = M + M.T  # symmetric, indefinite: as the per-step Hessian estimate can be
    b = torch.randn(P, k, dtype=torch.float64)
    y, rr = admrl.solve_implicit(lambda v: H @ v, b, damping=0.1, iters=50, tol=1e-20)
    direct = torch.linalg.solve(H @ H / P + 0.1 * torch.eye(P, dtype=torch.float64), H @ b / P)
    torch.testing.assert_close(y, direct, rtol=1e-6, atol=1e-8)
    for i in range(k):  # batched right-hand sides = one at a time
        yi, _ = admrl.solve_implicit(lambda v: H @ v, b[:, i:i + 1], damping=0.1, iters=50, tol=1e-20)
        torch.testing.assert_close(y[:, i:i + 1], yi)


def test_masked_conjugate_gradient_equals_the_early_stopping_loop():
    A = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    b = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    x, rr = meta.conjugate_gradient(lambda v: A @ v, b, iters=50)
    torch.testing.assert_close(x, torch.tensor([1.0, 0.5, 1 / 3], dtype=torch.float64))
    assert rr < 1e-10
    xs, _ = torch.func.vmap(lambda bb: meta.conjugate_gradient(lambda v: A @ v, bb, iters=50))(torch.stack([b, 2 * b]))
    torch.testing.assert_close(xs[1], 2 * x)


def test_implicit_gradient_on_a_bandit_with_a_known_answer():
    """η(θ, ψ) = E[-(a - ψ)²], π = N(θ, σ²): θ̂ = ψ, so ∂θ̂/∂ψ = 1. With the code's estimators,
    -H⁻¹B from damped normal equations (damping → 0, many samples) is ≈ 1."""
    gen = torch.Generator().manual_seed(0)
    sigma, psi, N = 0.5, torch.tensor([0.3], dtype=torch.float64), 400_000
    theta = psi.clone()  # the optimum
    a = theta + sigma * torch.randn(N, 1, generator=gen, dtype=torch.float64)

    def logp(th):
        return -0.5 * ((a[:, 0] - th[0]) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)

    def adv_of(p):
        return -(a[:, 0] - p[0]) ** 2  # the reward itself: a one-step episode

    hv = admrl.hessian_vector(logp, theta, adv_of(psi))
    B = admrl.task_jacobian(logp, theta, adv_of, psi)
    y, _ = admrl.solve_implicit(hv, B, damping=1e-9, iters=10, tol=1e-30)
    dtheta_dpsi = -y[0, 0]
    assert dtheta_dpsi == pytest.approx(1.0, abs=0.03)
    # H ≈ -2/σ⁰ (concave at the optimum), B ≈ 2
    assert float(hv(torch.ones(1, dtype=torch.float64))) == pytest.approx(-2.0, abs=0.05)
    assert float(B[0, 0]) == pytest.approx(2.0, abs=0.05)


# --- the task gradient end to end, on a family whose gap is known in closed form -----------------------

BANDIT_C, BANDIT_SIGMA = 2.0, 0.1


class BanditEnv(gymnasium.Env):
    """One-step episodes: observation 0, next observation a, reward -(a - ψ)², terminated at once."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def set_task(self, task):
        self.psi = float(task["psi"])

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        a = float(np.asarray(action).reshape(-1)[0])
        return np.array([a], np.float32), -(a - self.psi) ** 2, True, False, {}


def bandit_family(monkeypatch):
    """The toy as family "bandit", for this test only: ψ ∈ [-2, 2] (ψ = 2x); the model reward is the env's
    reward read from s' (so the model's error is all in its dynamics); real envs are ``BanditEnv``."""
    from types import SimpleNamespace

    from paper_repro import envs

    fam = SimpleNamespace(task_box={"psi": (-2.0, 2.0)},
                          model_reward=lambda s, a, s2, psi: -(s2[..., 0] - psi[..., 0]).square(),
                          model_done=lambda s2: torch.ones(s2.shape[:-1], dtype=torch.bool))
    real = envs.get_family
    monkeypatch.setattr(envs, "get_family", lambda name: fam if name == "bandit" else real(name))

    def real_envs(family, psis, n):
        assert family == "bandit"
        out = [[BanditEnv() for _ in range(n)] for _ in psis]
        for row, psi in zip(out, psis):
            for env in row:
                env.set_task({"psi": float(psi[0])})
        return out
    monkeypatch.setattr(admrl, "real_envs", real_envs)


def bandit_gradient_step(x: float, cfg: admrl.Config) -> dict:
    """``gradient_step`` at x with θ* and θ̂ solved in closed form: the real env has s' = a, the model
    s' = c·a (a two-unit ReLU net that the model's MLP represents exactly), the reward is -(s' - ψ)².
    So θ* = ψ and θ̂ = ψ/c, the mean of π = N(θ, σ²) (σ fixed)."""
    psi = 2.0 * x
    c, log_std = BANDIT_C, float(np.log(BANDIT_SIGMA))

    def policy(mean):  # policy_hidden=(): mean = w·norm(s) + b, norm(s) = 0
        return {"0.w": torch.zeros(1, 1, 1), "0.b": torch.tensor([[mean]]), "log_std": torch.tensor([[log_std]])}

    phi = {"0.w": torch.tensor([[[0.0, 0.0], [1.0, -1.0]]]), "0.b": torch.zeros(1, 2),  # [norm(s), a] → relu(±a)
           "1.w": torch.tensor([[[c], [-c]]]), "1.b": torch.zeros(1, 1)}                  # c·relu(a) - c·relu(-a)
    trainer = admrl.ModelTrainer(phi, cfg)
    vf = {"0.w": torch.zeros(1, 1, 1), "0.b": torch.full((1, 1), -0.05)}  # a constant baseline V = -0.05
    nz = admrl.expand(admrl.init_normalizers(1), 1)
    agent = type("Agent", (), {"pi": policy(psi)})()  # θ*
    starts = torch.zeros(1, 10, 1)
    return admrl.gradient_step("bandit", np.array([x]), agent, policy(psi / c), vf, nz, nz, trainer, starts, cfg,
                               seed=0, j=1)


BANDIT_CFG = admrl.Config(horizon=1000, grad_envs=30, policy_hidden=(), value_hidden=(), model_hidden=(2,),
                          task_cg_iters=20, task_cg_damping=1e-8, task_cg_tol=1e-20, alpha=0.5)


@pytest.mark.parametrize("x", [0.3, -0.2])
def test_task_gradient_end_to_end_on_a_bandit_whose_gap_is_known(monkeypatch, x):
    """The whole task step (model rollout, real rollouts, g*, ĝ, B, H, the CG solve, the ascent) on a family
    with a closed-form answer. Real env s' = a, model s' = c·a (c = 2), reward -(s' - ψ)², ψ = 2x, π = N(θ, σ²):
    θ* = ψ, θ̂ = ψ/c, so the gap η(θ*) - η(θ̂) = ψ²(1 - 1/c)² = ψ²/4 and d gap/dx = ψ. Its parts (each d/dx):
    g* = 2·2(θ* - ψ) = 0 (envelope), ĝ = 2·2(θ̂ - ψ) = -ψ, p = ∂η/∂θ at θ̂ = ψ, ∂θ̂/∂x = 2/c = 1, so the
    implicit term -Jp = -ψ and g* - ĝ - Jp = ψ. A flipped implicit term gives 2ψ·1.5 = 3ψ, none 2ψ.
    Tolerance 10% of |ψ|, about 3 standard errors: 3·10⁴ samples per rollout put the implicit term's noise
    near 3% (the Hessian estimate's: its per-sample std is 4.3× its mean)."""
    bandit_family(monkeypatch)
    psi = 2 * x
    tg = bandit_gradient_step(x, BANDIT_CFG)
    tol = 0.1 * abs(psi)
    assert float(tg["g_star"][0]) == pytest.approx(0.0, abs=tol)
    assert float(tg["g_hat"][0]) == pytest.approx(-2 * psi, abs=tol)
    assert float(tg["implicit"][0]) == pytest.approx(-psi, abs=tol)
    assert float(tg["grad"][0]) == pytest.approx(psi, abs=tol)
    # the ascent: x moves by α·grad, away from the gap's minimum at 0, and the measured gap grows
    x_next = float(tg["x_next"][0])
    assert x_next == pytest.approx(x + BANDIT_CFG.alpha * psi, abs=BANDIT_CFG.alpha * tol)
    after = bandit_gradient_step(x_next, BANDIT_CFG)
    per_step = BANDIT_CFG.horizon  # gap_estimate sums a row of `horizon` one-step episodes
    assert float(tg["gap_estimate"]) / per_step == pytest.approx(psi ** 2 / 4, rel=0.05)
    assert float(after["gap_estimate"]) / per_step == pytest.approx((2 * x_next) ** 2 / 4, rel=0.05)
    assert float(after["gap_estimate"]) > 1.5 * float(tg["gap_estimate"])


def test_samplers_and_projection():
    cfg = admrl.Config()
    rng = np.random.default_rng(0)
    assert (admrl.next_x("uniform", 0, np.zeros(2), rng, cfg, "ant-2d") == 0.3).all()
    assert (admrl.next_x("gauss", 1, np.zeros(2), rng, cfg, "ant-2d") == 0.0).all()
    assert (admrl.next_x("adversarial", 1, np.zeros(18), rng, cfg, "cheetah-highdim") == 0.2).all()
    x = np.array([0.7, -0.1])
    assert (admrl.next_x("adversarial", 5, x, rng, cfg, "ant-2d") == x).all()
    u = np.array([admrl.next_x("uniform", 2, x, rng, cfg, "ant-2d") for _ in range(20000)])
    assert u.min() >= -1 and u.max() <= 1 and abs(u.mean()) < 0.02 and u.var() == pytest.approx(1 / 3, abs=0.01)
    g = np.array([admrl.next_x("gauss", 2, x, rng, cfg, "ant-2d") for _ in range(20000)])
    assert np.mean(np.abs(g) == 1) == pytest.approx(0.317, abs=0.015)  # P(|N(0,1)| > 1) lands on the faces
    lo, hi = admrl.box("ant-3d")
    psi = admrl.to_psi(torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64), lo, hi)
    torch.testing.assert_close(psi, torch.tensor([-3.0, 3.0, 0.5], dtype=torch.float64))
    lo, hi = admrl.box("cheetah-highdim")
    x = torch.linspace(-1, 1, 18, dtype=torch.float64)
    torch.testing.assert_close(admrl.to_psi(x, lo, hi), x)  # ψ = x (``scale_psi=False``)
    with pytest.raises(ValueError, match="task_sampler"):
        admrl.next_x("sideways", 2, x, rng, cfg, "ant-2d")


def test_trpo_and_model_steps_batched_equal_a_loop_over_tasks():
    """K tasks as one computation = each task alone (same generators)."""
    cfg = dataclasses.replace(TINY, virtual_envs=3)
    family = "ant-2d"
    psis = torch.tensor([[1.0, 0.0], [-2.0, 1.5]])
    phi = admrl.init_model(torch.Generator().manual_seed(0), 29, 8, cfg)
    nz = admrl.init_normalizers(29)
    starts = admrl.reset_states(family, psis.double(), 20, [0, 1])
    rng = torch.Generator().manual_seed(5)
    s, a, s2 = torch.randn(2, 64, 29, generator=rng), torch.randn(2, 64, 8, generator=rng), torch.randn(2, 64, 29, generator=rng)

    def run(ks):
        gens = [torch.Generator().manual_seed(100 + k) for k in ks]
        agent = admrl.Agent(gens, 29, 8, cfg, "cpu")
        nzk = admrl.expand(nz, len(ks))
        trainer = admrl.ModelTrainer({n: v.expand(len(ks), *v.shape) for n, v in phi.items()}, cfg)
        for _ in range(2):
            trainer.step(nzk, s[ks], a[ks], s2[ks])
        model = {n: v.detach() for n, v in trainer.phi.items()}
        agent.update(family, nzk, model, psis[ks], starts[ks])
        return agent.pi, model

    both, model_both = run([0, 1])
    for k in (0, 1):
        alone, model_alone = run([k])
        for n in both:
            torch.testing.assert_close(both[n][k], alone[n][0], rtol=1e-4, atol=1e-5)
        for n in model_both:
            torch.testing.assert_close(model_both[n][k], model_alone[n][0], rtol=1e-4, atol=1e-6)


def test_trpo_tries_the_full_step_first_and_searches_only_where_a_task_rejects_it():
    """The batched line search: the full step for every task, the halvings only when some task rejects
    it; each task's result is its own full search's (a task with zero advantages has no direction: NaN,
    rejected at every halving, its policy kept)."""
    K, N = 3, 50
    gens = [torch.Generator().manual_seed(k) for k in range(K)]
    pi = admrl.init_policy(gens, 4, 2, TINY)
    nz = admrl.expand(admrl.init_normalizers(4), K)
    s, a = torch.randn(K, N, 4), torch.randn(K, N, 2)
    adv = torch.randn(K, N)
    adv[1] = 0
    cfg = dataclasses.replace(TINY, ent_coef=0.0)  # no entropy bonus: task 1's gradient is exactly 0
    new, accepted = admrl.trpo(pi, nz, s, a, adv, cfg)
    assert accepted.tolist()[1] == -1 and accepted[0] >= 0 and accepted[2] >= 0
    halvings = 0.5 ** torch.arange(cfg.line_search_steps, dtype=torch.float64)
    for k in range(K):
        one = {n: v[k] for n, v in pi.items()}
        alone, idx = admrl.trpo_step(one, admrl.index(nz, k), s[k], a[k], adv[k], cfg, halvings)
        assert int(idx) == int(accepted[k])
        for n in one:
            torch.testing.assert_close(new[n][k], alone[n])
    torch.testing.assert_close(new["0.w"][1], pi["0.w"][1])


def test_training_is_deterministic_and_resumes_after_any_task(tmp_path, tiny_run):
    full = tiny_run
    ck = tmp_path / "run.pt"
    first = admrl.train("hopper-2d", TINY, seed=3, checkpoint=str(ck), stop_after=2)
    assert first["j"] == 2
    resumed = admrl.train("hopper-2d", TINY, seed=3, checkpoint=str(ck))
    assert [s["x"] for s in resumed["snapshots"]] == [s["x"] for s in full["snapshots"]]
    # the adversarial step moved task 2 off the centre by α·grad (its sign and size: the bandit test above)
    step = admrl.ALPHA["hopper-2d"] * np.asarray(full["snapshots"][1]["stats"]["grad"])
    assert full["snapshots"][2]["x"] != [0.0, 0.0]
    np.testing.assert_allclose(full["snapshots"][2]["x"], np.clip(step, -1, 1), rtol=1e-6)
    for a, b in zip(resumed["D"], full["D"]):
        torch.testing.assert_close(a, b)
    for n, v in full["phi"].items():
        torch.testing.assert_close(resumed["phi"][n], v)


def test_shared_first_task_starts_every_sampler(tmp_path):
    """Task 0 is computed once (stop_after=1) and MB-Unif resumes from it."""
    init = admrl.train("hopper-2d", TINY, seed=0, stop_after=1)
    unif = admrl.train("hopper-2d", dataclasses.replace(TINY, task_sampler="uniform"), seed=0, start_from=init)
    assert unif["snapshots"][0] is init["snapshots"][0]
    assert unif["snapshots"][1]["x"] == [0.0, 0.0]
    assert unif["snapshots"][2]["x"] != [0.0, 0.0]
    rows = admrl.adapt_and_evaluate("hopper-2d", unif, 2, torch.tensor([[0.5, 1.5]]), [7], TINY, seed=0)
    assert [r["n"] for r in rows] == [0, 400]
    assert all(np.isfinite(r["return"]) for r in rows)
    # the snapshot's model loss on the zero-shot policy's first samples, one number per task
    assert rows[0]["surprisal"] == rows[1]["surprisal"] > 0


def test_a_non_finite_model_loss_raises_naming_the_task_and_its_x(monkeypatch):
    """A NaN model loss (here every model loss is made NaN) stops training with the loss, the task and its x."""
    real = slbo.model_loss
    monkeypatch.setattr(slbo, "model_loss", lambda *args: real(*args) * float("nan"))
    with pytest.raises(FloatingPointError, match=r"admrl: non-finite model loss \[nan\] at training task 0 \(x = \[0.3, 0.3\]\)"):
        admrl.train("hopper-2d", TINY, seed=0)


def test_a_non_finite_value_loss_raises(monkeypatch):
    real = slbo.value
    monkeypatch.setattr(slbo, "value", lambda vf, nz, s: real(vf, nz, s) * float("nan"))
    with pytest.raises(FloatingPointError, match=r"admrl: non-finite value loss .*at training task 0"):
        admrl.train("hopper-2d", TINY, seed=0)


def test_a_family_without_a_model_reward_is_refused():
    with pytest.raises(ValueError, match="cheetah-vel.*no model reward"):
        admrl.train("cheetah-vel", TINY, seed=0)


@pytest.mark.slow
def test_slbo_learns_a_cheetah_highdim_task():
    """SLBO alone (one task, four stages of 2,000 real samples): the real return climbs well above the
    first stage's (an untrained policy plus OU noise) and the model's loss falls. ψ = 0.3·1 rewards
    raising every normalised state coordinate, forward speed among them. Measured at seed 0 (this
    config, idle 2-core EPYC): returns 118 → 406 over four stages, model loss 0.79 → 0.17."""
    cfg = admrl.Config(n_tasks=1, n_slbo_first=4, n_inner=4, n_policy=5, n_model=100, virtual_envs=10,
                       collect_envs=10, model_hidden=(200, 200))
    logs = []
    admrl.train("cheetah-highdim", cfg, seed=0, log=logs.append)
    real = [m["real_return"] for m in logs if "real_return" in m]
    model = [m["model_loss"][0] for m in logs if "model_loss" in m]
    assert len(real) == 4
    assert real[-1] > real[0] + 150, real
    assert np.mean(model[-4:]) < 0.5 * model[0], model


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(tmp_path):
    """The model and TRPO steps on CUDA equal the CPU's within float32 tolerance (every draw comes from
    CPU generators); a whole CUDA run, its checkpoint (CPU tensors) and its test protocol complete.
    Whole-run numbers are not compared: MuJoCo amplifies rounding-level action differences."""
    family, cfg = "ant-2d", TINY
    psis = torch.tensor([[1.0, 0.0]])
    phi = admrl.init_model(torch.Generator().manual_seed(0), 29, 8, cfg)
    starts = admrl.reset_states(family, psis.double(), 20, [0])
    rng = torch.Generator().manual_seed(5)
    batch = torch.randn(1, 64, 29, generator=rng), torch.randn(1, 64, 8, generator=rng), torch.randn(1, 64, 29, generator=rng)
    out = {}
    for device in ("cpu", "cuda"):
        agent = admrl.Agent([torch.Generator().manual_seed(1)], 29, 8, cfg, device)
        nz = admrl.expand(admrl.init_normalizers(29), 1)
        nz = admrl.Normalizers(*(t.to(device) for t in nz))
        trainer = admrl.ModelTrainer({n: v[None].to(device) for n, v in phi.items()}, cfg)
        trainer.step(nz, *(t.to(device) for t in batch))
        agent.update(family, nz, {n: v.detach() for n, v in trainer.phi.items()}, psis.to(device), starts.to(device))
        out[device] = {**{f"pi.{n}": v.cpu() for n, v in agent.pi.items()},
                       **{f"phi.{n}": v.detach().cpu() for n, v in trainer.phi.items()}}
    for n, v in out["cpu"].items():
        torch.testing.assert_close(out["cuda"][n], v, rtol=1e-3, atol=1e-4, msg=n)
    ck = tmp_path / "run.pt"
    run = admrl.train(family, cfg, seed=0, device="cuda", checkpoint=str(ck))
    saved_at = []
    torch.load(ck, weights_only=True, map_location=lambda storage, location: saved_at.append(location) or storage)
    assert set(saved_at) == {"cpu"}
    rows = admrl.adapt_and_evaluate(family, run, 2, psis, [0], cfg, seed=0, device="cuda")
    assert all(np.isfinite(r["return"]) for r in rows)


def test_reference_policy_round_trip_and_model_errors():
    """A reference agent's saved slice acts as the batched actor's task k; every snapshot's model is
    scored on a fixed out-of-distribution dataset (Fig. 6)."""
    from paper_repro import nets

    actor = nets.TanhGaussianActor([torch.Generator().manual_seed(i) for i in range(2)], 29, 8, (16, 16),
                                   torch.ones(8), torch.zeros(8))
    one = admrl.sac_actor(nets.task_slice(actor, 1))
    obs = torch.randn(2, 5, 29)
    torch.testing.assert_close(one(obs[1:], deterministic=True)[0][0], actor(obs, deterministic=True)[0][1])
    psis = torch.tensor([[5.0, -5.0], [-5.0, 3.0]], dtype=torch.float64)
    data = admrl.ood_dataset("ant-2d", psis, [one, one], 50, [0, 1])
    assert [len(d[0]) for d in data] == [50, 50]
    again = admrl.ood_dataset("ant-2d", psis, [one, one], 50, [0, 1])
    torch.testing.assert_close(data[0][1], again[0][1])  # fixed seeds: one dataset for every model
    run = admrl.train("ant-2d", dataclasses.replace(TINY, n_tasks=2), seed=0)
    rows = admrl.model_errors(run, data)
    assert [r["task"] for r in rows] == [0, 1]
    assert all(np.isfinite(r["model_rms"]) and r["model_mse_normalised"] > 0 for r in rows)


ADMRL_CHILD = """
import sys, time
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
from test_admrl import TINY
from paper_repro import io
from paper_repro.algos import admrl
torch.set_num_threads(1)
out, pause = Path(sys.argv[1]), sys.argv[2] == "pause"
def hold(m):  # task 2 starts after task 1's checkpoint: announce, then wait to be killed
    if pause and m.get("task") == 2:
        (out / "ready").write_text("")
        time.sleep(120)
state = admrl.train("hopper-2d", TINY, seed=5, checkpoint=str(out / "ck.pt"), log=hold)
io.save_checkpoint(out / "final.pt", state)
"""


def test_resume_after_sigkill_is_bit_exact(tmp_path):
    """A training job killed with SIGKILL (the node dies) during task 2 resumes after task 1's checkpoint
    and ends where an uninterrupted run ends."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from conftest import wait_until
    from paper_repro import io

    code = ADMRL_CHILD.format(tests=str(Path(__file__).parent))

    def run(out, mode):
        out.mkdir(exist_ok=True)
        return subprocess.Popen([sys.executable, "-c", code, str(out), mode])

    full, cut = tmp_path / "full", tmp_path / "cut"
    reference = run(full, "run")
    child = run(cut, "pause")
    wait_until((cut / "ready").exists, child, "task 2")
    assert io.load_checkpoint(cut / "ck.pt")["j"] == 2
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert run(cut, "run").wait() == 0 and reference.wait() == 0
    a, b = io.load_checkpoint(full / "final.pt"), io.load_checkpoint(cut / "final.pt")
    assert [s["x"] for s in a["snapshots"]] == [s["x"] for s in b["snapshots"]]
    for k in a["phi"]:
        torch.testing.assert_close(a["phi"][k], b["phi"][k], rtol=0, atol=0)
    for x, y in zip(a["D"], b["D"]):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_gauss_space_psi_draws_variance_one_in_psi_and_x_half_the_box():
    """MB-Gauss: the code's N(0, 1) on x has std half the box width in ψ (ant-2d: 3; 32% on each face pair),
    the paper's "variance 1" (``gauss_space: psi``) std 1 in ψ; the same normal draws, scaled by 2/(hi - lo)."""
    def draws(cfg, family, n=20000):
        rng = np.random.default_rng(7)
        return np.array([admrl.next_x("gauss", 2, np.zeros(2), rng, cfg, family) for _ in range(n)])

    code, paper = admrl.Config(), admrl.Config(gauss_space="psi")
    lo, hi = admrl.box("ant-2d")  # [-3, 3]²
    x_code, x_paper = draws(code, "ant-2d"), draws(paper, "ant-2d")
    inside = np.abs(x_code) < 1
    np.testing.assert_allclose(x_paper[inside], x_code[inside] / 3, rtol=1e-12)  # z/3: the same z
    psi_paper = admrl.to_psi(torch.as_tensor(x_paper), lo, hi).numpy()
    assert psi_paper.std(0) == pytest.approx([1.0, 1.0], abs=0.02) and abs(psi_paper.mean()) < 0.02
    assert np.mean(np.abs(x_paper) == 1) == pytest.approx(0.0027, abs=0.002)  # P(|N(0, 1)| > 3)
    assert np.mean(np.abs(x_code) == 1) == pytest.approx(0.317, abs=0.015)  # P(|N(0, 1)| > 1)
    # walker-2d: g_v ∈ [-2, 2] (x std 0.5), g_h ∈ [1.0, 1.8] (x std 2.5: the height mostly on a face)
    faces = np.mean(np.abs(draws(paper, "walker-2d")) == 1, axis=0)
    np.testing.assert_allclose(faces, [0.0455, 0.689], atol=0.015)
    with pytest.raises(ValueError, match=r"gauss_space = 'phi'.*'x', 'psi'"):
        admrl.Config(gauss_space="phi")


class FallsAfter:
    """A stand-in env: 3-d zero observations, reward 1 per step, terminates after ``length`` steps."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)

    def __init__(self, length: int):
        self.length, self.t = length, 0

    def reset(self, seed=None):
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(3, np.float32), 1.0, self.t >= self.length, False, {}


@pytest.mark.parametrize("estimator,expected", [("episodes", [7.0, 4.0, 10.0]), ("authors_window", [6.0, 3.8, 10.0])])
def test_return_estimators_on_episodes_that_fall_at_known_steps(estimator, expected):
    """Horizon 10, reward 1 per step. Task 0: one env never falls, one falls after 4 steps; task 1: after 3
    and 5; task 2: never. ``episodes``: (10 + 4)/2 = 7, (3 + 5)/2 = 4, 10. ``authors_window`` (the code's
    testeval, 10 steps of each env): task 0 counts 10, 4, 4 (the third episode, 2 steps old, is dropped) = 6;
    task 1 counts 3, 3, 3 and 5, 5 = 19/5 = 3.8; task 2 the same 10."""
    lengths = [[100, 4], [3, 5], [100, 100]]
    task_envs = [[FallsAfter(n) for n in row] for row in lengths]
    gens = [torch.Generator().manual_seed(k) for k in range(3)]
    pi = admrl.init_policy(gens, 3, 2, TINY)
    nz = admrl.expand(admrl.init_normalizers(3), 3)
    returns = admrl.evaluate(pi, nz, gens, task_envs, [0, 1, 2], 10, estimator)
    np.testing.assert_allclose(returns, expected, rtol=1e-12)
    assert admrl.window_episodes([FallsAfter(3)], lambda obs: np.zeros((1, 2)), [0], 10, 10) == [[3.0, 3.0, 3.0]]


def test_only_the_evaluation_reads_the_eval_only_fields():
    """The training rules leave admrl.EVAL_ONLY out of their params (workflow/rules/params.smk, admrl_learner):
    so no function but the test protocol's may read them, in admrl.py or in its parts."""
    import ast
    import inspect

    readers = {fn.name for module in (admrl, admrl_envs, admrl_gradient, admrl_model_error, slbo)
               for fn in ast.parse(inspect.getsource(module)).body if isinstance(fn, (ast.FunctionDef, ast.ClassDef))
               for node in ast.walk(fn) if isinstance(node, ast.Attribute) and node.attr in admrl.EVAL_ONLY}
    assert readers == {"adapt_and_evaluate"}
    assert set(admrl.EVAL_ONLY) <= {f.name for f in dataclasses.fields(admrl.Config)}

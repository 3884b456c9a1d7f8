"""AdMRL (Lin et al. 2020): model-based adversarial meta-RL, and its twins MB-Unif and MB-Gauss.

The paper's Algorithm 1 (App. C) as the authors' code runs it (AdMRL spec §2.3):

    φ, normalisers ← init;  D ← ∅;  x ← 0.3·1                       x ∈ [-1, 1]ᵏ, ψ = lo + (x + 1)(hi - lo)/2
    for j = 0 … n_tasks - 1:
        j = 1: x ← the centre;  j ≥ 2: adversarial keeps x,  uniform: x ~ U[-1, 1]ᵏ,  gauss: x ~ clip(N(0, I))
        θ, V ← fresh
        if j ≥ 1: VirtualTraining(n_zeroshot)                       θ̂: the zero-shot policy, in the model only
        repeat n_slbo (j = 0: n_slbo_first):                        SLBO on real data of the task
            D ← D ∪ n_collect real samples of π_θ + OU noise;  VirtualTraining(n_inner)        → θ*
        if adversarial and j ≥ 1: x ← clip(x + α·∂(gap)/∂x, -1, 1)   the task gradient (§4.2, App. A-B)

    VirtualTraining(n): repeat n: {n_model Adam steps on φ with batches of D; n_policy TRPO updates on
    virtual rollouts of π_θ in φ under the task's reward}

The model-based learner is batched over K tasks throughout (policies, value functions, normalisers and
model copies stacked on a leading dimension, TRPO ``vmap``ped): training runs K = 1, and the test
protocol (``adapt_and_evaluate``: A₀ zero-shot, then A₂₀₀₀, A₄₀₀₀, A₆₀₀₀ after stages of real
samples) runs every test task of a grid at once. Task k draws only from its own generators, so task
k's numbers do not depend on K (tested against a loop over tasks).

This file is the algorithm; its parts stand beside it: ``slbo`` (networks as parameter dicts,
normalisers, the dynamics model, policy and value function, virtual rollouts, GAE, TRPO, the Agent),
``admrl_envs`` (the task box and ψ, real envs, collection, evaluation), ``admrl_gradient`` (the task
gradient) and ``admrl_model_error`` (Fig. 6); the names callers use are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.func import vmap

from paper_repro import envs, io
from paper_repro.algos.admrl_envs import (RETURN_ESTIMATORS, as_batch, box, collect, evaluate, real_envs,
                                          reset_states, task_row, to_psi)
from paper_repro.algos.admrl_gradient import GradientData, task_gradient
from paper_repro.algos.slbo import (Agent, Batch, ModelTrainer, Normalizers, expand, index, init_model,
                                    init_normalizers, model_loss, update_normalizers, virtual_rollout)

# re-exported for the tests, benchmarks and the Fig. 6 script, which read these parts as admrl.<name>
from paper_repro.algos.admrl_envs import window_episodes  # noqa: F401
from paper_repro.algos.admrl_gradient import complete_episodes, episode_matrix, hessian_vector  # noqa: F401
from paper_repro.algos.admrl_gradient import policy_gradient, solve_implicit, task_jacobian  # noqa: F401
from paper_repro.algos.admrl_model_error import model_errors, ood_dataset, sac_actor  # noqa: F401
from paper_repro.algos.slbo import gae, init_policy, init_value, log_prob, trpo, trpo_step, value  # noqa: F401

# App. C, per family: the task step size α on the normalised x (a sweep over {1, 2, 4, 8, 16, 32}) and
# the SLBO stages of the first task.
ALPHA = {"hopper-2d": 2.0, "walker-2d": 8.0, "ant-2d": 4.0, "ant-3d": 4.0, "cheetah-highdim": 16.0}
FIRST_STAGES = {"hopper-2d": 10, "walker-2d": 10, "ant-2d": 20, "ant-3d": 20, "cheetah-highdim": 20}


@dataclass(frozen=True)
class Config:
    task_sampler: str = "adversarial"
    """adversarial (AdMRL) | uniform (MB-Unif) | gauss (MB-Gauss) (``main.py:517-526``)."""
    gauss_space: str = "x"
    """MB-Gauss's N(0, 1) on the normalised x, std half the box width in ψ (``x``: the code, ``task_param.py:74-77``, P19),
    or on ψ about the box's centre (``psi``: the paper's "variance 1", §5.2); clipped to the box either way."""
    n_tasks: int = 20
    """Training tasks (§5.2: "all methods are trained on 20 tasks"; a snapshot is kept after each)."""
    horizon: int = 200
    """Steps per episode, real and virtual (``flags.py:55,136``)."""
    policy_hidden: tuple[int, ...] = (32, 32)
    """Gaussian policy mean: tanh MLP, normc(1) hidden and normc(0.01) output init, log σ₀ = 0 (``flags.py:114-116``)."""
    value_hidden: tuple[int, ...] = (64, 64)
    """Value function: tanh MLP, normc(1) init (``main.py:214``)."""
    model_hidden: tuple[int, ...] = (1000, 1000)
    """Dynamics model: ReLU MLP, weights TruncatedNormal(0, 1e-5), biases 0 (``flags.py:103``, ``dynamics_model.py:15``)."""
    model_lr: float = 1e-3
    model_weight_decay: float = 1e-5
    """Adds wd·Σ‖W‖²/2 over every model parameter to the loss (``multi_step_loss.py:52-64``)."""
    model_grad_clip: float = 2.0
    """Global gradient-norm clip of each model step (``flags.py:107-111``)."""
    model_batch: int = 256
    """Transitions per model step, uniform with replacement from all of D (``flags.py:111``, ``main.py:604``)."""
    n_model: int = 100
    """Model Adam steps per outer iteration (App. C)."""
    n_policy: int = 20
    """TRPO updates per outer iteration (App. C)."""
    n_zeroshot: int = 40
    """Outer iterations of zero-shot adaptation in the model (App. C)."""
    n_inner: int = 20
    """Outer iterations after each SLBO stage (App. C)."""
    n_slbo: int = 3
    """SLBO stages per task after the first (App. C)."""
    n_slbo_first: int | None = None
    """SLBO stages of task 0; None: App. C's value for the family (10 hopper/walker, 20 ant/cheetah)."""
    virtual_envs: int = 50
    """Parallel virtual episodes per TRPO update: 50 × 200 = 10,000 samples (App. C, ``main.py:140``)."""
    collect_envs: int = 50
    """Parallel real episodes per SLBO stage: 50 × 200 = 10,000 samples (``main.py:137``)."""
    gamma: float = 0.99
    lam: float = 0.95
    """GAE (``flags.py:134-135``)."""
    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 0.1
    """TRPO (``flags.py:126-128``)."""
    ent_coef: float = 0.005
    """Bonus on the limited entropy (``flags.py:131``)."""
    line_search_steps: int = 10
    """Halvings of the TRPO step; accepted when finite, KL ≤ 1.5·max_kl and the surrogate not worse (``TRPO.py:163-180``)."""
    vf_lr: float = 1e-3
    vf_epochs: int = 5
    vf_batch: int = 64
    """Value fit on λ-returns after each TRPO update (``TRPO.py:184-203``)."""
    ou_theta: float = 0.15
    ou_sigma: float = 0.3
    """Ornstein-Uhlenbeck exploration noise of real collection (``flags.py:97-99``); one state per env,
    reset at each collection (the code shares one state across envs and never resets it, P17)."""
    alpha: float | None = None
    """Task step size on x; None: App. C's value for the family (the code's default 1.0 is not the paper's)."""
    grad_envs: int = 50
    """Episodes of each of the task gradient's three rollouts: 50 × 200 = 10,000 samples (``main.py:115``)."""
    task_cg_iters: int = 200
    task_cg_damping: float = 0.1
    task_cg_tol: float = 1e-6
    """The damped normal-equation solve (H²/P + 0.1 I) y = H b / P (``ADVTASK.py:68, 260-297``)."""
    hessian_estimator: str = "per_step"
    """H, B and p from per-step log-probabilities × GAE advantages, as the code (``ADVTASK.py:231, 243``), or
    ``trajectory``: each complete episode's log-probability × its discounted return, as Eqs. 7 and 20 (P5)."""
    task_gae: str = "fixed"
    """The task gradient's differentiable GAE: ``fixed`` bootstraps every step with V(s'_t), masked on
    termination only; ``authors`` also zeroes V(s_{t+1}) where the next step terminates, as the code's
    ``td`` (``runner.py:101-103``, P18). TRPO's own GAE is the same either way at horizon-long rows."""
    grad_normalizer: str = "frozen"
    """θ̂ in the task gradient reads the normaliser it was trained with (``frozen``, a copy taken after
    zero-shot) or the post-SLBO one (``shared``: the code's single object, updated during SLBO, P6)."""
    init_x: float = 0.3
    """Task 0 at x = 0.3·1 (``task_param.py:64``)."""
    second_task: str = "centre"
    """Task 1: centre | random. The code puts it at the centre (cheetah-highdim 0.2) for every method (P8)."""
    test_collect_envs: int = 10
    """Test time: 10 × 200 = 2,000 real samples per stage (``collect2000``, ``main.py:723-726``)."""
    test_stages: int = 3
    """A₂₀₀₀, A₄₀₀₀, A₆₀₀₀ (§5)."""
    test_zeroshot: int = 40
    test_inner: int = 20
    eval_episodes: int = 50
    """Evaluation: 50 envs × 200 steps = the code's 10,000 samples, stochastic actions (``main.py:67-72``)."""
    return_estimator: str = "episodes"
    """A_n: the mean return of one whole episode per env (``episodes``), or the code's ``testeval`` (``authors_window``:
    each env runs ``horizon`` steps, restarting as episodes end; the mean over the episodes that end inside them)."""

    def __post_init__(self):
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"admrl: {key} = {getattr(self, key)!r}; allowed: {list(allowed)}")


CHOICES = {"task_sampler": ("adversarial", "uniform", "gauss"), "second_task": ("centre", "random"),
           "hessian_estimator": ("per_step", "trajectory"), "task_gae": ("fixed", "authors"),
           "grad_normalizer": ("frozen", "shared"), "gauss_space": ("x", "psi"),
           "return_estimator": RETURN_ESTIMATORS}
EVAL_ONLY = ("return_estimator",)
"""Config fields that only the test protocol's evaluation reads: training jobs leave them out of their params."""


def alpha(cfg: Config, family: str) -> float:
    return cfg.alpha if cfg.alpha is not None else ALPHA[family]


def first_stages(cfg: Config, family: str) -> int:
    return cfg.n_slbo_first if cfg.n_slbo_first is not None else FIRST_STAGES[family]


# --- the task samplers -----------------------------------------------------------------------------


def next_x(sampler: str, j: int, x: np.ndarray, rng: np.random.Generator, cfg: Config, family: str) -> np.ndarray:
    """The normalised parameter of training task j (``main.py:511-526``; x of the last update for j ≥ 2
    when adversarial)."""
    k = len(x)
    if j == 0:
        return np.full(k, cfg.init_x)
    if j == 1:
        if cfg.second_task == "random":
            return rng.uniform(-1, 1, k)
        return np.full(k, 0.2 if family == "cheetah-highdim" else 0.0)
    if sampler == "adversarial":
        return x
    if sampler == "uniform":
        return rng.uniform(-1, 1, k)
    if sampler == "gauss":  # N(0, 1) on x (the code), or on ψ: x = 2(ψ - centre)/(hi - lo)
        z = rng.standard_normal(k)
        if cfg.gauss_space == "psi":
            lo, hi = box(family)
            z = z * 2 / (hi - lo).numpy()
        return np.clip(z, -1, 1)
    raise ValueError(f"admrl: unknown task_sampler {sampler!r}; expected adversarial, uniform or gauss")


# --- VirtualTraining and the meta-training loop ------------------------------------------------------


class Data(NamedTuple):
    """Real transitions (s, a, s'): ``shared`` by every task (the run's D up to a snapshot) and each
    task's ``own`` (its test-time stages); a model batch draws uniformly from their union."""

    shared: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    own: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def model_batch(data: Data, gens: Sequence[torch.Generator], size: int) -> tuple[torch.Tensor, ...]:
    """``size`` transitions per task, uniform with replacement from shared ∪ own (``decay='joint'``)."""
    n_shared = len(data.shared[0])
    out = [[], [], []]
    for own, g in zip(data.own, gens):
        idx = torch.randint(n_shared + len(own[0]), (size,), generator=g).to(data.shared[0].device)
        mine = idx >= n_shared  # rows of the task's own data; no copy of the (large) shared data
        for i in range(3):
            rows = data.shared[i][idx.clamp(max=n_shared - 1)]
            if mine.any():
                rows = torch.where(mine[:, None], own[i][(idx - n_shared).clamp(min=0)], rows)
            out[i].append(rows)
    return tuple(torch.stack(x) for x in out)


def virtual_training(family: str, agent: Agent, trainer: ModelTrainer, data: Data | None, nz: Normalizers,
                     psi: torch.Tensor, starts: torch.Tensor, iters: int, log: Callable[[dict], None]) -> None:
    """App. C's VirtualTraining: ``iters`` × {n_model model steps (none when ``data`` is None); n_policy TRPO updates}."""
    cfg = agent.cfg
    for _ in range(iters):
        if data is not None:
            for _ in range(cfg.n_model):
                losses = trainer.step(nz, *model_batch(data, agent.gens, cfg.model_batch))
            check_finite(losses, "model loss", log)
        phi = {k: v.detach() for k, v in trainer.phi.items()}
        for _ in range(cfg.n_policy):
            stats = agent.update(family, nz, phi, psi, starts)
        check_finite(torch.tensor(stats["vf_loss"]), "value loss", log)
        log({"virtual_return": stats["virtual_return"], "vf_loss": stats["vf_loss"],
             **({"model_loss": losses.tolist()} if data is not None else {})})


def check_finite(values: torch.Tensor, name: str, log: Callable[[dict], None]) -> None:
    if not torch.isfinite(values).all():
        where = getattr(log, "where", "")
        raise FloatingPointError(f"admrl: non-finite {name} {values.tolist()} {where}".rstrip())


def task_seed(seed: int, *tags: int) -> int:
    return int(np.random.SeedSequence([seed, *tags]).generate_state(1)[0])


def train(family: str, cfg: Config, *, seed: int, device: str | torch.device = "cpu",
          log: Callable[[dict], None] = lambda m: None, checkpoint: str | None = None,
          start_from: dict | None = None, stop_after: int | None = None) -> dict:
    """Meta-train on ``cfg.n_tasks`` tasks chosen by ``cfg.task_sampler``; returns the run's state
    with a snapshot after every task (model, normalisers, |D|, x, ψ and the task's logs).

    ``start_from``: the state after task 0, shared by the three methods of a seed (``--inittask``);
    ``stop_after``: stop after that many tasks (1: compute that shared task 0). ``checkpoint``: the
    state is saved after every task and a run resumes after the last finished one.
    """
    fam = envs.get_family(family)
    if fam.model_reward is None:
        raise ValueError(f"admrl: family {family!r} has no model reward; AdMRL's families: "
                         f"{[f for f in envs.FAMILIES if envs.get_family(f).model_reward is not None]}")
    device = torch.device(device)
    lo, hi = box(family)
    probe = envs.make(family, task_row(family, to_psi(torch.zeros(len(lo)), lo, hi)))
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    state = (io.load_checkpoint(checkpoint) if checkpoint else None) or start_from
    if state is None:
        gen = torch.Generator().manual_seed(task_seed(seed, 0))
        state = {"j": 0, "x": None, "phi": init_model(gen, obs_dim, act_dim, cfg), "model_opt": None,
                 "nz": init_normalizers(obs_dim)._asdict(), "D": [torch.zeros(0, obs_dim), torch.zeros(0, act_dim),
                                                       torch.zeros(0, obs_dim)],
                 "sampler_rng": np.random.default_rng([seed, 1]).bit_generator.state, "snapshots": []}
    trainer = ModelTrainer({k: v[None].to(device) for k, v in state["phi"].items()}, cfg)
    if state["model_opt"] is not None:
        trainer.opt.load_state_dict(state["model_opt"])
    nz = expand(Normalizers(**{k: t.to(device) for k, t in state["nz"].items()}), 1)
    D = [t.to(device) for t in state["D"]]
    rng = np.random.default_rng()
    rng.bit_generator.state = state["sampler_rng"]
    x = None if state["x"] is None else np.asarray(state["x"])
    last = cfg.n_tasks if stop_after is None else min(stop_after, cfg.n_tasks)
    for j in range(state["j"], last):
        x = next_x(cfg.task_sampler, j, x if x is not None else np.zeros(len(lo)), rng, cfg, family)
        psi = to_psi(torch.as_tensor(x), lo, hi)
        row = {"task": j, **{f"x_{i}": float(v) for i, v in enumerate(x)}, **task_row(family, psi)}

        def log_task(m, _row=row):
            log({**_row, **m})
        log_task.where = f"at training task {j} (x = {np.round(x, 4).tolist()})"

        gens = [torch.Generator().manual_seed(task_seed(seed, 1, j))]
        np_gens = [np.random.default_rng(task_seed(seed, 2, j))]
        agent = Agent(gens, obs_dim, act_dim, cfg, device)
        psis = psi[None].float().to(device)
        starts = reset_states(family, psi[None], 1000, [task_seed(seed, 3, j) % 2**31]).to(device)
        task_envs = real_envs(family, psi[None], cfg.collect_envs)
        data = lambda: Data((D[0], D[1], D[2]), [(D[0][:0], D[1][:0], D[2][:0])])  # noqa: E731
        if j >= 1:  # zero-shot: the model keeps training on old data at training time (P11)
            virtual_training(family, agent, trainer, data(), nz, psis, starts, cfg.n_zeroshot, log_task)
        pi_hat, vf_hat, nz_hat = dict(agent.pi), {k: v.detach().clone() for k, v in agent.vf.items()}, nz
        stages = first_stages(cfg, family) if j == 0 else cfg.n_slbo
        real_returns = []
        for stage in range(stages):
            rows = collect(agent.pi, nz, gens, task_envs, cfg.horizon, [task_seed(seed, 4, j, stage) % 2**31],
                           (cfg.ou_theta, cfg.ou_sigma), np_gens)[0]
            D = [torch.cat([D[0], rows["obs"]]), torch.cat([D[1], rows["action"]]), torch.cat([D[2], rows["next_obs"]])]
            nz = vmap(update_normalizers)(nz, rows["obs"][None], rows["next_obs"][None])
            real_returns.append(float(as_batch(rows, cfg.collect_envs).rew.sum(1).mean()))
            log_task({"stage": stage, "real_return": real_returns[-1]})
            virtual_training(family, agent, trainer, data(), nz, psis, starts, cfg.n_inner, log_task)
        snapshot = {"task": j, "x": x.tolist(), "psi": psi.tolist(), "offset": len(D[0]),
                    "phi": {k: v[0].detach().cpu().clone() for k, v in trainer.phi.items()},
                    "nz": {k: t[0].cpu() for k, t in nz._asdict().items()},
                    # each stage's mean real return of its collection episodes (π_θ + OU noise): the first
                    # stage's is θ̂'s zero-shot policy, the last the SLBO policy on its way to θ*
                    "stats": {"real_returns": real_returns}}
        if cfg.task_sampler == "adversarial" and 1 <= j < cfg.n_tasks - 1:  # the last task's step is never used
            nz_pi = nz_hat if cfg.grad_normalizer == "frozen" else nz  # P6
            tg = gradient_step(family, x, agent, pi_hat, vf_hat, nz_pi, nz, trainer, starts, cfg, seed, j)
            tg = {k: v.tolist() for k, v in tg.items() if k != "x_next"} | {"x_next": tg["x_next"].tolist()}
            log_task(tg)
            snapshot["stats"].update(tg)
            x = np.asarray(tg["x_next"])
        state = {"j": j + 1, "x": x.tolist(), "phi": snapshot["phi"], "model_opt": trainer.opt.state_dict(),
                 "nz": snapshot["nz"], "D": [t.cpu() for t in D], "sampler_rng": rng.bit_generator.state,
                 "snapshots": [*state["snapshots"], snapshot]}
        if checkpoint:
            io.save_checkpoint(checkpoint, state)
    return state


def gradient_step(family, x, agent, pi_hat, vf_hat, nz_hat, nz, trainer, starts, cfg, seed, j) -> dict:
    """Roll out θ̂ in the current model and θ̂, θ* in the env, and step x up the gap's gradient."""
    lo, hi = box(family)
    psi = to_psi(torch.as_tensor(x), lo, hi)
    psis = psi[None].float().to(starts.device)
    gens = [torch.Generator().manual_seed(task_seed(seed, 5, j))]
    phi = {k: v.detach() for k, v in trainer.phi.items()}
    virt = virtual_rollout(family, pi_hat, nz_hat, phi, psis, starts, gens, cfg.grad_envs, cfg.horizon, nz_model=nz)
    task_envs = real_envs(family, psi[None], cfg.grad_envs)
    hat = collect(pi_hat, nz_hat, gens, task_envs, cfg.horizon, [task_seed(seed, 6, j) % 2**31], None, [None])[0]
    star = collect(agent.pi, nz, gens, task_envs, cfg.horizon, [task_seed(seed, 7, j) % 2**31], None, [None])[0]
    data = GradientData(Batch(*(t[0] for t in virt)), as_batch(hat, cfg.grad_envs), as_batch(star, cfg.grad_envs))
    one = {k: v[0] for k, v in pi_hat.items()}
    tg = task_gradient(family, torch.as_tensor(x), one, {k: v[0] for k, v in vf_hat.items()}, index(nz_hat, 0), data, cfg)
    tg["x_next"] = torch.clamp(torch.as_tensor(x) + alpha(cfg, family) * tg["grad"].cpu(), -1, 1)
    tg["gap_estimate"] = torch.tensor(float(data.real_star.rew.sum(1).mean() - data.real_hat.rew.sum(1).mean()))
    return tg


# --- the test protocol (§2.5), batched over test tasks --------------------------------------------------


def adapt_and_evaluate(family: str, run: dict, snapshot: int, psis: torch.Tensor, task_ids: Sequence[int], cfg: Config,
                       *, seed: int, device: str | torch.device = "cpu",
                       log: Callable[[dict], None] = lambda m: None) -> list[dict]:
    """A₀, A_{n₁}, … for every test task ``psis`` ``[K, k]`` (ψ set directly, so tasks outside the
    training box work), all K at once. From training snapshot ``snapshot`` (0-based task index):
    the model and normalisers restored into K copies, fresh policies; zero-shot TRPO in the frozen
    model (A₀); then ``test_stages`` stages of ``test_collect_envs × horizon`` real samples, each
    followed by ``test_inner`` × {model steps on the run's data ∪ the task's own, TRPO updates}.
    Task k's generators come from (seed, task id), so its rows do not depend on K. Each row also carries
    the task's ``surprisal``: the snapshot's model loss on the first stage's samples, before it trains on them."""
    device = torch.device(device)
    snap = run["snapshots"][snapshot]
    K = len(task_ids)
    psis = torch.as_tensor(psis, dtype=torch.float64)
    D = [t[:snap["offset"]].to(device) for t in run["D"]]
    obs_dim, act_dim = D[0].shape[1], D[1].shape[1]
    gens = [torch.Generator().manual_seed(task_seed(seed, 10, t)) for t in task_ids]
    np_gens = [np.random.default_rng(task_seed(seed, 11, t)) for t in task_ids]
    agent = Agent(gens, obs_dim, act_dim, cfg, device)
    trainer = ModelTrainer({k: v.to(device).expand(K, *v.shape) for k, v in snap["phi"].items()}, cfg)
    nz = expand(Normalizers(**{k: t.to(device) for k, t in snap["nz"].items()}), K)
    starts = reset_states(family, psis, 1000, [task_seed(seed, 12, t) % 2**31 for t in task_ids]).to(device)
    psis_f = psis.float().to(device)
    task_envs = real_envs(family, psis, cfg.test_collect_envs)
    eval_envs = real_envs(family, psis, cfg.eval_episodes)
    own = [(D[0][:0], D[1][:0], D[2][:0]) for _ in range(K)]

    def log_eval(m):
        log({"snapshot": snapshot, **m})
    log_eval.where = f"at test tasks {list(task_ids)}"

    rows, surprisal = [], [float("nan")] * K

    def record(n):
        # evaluation draws from its own generators: how long the slowest task's episodes run must not
        # shift any task's later draws
        eval_gens = [torch.Generator().manual_seed(task_seed(seed, 13, t, n)) for t in task_ids]
        returns = evaluate(agent.pi, nz, eval_gens, eval_envs, [task_seed(seed, 13, t, n) % 2**31 for t in task_ids],
                           cfg.horizon, cfg.return_estimator)
        for t, psi, ret in zip(task_ids, psis, returns):
            rows.append({"task_id": int(t), **task_row(family, psi), "n": n, "return": float(ret)})
        log_eval({"n": n, "returns": returns.tolist()})

    # zero-shot: the model is not trained (the code's have_data stays False, P11)
    virtual_training(family, agent, trainer, None, nz, psis_f, starts, cfg.test_zeroshot, log_eval)
    record(0)
    for stage in range(cfg.test_stages):
        new = collect(agent.pi, nz, gens, task_envs, cfg.horizon,
                      [task_seed(seed, 14, t, stage) % 2**31 for t in task_ids], (cfg.ou_theta, cfg.ou_sigma), np_gens)
        if stage == 0:  # the code's "surprisal" (main.py:747-758): the snapshot's model on the zero-shot policy's data
            with torch.no_grad():
                surprisal = model_loss(trainer.phi, nz, *(torch.stack([r[f] for r in new]) for f in ("obs", "action", "next_obs"))).tolist()
            log_eval({"surprisal": surprisal})
        own = [(torch.cat([o[0], r["obs"]]), torch.cat([o[1], r["action"]]), torch.cat([o[2], r["next_obs"]]))
               for o, r in zip(own, new)]
        nz = vmap(update_normalizers)(nz, torch.stack([r["obs"] for r in new]), torch.stack([r["next_obs"] for r in new]))
        virtual_training(family, agent, trainer, Data((D[0], D[1], D[2]), own), nz, psis_f, starts, cfg.test_inner,
                         log_eval)
        record(len(own[0][0]))
    position = {int(t): k for k, t in enumerate(task_ids)}
    return [{**r, "surprisal": surprisal[position[r["task_id"]]]} for r in rows]

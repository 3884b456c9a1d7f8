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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch.func import grad, jacfwd, jvp, vmap

from paper_repro import envs, io, nets, rollout
from paper_repro.buffers import ReplayBuffer
from paper_repro.meta import conjugate_gradient, flat, unflat

Params = dict[str, torch.Tensor]

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
           "return_estimator": ("episodes", "authors_window")}
EVAL_ONLY = ("return_estimator",)
"""Config fields that only the test protocol's evaluation reads: training jobs leave them out of their params."""


def alpha(cfg: Config, family: str) -> float:
    return cfg.alpha if cfg.alpha is not None else ALPHA[family]


def first_stages(cfg: Config, family: str) -> int:
    return cfg.n_slbo_first if cfg.n_slbo_first is not None else FIRST_STAGES[family]


# --- task parameters -------------------------------------------------------------------------------


def box(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = zip(*envs.get_family(family).task_box.values())
    return torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)


def to_psi(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """ψ = lo + (x + 1)(hi - lo)/2; cheetah-highdim's box is [-1, 1]¹⁸, where this is ψ = x as its code has it."""
    return lo.to(x) + (x + 1) * (hi - lo).to(x) / 2


def task_row(family: str, psi: torch.Tensor) -> dict:
    return dict(zip(envs.get_family(family).task_box, map(float, psi)))


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


# --- networks as parameter dicts, stacked over K tasks ---------------------------------------------


def normc(gen: torch.Generator, n_in: int, n_out: int, std: float) -> torch.Tensor:
    """baselines' ``normc_initializer``: each output column of N(0, 1) draws scaled to norm ``std``."""
    w = torch.randn(n_in, n_out, generator=gen, dtype=torch.float64)
    return (w * std / w.square().sum(0, keepdim=True).sqrt()).float()


def init_mlp(gen: torch.Generator, sizes: Sequence[int], init: str, out_std: float = 1.0) -> Params:
    params = {}
    last = len(sizes) - 2
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if init == "normc":
            params[f"{i}.w"] = normc(gen, a, b, out_std if i == last else 1.0)
        else:  # the model's TruncatedNormal(0, 1e-5): the initial model predicts s' = s + μ_diff
            params[f"{i}.w"] = torch.nn.init.trunc_normal_(torch.empty(a, b), 0.0, 1e-5, -2e-5, 2e-5, generator=gen)
        params[f"{i}.b"] = torch.zeros(b)
    return params


def mlp(params: Params, x: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One network (weights ``[in, out]``, x ``[N, in]``) or K stacked ones (``[K, in, out]``, x ``[K, N, in]``)."""
    n = sum(k.endswith(".w") for k in params)
    for i in range(n):
        x = x @ params[f"{i}.w"] + params[f"{i}.b"].unsqueeze(-2)
        if i < n - 1:
            x = act(x)
    return x


def stack(trees: Sequence[Params]) -> Params:
    return {k: torch.stack([t[k] for t in trees]) for k in trees[0]}


def init_policy(gens: Sequence[torch.Generator], obs_dim: int, act_dim: int, cfg: Config) -> Params:
    def one(g):
        p = init_mlp(g, [obs_dim, *cfg.policy_hidden, act_dim], "normc", out_std=0.01)
        return {**p, "log_std": torch.zeros(act_dim)}
    return stack([one(g) for g in gens])


def init_value(gens: Sequence[torch.Generator], obs_dim: int, cfg: Config) -> Params:
    return stack([init_mlp(g, [obs_dim, *cfg.value_hidden, 1], "normc") for g in gens])


def init_model(gen: torch.Generator, obs_dim: int, act_dim: int, cfg: Config) -> Params:
    return init_mlp(gen, [obs_dim + act_dim, *cfg.model_hidden, obs_dim], "trunc")


# --- running normalisers (``slbo/utils/normalizer.py``) --------------------------------------------


class Normalizers(NamedTuple):
    """Running Gaussian normalisers of states and of state differences s' - s: mean, var, count
    (the code's action normaliser is updated but never read, so it is left out)."""

    s_mean: torch.Tensor
    s_var: torch.Tensor
    d_mean: torch.Tensor
    d_var: torch.Tensor
    n: torch.Tensor


def init_normalizers(obs_dim: int) -> Normalizers:
    z, o = torch.zeros(obs_dim), torch.ones(obs_dim)
    return Normalizers(z, o, z.clone(), o.clone(), torch.zeros(()))


def update_normalizers(nz: Normalizers, s: torch.Tensor, s2: torch.Tensor) -> Normalizers:
    """The exact merge of mean and variance over all data seen (``normalizer.py:32-43``)."""
    m = s.shape[0]
    total = nz.n + m

    def merge(mean, var, x):
        bm, bv = x.mean(0), x.var(0, unbiased=False)
        delta = bm - mean
        return mean + delta * m / total, (var * nz.n + bv * m + delta.square() * nz.n * m / total) / total

    s_mean, s_var = merge(nz.s_mean, nz.s_var, s)
    d_mean, d_var = merge(nz.d_mean, nz.d_var, s2 - s)
    return Normalizers(s_mean, s_var, d_mean, d_var, total)


def std(var: torch.Tensor) -> torch.Tensor:
    return var.sqrt().clamp_min(1e-8)


def normalize(nz: Normalizers, s: torch.Tensor) -> torch.Tensor:
    """States ``[N, d]`` with normalisers ``[d]``, or ``[K, N, d]`` with ``[K, d]``."""
    return (s - nz.s_mean.unsqueeze(-2)) / std(nz.s_var).unsqueeze(-2)


# --- the dynamics model (``slbo/dynamics_model.py``, ``multi_step_loss.py``) ------------------------


def predict(phi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """ŝ' = s + σ_diff ⊙ f([norm(s), clip(a)]) + μ_diff, clipped to ±100 normalised-state units."""
    out = mlp(phi, torch.cat([normalize(nz, s), a.clamp(-1, 1)], -1), torch.relu)
    s2 = s + out * std(nz.d_var).unsqueeze(-2) + nz.d_mean.unsqueeze(-2)
    mean, bound = nz.s_mean.unsqueeze(-2), 100 * std(nz.s_var).unsqueeze(-2)
    return torch.minimum(torch.maximum(s2, mean - bound), mean + bound)


def model_loss(phi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """Single-step loss: the per-sample RMS over state dimensions of the diff-normalised error,
    averaged over the batch (``multi_step_loss.py:31-47``, multi_step = 1)."""
    err = (predict(phi, nz, s, a) - s2) / nz.d_var.sqrt().clamp_min(1e-6).unsqueeze(-2)
    return err.square().mean(-1).sqrt().mean(-1)


class ModelTrainer:
    """Adam on K stacked model copies, each with its own weight decay and gradient-norm clip, so
    that copy k trains exactly as it would alone."""

    def __init__(self, phi: Params, cfg: Config):
        self.phi = {k: v.detach().clone().requires_grad_(True) for k, v in phi.items()}
        self.cfg = cfg
        self.opt = torch.optim.Adam(self.phi.values(), lr=cfg.model_lr)

    def step(self, nz: Normalizers, s: torch.Tensor, a: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        """One step on batches ``[K, B, ...]``; returns each copy's loss ``[K]``."""
        losses = model_loss(self.phi, nz, s, a, s2)  # [K]: each copy's own loss
        decay = sum(v.square().flatten(1).sum(1) for v in self.phi.values()) * (self.cfg.model_weight_decay / 2)
        self.opt.zero_grad(set_to_none=True)
        (losses + decay).sum().backward()
        with torch.no_grad():
            norms = torch.sqrt(sum(v.grad.square().flatten(1).sum(1) for v in self.phi.values()))
            scale = self.cfg.model_grad_clip / norms.clamp_min(self.cfg.model_grad_clip)
            for v in self.phi.values():
                v.grad.mul_(scale.view(-1, *[1] * (v.dim() - 1)))
        self.opt.step()
        return losses.detach()


# --- the policy ---------------------------------------------------------------------------------


def policy_dist(pi: Params, nz: Normalizers, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = mlp({k: v for k, v in pi.items() if k != "log_std"}, normalize(nz, s), torch.tanh)
    return mean, pi["log_std"].unsqueeze(-2).expand_as(mean)


def log_prob(pi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    mean, log_std = policy_dist(pi, nz, s)
    return nets.gaussian_log_prob((a - mean) / log_std.exp(), log_std)


def limited_entropy(mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """SLBO's ``LimitedEntNormal`` entropy, summed over action dimensions (``truncated_normal.py``)."""
    sigma = log_std.exp()
    lo, hi = (-2.0 - mean) / (sigma * math.sqrt(2)), (2.0 - mean) / (sigma * math.sqrt(2))
    h = 0.5 * (log_std + 0.5 * math.log(2 * math.pi)) * (torch.erf(hi) - torch.erf(lo)) \
        + 0.5 * (torch.exp(-hi * hi) * hi - torch.exp(-lo * lo) * lo)
    return h.sum(-1)


def value(vf: Params, nz: Normalizers, s: torch.Tensor) -> torch.Tensor:
    return mlp(vf, normalize(nz, s), torch.tanh).squeeze(-1)


# --- rollouts -------------------------------------------------------------------------------------


class Batch(NamedTuple):
    """Transitions of K tasks laid out ``[K, E, T, ...]``: E env rows of T steps, an episode that
    terminates mid-row followed by a fresh one (the authors' runner)."""

    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor
    next_obs: torch.Tensor
    term: torch.Tensor


def virtual_rollout(family: str, pi: Params, nz: Normalizers, phi: Params, psi: torch.Tensor, starts: torch.Tensor,
                    gens: Sequence[torch.Generator], n_envs: int, horizon: int, nz_model: Normalizers | None = None) -> Batch:
    """E virtual episodes per task, stepped through the model under the family's model reward; a
    terminated episode restarts from a real reset state (``virtual_env.py:45-54``). ``starts``:
    ``[K, S, O]`` reset observations of the real env. The policy reads ``nz``, the model ``nz_model``
    (default the same; the task gradient rolls θ̂ with its own frozen copy through the later model)."""
    nz_model = nz if nz_model is None else nz_model
    fam = envs.get_family(family)
    dev = starts.device

    def draw():
        idx = torch.stack([torch.randint(starts.shape[1], (n_envs,), generator=g) for g in gens]).to(dev)
        return torch.gather(starts, 1, idx[..., None].expand(-1, -1, starts.shape[2]))

    s = draw()
    out = []
    with torch.no_grad():
        for _ in range(horizon):
            mean, log_std = policy_dist(pi, nz, s)  # K stacked networks: batched matmuls, no vmap per step
            eps = torch.stack([torch.randn(n_envs, mean.shape[-1], generator=g) for g in gens]).to(dev)
            a = mean + log_std.exp() * eps
            s2 = predict(phi, nz_model, s, a)
            r = fam.model_reward(s, a, s2, psi[:, None, :].to(s2))
            term = fam.model_done(s2)
            out.append((s, a, r, s2, term))
            s = torch.where(term[..., None], draw(), s2)
    return Batch(*(torch.stack(x, 2) for x in zip(*out)))


def gae(rew: torch.Tensor, term: torch.Tensor, v: torch.Tensor, v_next: torch.Tensor, gamma: float,
        lam: float, authors_td: bool = False) -> torch.Tensor:
    """GAE along the last axis. Bootstraps every step with V of its own next state, masked only where
    the episode terminated (the code used the next row's state, the reset state after a timeout, P18);
    an advantage never crosses an episode's end or a row's end. ``authors_td``: V(s_{t+1}) is also
    zeroed where step t+1 terminates, as the task gradient's ``td`` in the code (``runner.py:101-103``)."""
    if authors_td:
        v_next = torch.cat([v_next[..., :-1] * (~term[..., 1:]), v_next[..., -1:]], -1)
    delta = rew + gamma * (~term) * v_next - v
    adv, out = torch.zeros_like(delta[..., 0]), []
    for t in reversed(range(rew.shape[-1])):
        end = term[..., t] | (t == rew.shape[-1] - 1)
        adv = delta[..., t] + gamma * lam * (~end) * adv
        out.append(adv)
    return torch.stack(out[::-1], -1)


# --- TRPO (``slbo/algos/TRPO.py``), one task; vmapped over K -----------------------------------------


def trpo_step(pi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor, adv: torch.Tensor,
              cfg: Config, shrink: torch.Tensor) -> tuple[Params, torch.Tensor]:
    """One natural-gradient step on ``mean(ratio·Â) + ent_coef·mean(H)``, with the line search's
    step sizes ``shrink`` (halvings) all evaluated at once and the first acceptable one kept. Returns
    the new parameters and the accepted index (-1: none, the old parameters kept)."""
    theta0 = flat(pi)
    m0, ls0 = (x.detach() for x in policy_dist(pi, nz, s))
    lp0 = log_prob(pi, nz, s, a).detach()

    def surrogate(theta):
        p = unflat(theta, pi)
        mean, log_std = policy_dist(p, nz, s)
        ratio = (log_prob(p, nz, s, a) - lp0).exp()
        return (ratio * adv).mean() + cfg.ent_coef * limited_entropy(mean, log_std).mean()

    def kl(theta):
        mean, log_std = policy_dist(unflat(theta, pi), nz, s)
        return nets.gaussian_kl(m0, ls0, mean, log_std).mean()

    def fisher(v):
        return jvp(grad(kl), (theta0,), (v,))[1] + cfg.cg_damping * v

    g = grad(surrogate)(theta0)
    direction, _ = conjugate_gradient(fisher, g, cfg.cg_iters)
    step = torch.sqrt(2 * cfg.max_kl / (direction @ fisher(direction))) * direction
    candidates = theta0 + shrink.to(theta0)[:, None] * step
    loss, kls = vmap(surrogate)(candidates), vmap(kl)(candidates)
    ok = torch.isfinite(loss) & torch.isfinite(kls) & (kls <= 1.5 * cfg.max_kl) & (loss - surrogate(theta0) >= 0)
    first = torch.argmax(ok.int())
    accepted = ok.any()
    theta = torch.where(accepted, candidates[first], theta0)
    return unflat(theta, pi), torch.where(accepted, first, -1)


def trpo(pi: Params, nz: Normalizers, s: torch.Tensor, a: torch.Tensor, adv: torch.Tensor,
         cfg: Config) -> tuple[Params, torch.Tensor]:
    """``trpo_step`` of K stacked policies, vmapped. The full step first: where every task accepts it
    (nearly always) the other halvings cost nothing; otherwise the whole search, whose first acceptable
    step is the full one again for the tasks that accepted it."""
    step = vmap(trpo_step, in_dims=(0, 0, 0, 0, 0, None, None))
    halvings = 0.5 ** torch.arange(cfg.line_search_steps, dtype=torch.float64)
    new, accepted = step(pi, nz, s, a, adv, cfg, halvings[:1])
    if bool((accepted < 0).any()):
        new, accepted = step(pi, nz, s, a, adv, cfg, halvings)
    return new, accepted


class Agent:
    """K policies and value functions (stacked), the value functions' Adam, and the tasks' generators."""

    def __init__(self, gens: Sequence[torch.Generator], obs_dim: int, act_dim: int, cfg: Config, device):
        self.gens, self.cfg = list(gens), cfg
        self.pi = {k: v.to(device) for k, v in init_policy(gens, obs_dim, act_dim, cfg).items()}
        self.vf = {k: v.to(device).requires_grad_(True) for k, v in init_value(gens, obs_dim, cfg).items()}
        self.vf_opt = torch.optim.Adam(self.vf.values(), lr=cfg.vf_lr)


    def update(self, family: str, nz: Normalizers, phi: Params, psi: torch.Tensor, starts: torch.Tensor) -> dict:
        """One TRPO update of every task's policy on a fresh virtual batch, then its value fit."""
        cfg = self.cfg
        b = virtual_rollout(family, self.pi, nz, phi, psi, starts, self.gens, cfg.virtual_envs, cfg.horizon)
        K, E, T = b.rew.shape
        with torch.no_grad():
            v = value(self.vf, nz, b.obs.flatten(1, 2)).view(K, E, T)
            v_next = value(self.vf, nz, b.next_obs.flatten(1, 2)).view(K, E, T)
            adv_raw = gae(b.rew, b.term, v, v_next, cfg.gamma, cfg.lam)
        returns = (adv_raw + v).reshape(K, E * T)
        adv = adv_raw.reshape(K, -1)
        adv = (adv - adv.mean(1, keepdim=True)) / adv.std(1, keepdim=True).clamp_min(1e-8)
        obs, act = b.obs.reshape(K, E * T, -1), b.act.reshape(K, E * T, -1)
        pi = {k: v.detach() for k, v in self.pi.items()}
        self.pi, accepted = trpo(pi, nz, obs, act, adv, cfg)
        vf_loss = self.fit_value(nz, obs, returns)
        return {"virtual_return": (b.rew.sum((1, 2)) / max(1, E)).tolist(), "vf_loss": vf_loss.tolist(),
                "line_search": accepted.tolist()}

    def fit_value(self, nz: Normalizers, obs: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
        """``vf_epochs`` epochs of minibatches of 64 on each task's own shuffle, the last partial batch dropped."""
        K, N = returns.shape
        for _ in range(self.cfg.vf_epochs):
            perm = torch.stack([torch.randperm(N, generator=g) for g in self.gens]).to(obs.device)
            for i in range(N // self.cfg.vf_batch):
                idx = perm[:, i * self.cfg.vf_batch:(i + 1) * self.cfg.vf_batch]
                o = torch.gather(obs, 1, idx[..., None].expand(-1, -1, obs.shape[2]))
                ret = torch.gather(returns, 1, idx)
                loss = (value(self.vf, nz, o) - ret).square().mean(1)
                self.vf_opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                self.vf_opt.step()
        with torch.no_grad():
            return (value(self.vf, nz, obs) - returns).square().mean(1)


def act(pi: Params, nz: Normalizers, s: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """Stochastic actions of K policies for observations ``[K, E, O]``, noise from each task's generator."""
    with torch.no_grad():
        mean, log_std = policy_dist(pi, nz, s)
    eps = torch.stack([torch.randn(mean.shape[1:], generator=g) for g in gens]).to(mean)
    return mean + log_std.exp() * eps


# --- real data --------------------------------------------------------------------------------------


def real_envs(family: str, psis: torch.Tensor, n: int) -> list[list]:
    return [[envs.make(family, task_row(family, psi)) for _ in range(n)] for psi in psis]


def reset_states(family: str, psis: torch.Tensor, n: int, seeds: Sequence[int]) -> torch.Tensor:
    """``n`` reset observations of each task's real env: the start states of virtual episodes."""
    out = []
    for psi, seed in zip(psis, seeds):
        env = envs.make(family, task_row(family, psi))
        out.append(np.stack([env.reset(seed=seed * 100_003 + i)[0] for i in range(n)]))
    return torch.as_tensor(np.stack(out), dtype=torch.float32)


def collect(pi: Params, nz: Normalizers, gens: Sequence[torch.Generator], task_envs: list[list], steps: int,
            seeds: Sequence[int], ou: tuple[float, float] | None, np_gens: Sequence[np.random.Generator]) -> list[dict]:
    """``steps`` steps of each task's envs (reset with ``seeds``, episodes restarting as they end),
    actions π_θ + OU noise (``main.py:721``, ``runner.py:40-87``). Returns each task's transitions."""
    K, E = len(task_envs), len(task_envs[0])
    flat_envs = [e for row in task_envs for e in row]
    obs_dim = flat_envs[0].observation_space.shape[0]
    act_dim = flat_envs[0].action_space.shape[0]
    bufs = [ReplayBuffer(E * steps, obs_dim, act_dim) for _ in range(K)]
    into = [bufs[k] for k in range(K) for _ in range(E)]
    noise = np.zeros((K, E, act_dim))
    device = nz.s_mean.device

    def policy(obs: np.ndarray) -> np.ndarray:
        nonlocal noise
        a = act(pi, nz, torch.as_tensor(obs, device=device).view(K, E, -1), gens).cpu().numpy()
        if ou is not None:
            theta, sigma = ou
            noise = noise - theta * noise + sigma * np.stack([g.standard_normal((E, act_dim)) for g in np_gens])
            a = a + noise
        return a.reshape(K * E, -1)

    rollout.transitions(flat_envs, policy, steps, [s * 1000 + e for s in seeds for e in range(E)], into)
    return [{k: torch.as_tensor(v, device=device) for k, v in b.arrays().items()} for b in bufs]


def as_batch(rows: dict, n_envs: int) -> Batch:
    """One task's collected transitions as ``[E, T]`` rows: ``rollout.transitions`` steps all envs
    together, so the buffer's order is (t, e)."""
    T = len(rows["reward"]) // n_envs

    def et(x):
        return x.view(T, n_envs, *x.shape[1:]).transpose(0, 1)
    return Batch(et(rows["obs"]), et(rows["action"]), et(rows["reward"]), et(rows["next_obs"]), et(rows["terminated"]).bool())


def window_episodes(flat_envs: Sequence, policy: Callable[[np.ndarray], np.ndarray], seeds: Sequence[int], steps: int,
                    max_steps: int) -> list[list[float]]:
    """``steps`` steps of every env (reset first with ``seeds``), episodes restarting as they end, when they
    terminate or truncate or after ``max_steps`` steps, as the authors' runner (``slbo/utils/runner.py:40-87``).
    Returns, per env, the returns of the episodes that ended inside the window (the one still running at
    its end is left out)."""
    obs = rollout.reset(flat_envs, seeds)
    returns, lengths = np.zeros(len(flat_envs)), np.zeros(len(flat_envs), int)
    ended: list[list[float]] = [[] for _ in flat_envs]
    for _ in range(steps):
        actions = policy(obs)
        for k, env in enumerate(flat_envs):
            next_obs, r, term, trunc, _ = env.step(actions[k])
            returns[k] += r
            lengths[k] += 1
            if term or trunc or lengths[k] == max_steps:
                ended[k].append(float(returns[k]))
                returns[k], lengths[k] = 0.0, 0
                next_obs, _ = env.reset()
            obs[k] = next_obs
    return ended


def evaluate(pi: Params, nz: Normalizers, gens: Sequence[torch.Generator], task_envs: list[list], seeds: Sequence[int],
             horizon: int, estimator: str = "episodes") -> np.ndarray:
    """Mean undiscounted return of stochastic episodes, per task. ``episodes``: one whole episode per env.
    ``authors_window``: the code's ``testeval`` (``main.py:67-72``; ``runner.py:40-87``): every env runs
    ``horizon`` steps, an episode restarting when it terminates or reaches ``horizon`` steps, and the mean is
    over the episodes that end inside that window: an env that falls early adds each short episode, and
    its last one, still alive at the window's end, is dropped. With no early fall the two are equal."""
    K, E = len(task_envs), len(task_envs[0])
    flat_envs = [e for row in task_envs for e in row]
    device = nz.s_mean.device

    def policy(obs):
        return act(pi, nz, torch.as_tensor(obs, device=device).view(K, E, -1), gens).cpu().numpy().reshape(K * E, -1)

    env_seeds = [s * 1000 + e for s in seeds for e in range(E)]
    if estimator == "authors_window":
        ended = window_episodes(flat_envs, policy, env_seeds, horizon, horizon)
        return np.array([np.mean([r for e in range(E) for r in ended[k * E + e]]) for k in range(K)])
    if estimator != "episodes":
        raise ValueError(f"admrl: unknown return estimator {estimator!r}; allowed: {list(CHOICES['return_estimator'])}")
    return rollout.episodes(flat_envs, policy, env_seeds, horizon).reshape(K, E).mean(1)


# --- the task gradient (§4.2, App. A-B; ``slbo/algos/ADVTASK.py``) -----------------------------------


def complete_episodes(term: torch.Tensor, horizon: int) -> list[tuple[int, int, int]]:
    """(row, first step, last step + 1) of every complete episode of rows ``[E, T]`` that start at a
    reset: an episode is complete when it terminated or ran the full horizon (``begin_mark``)."""
    out, term = [], term.cpu()
    for e in range(term.shape[0]):
        start = 0
        for t in range(term.shape[1]):
            if term[e, t] or t - start + 1 == horizon:
                out.append((e, start, t + 1))
                start = t + 1
    return out


def complete_episode_discounts(term: torch.Tensor, gamma: float, horizon: int) -> torch.Tensor:
    """γ^(t - start) on the steps of complete episodes, 0 elsewhere."""
    out = torch.zeros(term.shape, dtype=torch.float64)
    for e, a, b in complete_episodes(term, horizon):
        out[e, a:b] = gamma ** torch.arange(b - a, dtype=torch.float64)
    return out.to(term.device)


def episode_matrix(term: torch.Tensor, horizon: int) -> torch.Tensor:
    """``[n_episodes, E·T]``: 1 where a flattened step belongs to that complete episode."""
    E, T = term.shape
    eps = complete_episodes(term, horizon)
    out = torch.zeros(len(eps), E * T, dtype=torch.float64)
    for i, (e, a, b) in enumerate(eps):
        out[i, e * T + a:e * T + b] = 1
    return out.to(term.device)


def hessian_vector(logp: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
                   adv: torch.Tensor, n: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ (1/N) Σ_t A_t (∇ℓ_t ∇ℓ_tᵀ + ∇²ℓ_t) v, the code's per-step estimate of ∂²η̂/∂θ² (P5):
    ∇_θ[(1/N) Σ A_t·stopgrad(u_t)·ℓ_t] + hvp((1/N) Σ A_t ℓ_t) with u = ∇ℓ·v (``ADVTASK.py:243, 265``).
    The terms may be whole episodes (ℓ_e their log-probability, A_e their return), N still the samples."""
    n = adv.numel() if n is None else n

    def objective(th):
        return (adv * logp(th)).sum() / n

    def hv(v):
        u = jvp(logp, (theta,), (v,))[1].detach()
        first = grad(lambda th: (adv * u * logp(th)).sum() / n)(theta)
        return first + jvp(grad(objective), (theta,), (v,))[1]
    return hv


def policy_gradient(logp: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, adv: torch.Tensor,
                    n: int | None = None) -> torch.Tensor:
    """p = (1/N) Σ_t ∇_θ ℓ_t A_t."""
    n = adv.numel() if n is None else n
    return grad(lambda th: (adv * logp(th)).sum() / n)(theta)


def task_jacobian(logp: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
                  adv_of_x: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """B = (1/N) Σ_t ∇_θ ℓ_t (∂A_t/∂x)ᵀ, ``[P, k]`` (``ADVTASK.py:287-289``)."""
    return jacfwd(lambda x_: policy_gradient(logp, theta, adv_of_x(x_), n))(x)


def solve_implicit(hv: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, damping: float, iters: int,
                   tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Y with (H²/P + damping·I) yᵢ = H bᵢ / P for every column of ``b`` ``[P, k]``, by CG batched
    over the columns, keeping each column's smallest-residual iterate (``ADVTASK.py:260-297, 352-392``)."""
    P = b.shape[0]

    def one(bi):
        return conjugate_gradient(lambda y: hv(hv(y)) / P + damping * y, hv(bi) / P, iters, tol, min_residual=True)
    y, rr = vmap(one, in_dims=1, out_dims=(1, 0))(b)
    return y, rr


class GradientData(NamedTuple):
    """The three rollouts of one task gradient, each ``[E, T]`` rows: θ̂ in the model, θ̂ and θ* in the env."""

    virt: Batch
    real_hat: Batch
    real_star: Batch


def task_gradient(family: str, x: torch.Tensor, pi_hat: Params, vf_hat: Params, nz_hat: Normalizers,
                  data: GradientData, cfg: Config) -> dict:
    """∂(gap)/∂x = g* - ĝ - J p with J = -Yᵀ ≈ ∂θ̂/∂xᵀ (spec §2.4). Every term is a per-sample mean
    over N samples, so α has the paper's meaning. V̂ is held fixed; advantages are not normalised."""
    fam = envs.get_family(family)
    lo, hi = box(family)
    x = x.to(device=data.virt.obs.device, dtype=torch.float64)
    theta = flat(pi_hat).double()
    nzd = Normalizers(*(t.double() for t in nz_hat))
    pid = {k: v.double() for k, v in pi_hat.items()}
    vfd = {k: v.double() for k, v in vf_hat.items()}

    def rewards(b: Batch, x_):
        psi = to_psi(x_, lo, hi)
        return fam.model_reward(b.obs.double(), b.act.double(), b.next_obs.double(), psi)

    trajectory = cfg.hessian_estimator == "trajectory"

    def advantages(b: Batch, x_):
        """Per step: GAE; per trajectory: each complete episode's discounted return."""
        if trajectory:
            disc = complete_episode_discounts(b.term, cfg.gamma, cfg.horizon)
            return episode_matrix(b.term, cfg.horizon) @ (disc * rewards(b, x_)).reshape(-1)
        v = value(vfd, nzd, b.obs.double()).detach()
        v_next = value(vfd, nzd, b.next_obs.double()).detach()
        return gae(rewards(b, x_), b.term, v, v_next, cfg.gamma, cfg.lam, cfg.task_gae == "authors").reshape(-1)

    def returns_sum(b: Batch, x_):
        disc = complete_episode_discounts(b.term, cfg.gamma, cfg.horizon)
        return (disc * rewards(b, x_)).sum() / b.rew.numel()

    def logp_of(b: Batch):
        s, a = b.obs.reshape(-1, b.obs.shape[-1]).double(), b.act.reshape(-1, b.act.shape[-1]).double()
        if trajectory:
            episodes = episode_matrix(b.term, cfg.horizon)
            return lambda th: episodes @ log_prob(unflat(th, pid), nzd, s, a)
        return lambda th: log_prob(unflat(th, pid), nzd, s, a)

    g_star = grad(lambda x_: returns_sum(data.real_star, x_))(x)
    g_hat = grad(lambda x_: returns_sum(data.real_hat, x_))(x)
    n_real, n_virt = data.real_hat.rew.numel(), data.virt.rew.numel()
    p = policy_gradient(logp_of(data.real_hat), theta, advantages(data.real_hat, x).detach(), n_real)
    logp_virt = logp_of(data.virt)
    adv_virt = advantages(data.virt, x).detach()
    B = task_jacobian(logp_virt, theta, lambda x_: advantages(data.virt, x_), x, n_virt)
    Y, residual = solve_implicit(hessian_vector(logp_virt, theta, adv_virt, n_virt), B, cfg.task_cg_damping,
                                 cfg.task_cg_iters, cfg.task_cg_tol)
    implicit = Y.T @ p  # -J p
    g = g_star - g_hat + implicit
    return {"grad": g, "g_star": g_star, "g_hat": g_hat, "implicit": implicit,
            "cg_residual": residual, "y_norm": Y.norm(dim=0)}


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


def expand(nz: Normalizers, K: int) -> Normalizers:
    return Normalizers(*(t.expand(K, *t.shape).clone() for t in nz))


def index(nz: Normalizers, k: int) -> Normalizers:
    return Normalizers(*(t[k] for t in nz))


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


# --- Fig. 6: the models' error on out-of-distribution data --------------------------------------------


def sac_actor(state: dict) -> torch.nn.Module:
    """A reference agent's policy (``collect``'s ``task<id>.policy.pt``: one task's slice of SAC's actor)."""
    weights = [state[k] for k in sorted((k for k in state if k.endswith(".weight")), key=lambda k: int(k.split(".")[2]))]
    sizes = [weights[0].shape[0], *(w.shape[1] for w in weights)]
    actor = nets.TanhGaussianActor([torch.Generator()], sizes[0], sizes[-1] // 2, sizes[1:-1], state["act_scale"],
                                   state["act_bias"])
    actor.load_state_dict({k: v if k in ("act_scale", "act_bias") else v[None] for k, v in state.items()})
    return actor


def ood_dataset(family: str, psis: torch.Tensor, actors: Sequence[torch.nn.Module], steps: int,
                seeds: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``steps`` real transitions of each task under its reference policy, stochastic, from fixed seeds
    (AdMRL spec 4.2, Fig. 6: one dataset shared by every model)."""
    out = []
    for psi, actor, seed in zip(psis, actors, seeds):
        env = envs.make(family, task_row(family, psi))
        gens = [torch.Generator().manual_seed(seed)]
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        buf = ReplayBuffer(steps, obs_dim, act_dim)

        def policy(obs, actor=actor, gens=gens):
            with torch.no_grad():
                return actor(torch.as_tensor(obs)[None], gens)[0][0].numpy()
        rollout.transitions([env], policy, steps, [seed], [buf])
        rows = buf.arrays()
        out.append(tuple(torch.as_tensor(rows[k]) for k in ("obs", "action", "next_obs")))
    return out


def model_errors(run: dict, data: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> list[dict]:
    """Per snapshot of a run: the training criterion (per-sample RMS of the diff-normalised one-step error,
    under the model's own normaliser) and the MSE of the predicted state change divided by the dataset's
    own variance of s' - s (independent of any model's normaliser), each averaged over tasks."""
    rows = []
    for snap in run["snapshots"]:
        nz = Normalizers(**snap["nz"])
        rms, mse = [], []
        with torch.no_grad():
            for s, a, s2 in data:
                rms.append(float(model_loss(snap["phi"], nz, s, a, s2)))
                var = (s2 - s).var(0).clamp_min(1e-12)
                mse.append(float(((predict(snap["phi"], nz, s, a) - s2).square() / var).mean()))
        rows.append({"task": snap["task"], "model_rms": float(np.mean(rms)), "model_mse_normalised": float(np.mean(mse))})
    return rows

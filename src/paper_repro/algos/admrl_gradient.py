"""AdMRL's task gradient (§4.2, App. A-B; AdMRL spec §2.4): ∂(gap)/∂x from three rollouts (θ̂ in the
model, θ̂ and θ* in the env): the return gradients g* and ĝ, the per-step (or per-episode) Hessian-vector
product H·v, the task Jacobian B, the damped implicit solve for ∂θ̂/∂x, and their sum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch.func import grad, jacfwd, jvp, vmap

from paper_repro import envs
from paper_repro.algos.admrl_envs import box, to_psi
from paper_repro.algos.slbo import Batch, Normalizers, Params, gae, log_prob, value
from paper_repro.meta import conjugate_gradient, flat, unflat

if TYPE_CHECKING:  # annotations only: the algorithm's file imports this one, never the other way at run time
    from paper_repro.algos.admrl import Config


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

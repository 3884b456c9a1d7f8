"""Functional inner loops (torch.func), batched over the tasks of a meta-batch.

An inner loop adapts a small set of *fast* parameters (a dict of tensors) by plain gradient steps
on a task loss, keeping the *slow* parameters fixed. Everything is a pure function of its inputs:
no module is copied or mutated, so the outer loss can differentiate through the inner steps, and
``vmap`` runs the same inner loop for every task of a meta-batch at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import grad, vmap

Params = dict[str, torch.Tensor]
TaskLoss = Callable[[Params, Params, object], torch.Tensor]
"""loss(slow, fast, data) -> scalar, for one task."""


def grad_norm(grads: Params) -> torch.Tensor:
    """The joint L2 norm of ``grads``."""
    return torch.sqrt(sum((g**2).sum() for g in grads.values()))


def clip_grads(grads: Params, max_norm: float | None, norm: torch.Tensor | None = None) -> Params:
    """Scale ``grads`` so that their joint L2 norm (``norm``, when already computed) is at most
    ``max_norm`` (None: unchanged)."""
    if max_norm is None:
        return grads
    scale = torch.clamp(max_norm / ((grad_norm(grads) if norm is None else norm) + 1e-12), max=1.0)
    return {k: g * scale for k, g in grads.items()}


def inner_loop(loss: TaskLoss, slow: Params, fast: Params, data, steps: int, lr: float | Params,
               max_norm: float | None = None, with_norms: bool = False):
    """``steps`` gradient steps on ``loss(slow, fast, data)`` w.r.t. ``fast``; differentiable.
    ``lr`` is one step size, or one per fast tensor (a dict with the keys of ``fast``: learned step
    sizes, which the outer loss then differentiates). ``with_norms``: also return each step's
    gradient norm before clipping (``[steps]``, detached), to log how often ``max_norm`` binds."""
    g = grad(loss, argnums=1)
    norms = []
    for _ in range(steps):
        grads = g(slow, fast, data)
        norm = grad_norm(grads) if (with_norms or max_norm is not None) else None
        if with_norms:
            norms.append(norm.detach())
        grads = clip_grads(grads, max_norm, norm)
        fast = {k: fast[k] - (lr[k] if isinstance(lr, dict) else lr) * grads[k] for k in fast}
    if with_norms:
        return fast, torch.stack(norms) if norms else torch.zeros(0)
    return fast


def inner_loop_tasks(loss: TaskLoss, slow: Params, fast: Params, data, steps: int, lr: float,
                     max_norm: float | None = None) -> Params:
    """``inner_loop`` for every task at once: ``data`` has a leading task dimension, ``slow`` and
    the initial ``fast`` are shared; returns adapted fast parameters with a leading task dimension."""
    def one(d):
        return inner_loop(loss, slow, fast, d, steps, lr, max_norm)
    return vmap(one)(data)


# --- flat parameter vectors and the conjugate-gradient solve (TRPO, AdMRL's task gradient) -------


def flat(tensors: Params) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors.values()])


def unflat(vector: torch.Tensor, like: Params) -> Params:
    out, i = {}, 0
    for k, v in like.items():
        out[k] = vector[i:i + v.numel()].view_as(v)
        i += v.numel()
    return out


def conjugate_gradient(Avp: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, tol: float = 1e-10,
                       min_residual: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``A x = b`` for symmetric positive definite A given only products ``A v``; returns
    ``(x, rᵀr)``. Stops updating once ``rᵀr < tol`` by masking rather than breaking, so the solve
    ``vmap``s over many right-hand sides or many tasks and equals the early-stopping loop.
    ``min_residual`` returns the iterate with the smallest residual met (AdMRL's ``conj_grad``)."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    best_x, best_rr = x, rr
    for _ in range(iters):
        active = rr >= tol
        Ap = Avp(p)
        pAp = p @ Ap
        alpha = torch.where(active, rr / torch.where(pAp == 0, 1.0, pAp), 0.0)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        beta = torch.where(active, rr_new / torch.where(rr == 0, 1.0, rr), 0.0)
        p = torch.where(active, r + beta * p, p)
        rr = torch.where(active, rr_new, rr)
        if min_residual:
            better = rr < best_rr
            best_x, best_rr = torch.where(better, x, best_x), torch.where(better, rr, best_rr)
    return (best_x, best_rr) if min_residual else (x, rr)


"""MIER: Meta-Reinforcement Learning Robust to Distributional Shift via Model Identification and
Experience Relabeling (Mendonca et al., 2020; ICLR 2020 submission, Algorithms 1-2, App. A).

Status: the model-identification part (context-conditioned probabilistic model, functional
MAML-style context adaptation batched over tasks, model meta-loss and its update) is implemented and
tested. The context-conditioned SAC, the Algorithm 1 loop and the Algorithm 2 relabelling are NOT
implemented yet (see the report of the engineer who wrote this file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.func import functional_call, vmap

from paper_repro import meta

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Config:
    context_dim: int = 5
    """Size of the latent context φ (App. A, item 5)."""
    model_hidden: tuple[int, ...] = (200, 200, 200, 200)
    """Hidden layers of the reward/dynamics model (App. A, item 4)."""
    inner_steps: int = 2
    """Gradient steps of context adaptation (App. A, item 1)."""
    inner_lr: float = 0.1
    """Context adaptation step size α (App. A, item 2). The authors' code uses 0.01 with clipping;
    we keep the paper's 0.1 and also clip, which only bites on outlier batches."""
    inner_grad_clip: float | None = 10.0
    """Max L2 norm of the context gradient per inner step (authors' code; None disables)."""
    adapt_batch: int = 256
    """Transitions per task in the adaptation batch, and in the disjoint evaluation batch (App. A, item 3)."""
    context_reg: float = 0.01
    """Weight of the L2 penalty on post-update contexts in the meta-loss (App. A, item 6)."""
    logvar_reg: float = 0.01
    """Weight of the penalty on the learned log-variance bounds (MBPO convention, Janner et al. 2019)."""
    predict_dynamics: bool = True
    """Predict next-state deltas as well as reward (App. A: only for families whose dynamics vary)."""
    model_lr: float = 1e-3
    """Adam step size of the model and prior context (authors' code; not listed in App. A)."""
    meta_batch: int = 10
    """Tasks per model meta-update (authors' code; App. A samples 5 tasks per epoch for data)."""
    # The SAC policy/critics and the Algorithm 1 loop (App. A items 7-11: 5 tasks and 1000 steps
    # each per epoch, 1000 SAC steps per epoch, lr 3e-4, 256-256 Q networks) are still to come.


# --- model --------------------------------------------------------------------------


class ContextModel(nn.Module):
    """Gaussian p(Δs, r | s, a; θ, φ): a leaky-ReLU MLP with learned soft log-variance bounds
    initialised at [-10, 0.5] (authors' code).

    The context φ is an input, appended to state and action (App. A); it is not a module parameter,
    so it can be adapted functionally while θ stays fixed.
    """

    def __init__(self, obs_dim: int, act_dim: int, cfg: Config):
        super().__init__()
        self.out_dim = (obs_dim + 1) if cfg.predict_dynamics else 1
        layers, d = [], obs_dim + act_dim + cfg.context_dim
        for h in cfg.model_hidden:
            layers += [nn.Linear(d, h), nn.LeakyReLU()]
            d = h
        layers.append(nn.Linear(d, 2 * self.out_dim))
        self.net = nn.Sequential(*layers)
        self.max_logvar = nn.Parameter(torch.full((self.out_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.out_dim,), -10.0))

    def forward(self, obs, act, ctx):
        ctx = ctx.expand(*obs.shape[:-1], ctx.shape[-1])
        out = self.net(torch.cat([obs, act, ctx], -1))
        mean, logvar = out.split(self.out_dim, -1)
        logvar = self.max_logvar - nn.functional.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + nn.functional.softplus(logvar - self.min_logvar)
        return mean, logvar


class Batch(NamedTuple):
    obs: torch.Tensor
    act: torch.Tensor
    rew: torch.Tensor  # (..., 1)
    next_obs: torch.Tensor


def targets(batch: Batch, cfg: Config) -> torch.Tensor:
    if cfg.predict_dynamics:
        return torch.cat([batch.next_obs - batch.obs, batch.rew], -1)
    return batch.rew


# --- losses -------------------------------------------------------------------------


def nll(model: ContextModel, theta: Params, ctx: torch.Tensor, batch: Batch, cfg: Config) -> torch.Tensor:
    """Mean Gaussian negative log-likelihood of the batch (constant 0.5·log 2π dropped)."""
    mean, logvar = functional_call(model, theta, (batch.obs, batch.act, ctx))
    err = (mean - targets(batch, cfg)) ** 2
    return 0.5 * (err * torch.exp(-logvar) + logvar).sum(-1).mean()


def adapt_context(model: ContextModel, theta: Params, ctx: torch.Tensor, batch: Batch, cfg: Config) -> torch.Tensor:
    """Ξ_MAML(θ, φ, D_adapt): cfg.inner_steps gradient steps on the NLL w.r.t. the context only."""
    def loss(slow, fast, data):
        return nll(model, slow, fast["ctx"], data, cfg)
    return meta.inner_loop(loss, theta, {"ctx": ctx}, batch, cfg.inner_steps, cfg.inner_lr,
                           cfg.inner_grad_clip)["ctx"]


def adapt_contexts(model: ContextModel, theta: Params, ctx: torch.Tensor, batches: Batch, cfg: Config) -> torch.Tensor:
    """``adapt_context`` for every task of a meta-batch at once (batches have a leading task dim)."""
    return vmap(lambda b: adapt_context(model, theta, ctx, b, cfg))(batches)


def model_meta_loss(model: ContextModel, params: Params, adapt: Batch, evaluate: Batch, cfg: Config
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """J_p(θ, φ, D_adapt, D_eval), averaged over a meta-batch of tasks (leading dim of the batches).

    ``params`` holds the model parameters θ and the prior context under key "context".
    """
    theta = {k: v for k, v in params.items() if k != "context"}
    ctx = params["context"]
    post = adapt_contexts(model, theta, ctx, adapt, cfg)                       # (tasks, context_dim)
    post_nll = vmap(lambda c, b: nll(model, theta, c, b, cfg))(post, evaluate)  # (tasks,)
    ctx_pen = (post**2).sum(-1).mean()
    bound_pen = (theta["max_logvar"].sum() - theta["min_logvar"].sum())
    loss = post_nll.mean() + cfg.context_reg * ctx_pen + cfg.logvar_reg * bound_pen
    with torch.no_grad():
        pre_nll = vmap(lambda b: nll(model, theta, ctx, b, cfg))(evaluate).mean()
    return loss, {"train/model_loss": loss.detach(), "train/model_nll_post": post_nll.mean().detach(),
                  "train/model_nll_pre": pre_nll, "train/context_norm": post.norm(dim=-1).mean().detach()}


def model_meta_loss_loop(model: ContextModel, params: Params, adapt: Batch, evaluate: Batch, cfg: Config
                         ) -> torch.Tensor:
    """Reference for ``model_meta_loss``: the same maths with a plain Python loop over tasks."""
    theta = {k: v for k, v in params.items() if k != "context"}
    losses = []
    for i in range(adapt.obs.shape[0]):
        a = Batch(*(x[i] for x in adapt))
        e = Batch(*(x[i] for x in evaluate))
        post = adapt_context(model, theta, params["context"], a, cfg)
        losses.append(nll(model, theta, post, e, cfg) + cfg.context_reg * (post**2).sum())
    bound_pen = (theta["max_logvar"].sum() - theta["min_logvar"].sum())
    return torch.stack(losses).mean() + cfg.logvar_reg * bound_pen


def init_params(model: ContextModel, cfg: Config) -> Params:
    """θ from the module (detached leaves) plus a zero prior context φ."""
    p = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    p["context"] = torch.zeros(cfg.context_dim, requires_grad=True)
    return p


# --- update -------------------------------------------------------------------------


def model_update(model: ContextModel, params: Params, opt: torch.optim.Optimizer, adapt: Batch, evaluate: Batch,
                 cfg: Config, step: int = 0) -> dict[str, float]:
    """One Adam step of θ and the prior context on the model meta-loss; raises on NaN/inf."""
    loss, metrics = model_meta_loss(model, params, adapt, evaluate, cfg)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"MIER model meta-loss is {loss.item()} at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {k: float(v) for k, v in metrics.items()}

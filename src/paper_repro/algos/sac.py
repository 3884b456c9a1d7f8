"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications"), K tasks at once.

K independent agents (own parameters, optimizers, buffers, seeds, envs) whose
forward and backward passes are one batched computation over the task
dimension (see :mod:`paper_repro.nets`). The loop itself is
:func:`paper_repro.collect.train`.
"""

from __future__ import annotations

import dataclasses

import torch

from paper_repro import nets
from paper_repro.buffers import Batch


@dataclasses.dataclass(frozen=True)
class Config:
    total_steps: int = 1_000_000
    """Environment steps per task (= replay capacity: nothing is overwritten)."""
    learning_starts: int = 10_000
    """Warm-up steps of uniform random actions before the first gradient step."""
    batch_size: int = 256
    """Minibatch size per task per gradient step."""
    lr: float = 3e-4
    """Adam learning rate of actor, critics and temperature."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of actor and critics."""
    target_entropy_scale: float = 1.0
    """Target entropy = -scale * |A|."""
    init_alpha: float = 1.0
    """Initial entropy temperature."""
    eval_every: int = 5_000
    """Env steps between evaluations of the deterministic policy."""
    eval_episodes: int = 5
    """Deterministic episodes per evaluation (0: no evaluation)."""
    amp_bf16: bool = False
    """bf16 autocast of the forward passes (fp32 master weights and Adam state)."""


def _adam(params, lr: float) -> torch.optim.Adam:
    """Adam with its fused kernel (one pass over all parameters, same arithmetic as the loop)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def init(cfg: Config, gens, obs_dim: int, act_dim: int, act_low, act_high, device: torch.device | str = "cpu") -> dict:
    """K agents on ``device``; task k's initial weights come from ``gens[k]`` only (drawn on the CPU)."""
    scale, bias = (act_high - act_low) / 2, (act_high + act_low) / 2
    actor = nets.TanhGaussianActor(gens, obs_dim, act_dim, cfg.hidden, scale, bias).to(device)
    critic = nets.TwinQ(gens, obs_dim, act_dim, cfg.hidden).to(device)
    target = nets.TwinQ(gens, obs_dim, act_dim, cfg.hidden).to(device)
    target.load_state_dict(critic.state_dict())
    target.requires_grad_(False)
    # One temperature per task: log_alpha has shape [K].
    log_alpha = torch.full((len(gens),), float(torch.tensor(cfg.init_alpha).log()), device=device, requires_grad=True)
    # Adam is elementwise, so one Adam over stacked [K, ...] parameters is exactly K
    # independent Adams (its step counter is shared, but all tasks step together).
    return {
        "actor": actor, "critic": critic, "critic_target": target, "log_alpha": log_alpha,
        "actor_opt": _adam(actor.parameters(), cfg.lr),
        "critic_opt": _adam(critic.parameters(), cfg.lr),
        "alpha_opt": _adam([log_alpha], cfg.lr),
        "target_entropy": -cfg.target_entropy_scale * act_dim,
    }


@torch.no_grad()
def act(agent: dict, obs: torch.Tensor, gens, deterministic: bool, cfg: Config) -> torch.Tensor:
    """Actions ``[K, A]`` for observations ``[K, O]``."""
    with torch.autocast(obs.device.type, torch.bfloat16, enabled=cfg.amp_bf16):
        a, _ = agent["actor"](obs.unsqueeze(1), gens, deterministic)
    return a.squeeze(1)


# Losses return a per-task vector [K]; the optimised loss is its SUM, so each
# task's gradient equals its single-task gradient.

def critic_loss(agent, b: Batch, gens, cfg: Config):
    with torch.no_grad():
        next_a, next_logp = agent["actor"](b.next_obs, gens)
        q_next = agent["critic_target"](b.next_obs, next_a).min(1).values
        alpha = agent["log_alpha"].exp()[:, None]
        target = b.reward + cfg.gamma * (1 - b.terminated) * (q_next - alpha * next_logp)
    q = agent["critic"](b.obs, b.action)  # [K, 2, B]
    per_task = 0.5 * (q - target[:, None]).pow(2).mean(-1).sum(1)
    return per_task, {"train/critic_loss": per_task.detach(), "train/q": q.detach().mean((1, 2))}


def actor_loss(agent, b: Batch, gens, cfg: Config):
    a, logp = agent["actor"](b.obs, gens)
    q = agent["critic"](b.obs, a).min(1).values
    alpha = agent["log_alpha"].exp().detach()[:, None]
    per_task = (alpha * logp - q).mean(-1)
    return per_task, {"train/actor_loss": per_task.detach(), "train/entropy": -logp.detach().mean(-1)}, logp.detach()


def alpha_loss(agent, logp: torch.Tensor):
    per_task = -(agent["log_alpha"][:, None] * (logp + agent["target_entropy"])).mean(-1)
    return per_task, {"train/alpha_loss": per_task.detach(), "train/alpha": agent["log_alpha"].detach().exp()}


def update(agent: dict, b: Batch, gens, step: int, cfg: Config, check) -> dict:
    """One gradient step of every task. ``check(name, per_task_loss)`` raises on NaN/inf."""
    with torch.autocast(b.obs.device.type, torch.bfloat16, enabled=cfg.amp_bf16):
        lq, m = critic_loss(agent, b, gens, cfg)
    check("critic_loss", lq)
    agent["critic_opt"].zero_grad(set_to_none=True)
    lq.sum().backward()
    agent["critic_opt"].step()

    agent["critic"].requires_grad_(False)
    with torch.autocast(b.obs.device.type, torch.bfloat16, enabled=cfg.amp_bf16):
        lpi, m_pi, logp = actor_loss(agent, b, gens, cfg)
    agent["critic"].requires_grad_(True)
    check("actor_loss", lpi)
    agent["actor_opt"].zero_grad(set_to_none=True)
    lpi.sum().backward()
    agent["actor_opt"].step()

    la, m_a = alpha_loss(agent, logp)
    check("alpha_loss", la)
    agent["alpha_opt"].zero_grad(set_to_none=True)
    la.sum().backward()
    agent["alpha_opt"].step()

    nets.polyak(agent["critic_target"], agent["critic"], cfg.tau)
    return {**m, **m_pi, **m_a}


def policy_state(agent: dict, k: int) -> dict:
    """Task k's deterministic-evaluable policy as a plain state dict."""
    return nets.task_slice(agent["actor"], k)

"""TD3 (Fujimoto et al. 2018, "Addressing Function Approximation Error in Actor-Critic Methods"), K tasks at once.

Twin critics, target policy smoothing (noise 0.2 clipped at 0.5), delayed actor
and target updates (every 2 critic updates), Gaussian exploration noise 0.1.
The loop itself is :func:`paper_repro.collect.train`.
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
    learning_starts: int = 25_000
    """Warm-up steps of uniform random actions before the first gradient step."""
    batch_size: int = 256
    """Minibatch size per task per gradient step."""
    lr: float = 3e-4
    """Adam learning rate of actor and critics."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of actor and critics."""
    exploration_noise: float = 0.1
    """Std of the Gaussian exploration noise, in units of the action half-range."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise (action half-range units)."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    policy_delay: int = 2
    """Critic updates per actor and target update."""
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
    actor = nets.DeterministicActor(gens, obs_dim, act_dim, cfg.hidden, scale, bias).to(device)
    critic = nets.TwinQ(gens, obs_dim, act_dim, cfg.hidden).to(device)
    actor_t = nets.DeterministicActor(gens, obs_dim, act_dim, cfg.hidden, scale, bias).to(device)
    critic_t = nets.TwinQ(gens, obs_dim, act_dim, cfg.hidden).to(device)
    actor_t.load_state_dict(actor.state_dict())
    critic_t.load_state_dict(critic.state_dict())
    actor_t.requires_grad_(False)
    critic_t.requires_grad_(False)
    # Adam is elementwise, so one Adam over stacked [K, ...] parameters is exactly K independent Adams.
    return {
        "actor": actor, "critic": critic, "actor_target": actor_t, "critic_target": critic_t,
        "actor_opt": _adam(actor.parameters(), cfg.lr),
        "critic_opt": _adam(critic.parameters(), cfg.lr),
    }


@torch.no_grad()
def act(agent: dict, obs: torch.Tensor, gens, deterministic: bool, cfg: Config) -> torch.Tensor:
    """Actions ``[K, A]``; exploration noise from each task's own generator."""
    actor = agent["actor"]
    with torch.autocast(obs.device.type, torch.bfloat16, enabled=cfg.amp_bf16):
        a = actor(obs.unsqueeze(1)).squeeze(1)
    if deterministic:
        return a
    a = a + nets.task_noise(gens, a.shape[1:], a.device) * cfg.exploration_noise * actor.act_scale
    return torch.maximum(torch.minimum(a, actor.act_bias + actor.act_scale), actor.act_bias - actor.act_scale)


# Losses return a per-task vector [K]; the optimised loss is its SUM.

def critic_loss(agent, b: Batch, gens, cfg: Config):
    actor_t = agent["actor_target"]
    with torch.no_grad():
        noise = nets.task_noise(gens, b.action.shape[1:], b.action.device) * cfg.policy_noise
        noise = noise.clamp(-cfg.noise_clip, cfg.noise_clip)
        hi, lo = actor_t.act_bias + actor_t.act_scale, actor_t.act_bias - actor_t.act_scale
        next_a = torch.maximum(torch.minimum(actor_t(b.next_obs) + noise * actor_t.act_scale, hi), lo)
        q_next = agent["critic_target"](b.next_obs, next_a).min(1).values
        target = b.reward + cfg.gamma * (1 - b.terminated) * q_next
    q = agent["critic"](b.obs, b.action)
    per_task = (q - target[:, None]).pow(2).mean(-1).sum(1)
    return per_task, {"train/critic_loss": per_task.detach(), "train/q": q.detach().mean((1, 2))}


def actor_loss(agent, b: Batch):
    q1 = agent["critic"].q1(b.obs, agent["actor"](b.obs))
    per_task = -q1.mean(-1)
    return per_task, {"train/actor_loss": per_task.detach()}


def update(agent: dict, b: Batch, gens, step: int, cfg: Config, check) -> dict:
    """One critic step; every ``policy_delay``-th call also an actor step and target update."""
    with torch.autocast(b.obs.device.type, torch.bfloat16, enabled=cfg.amp_bf16):
        lq, m = critic_loss(agent, b, gens, cfg)
    check("critic_loss", lq)
    agent["critic_opt"].zero_grad(set_to_none=True)
    lq.sum().backward()
    agent["critic_opt"].step()

    if step % cfg.policy_delay == 0:
        agent["critic"].requires_grad_(False)
        with torch.autocast(b.obs.device.type, torch.bfloat16, enabled=cfg.amp_bf16):
            lpi, m_pi = actor_loss(agent, b)
        agent["critic"].requires_grad_(True)
        check("actor_loss", lpi)
        agent["actor_opt"].zero_grad(set_to_none=True)
        lpi.sum().backward()
        agent["actor_opt"].step()
        nets.polyak(agent["critic_target"], agent["critic"], cfg.tau)
        nets.polyak(agent["actor_target"], agent["actor"], cfg.tau)
        m.update(m_pi)
    return m


def policy_state(agent: dict, k: int) -> dict:
    return nets.task_slice(agent["actor"], k)

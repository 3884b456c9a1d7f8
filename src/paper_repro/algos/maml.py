"""MAML-TRPO (Finn et al. 2017, Sec. 5.3 and App. A.2), the on-policy meta-RL baseline of MIER and AdMRL.

Inner loop: one vanilla policy-gradient (REINFORCE) step with a linear feature baseline, from K
trajectories of the task. Outer loop: TRPO on the post-update trajectories, differentiating through
the inner step. The inner step is functional (``torch.func``) and batched over the tasks of a
meta-batch with ``vmap``; the Fisher-vector products of TRPO differentiate through it exactly
(the paper used finite differences only to avoid third derivatives in its framework).

Environments, the baseline fit and the random generators stay on the CPU; the policy, the
trajectory tensors and the meta-update run on ``device``. Action noise is drawn on the CPU
generator and moved, so a seed draws the same numbers on every device; runs on two devices still
differ by float rounding, which the conjugate-gradient solve amplifies.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from paper_repro import io, rollout
from paper_repro.meta import conjugate_gradient, flat, unflat
from paper_repro.buffers import ReplayBuffer
from paper_repro.nets import gaussian_log_prob
from paper_repro.nets import gaussian_kl as normal_kl

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Config:
    hidden: tuple[int, ...] = (100, 100)
    """Policy hidden layers, ReLU (Finn et al. 2017, App. A.2)."""
    inner_lr: float = 0.1
    """Step size α of the inner policy-gradient update (App. A.2)."""
    inner_steps: int = 1
    """Inner policy-gradient updates (App. A.2: one). 0 is multi-task TRPO on the pooled tasks with no
    inner step (AdMRL's MT-joint): each task's trajectories are collected once and the update is TRPO's."""
    trajectories: int = 20
    """Trajectories per task and per update, K (App. A.2: 20)."""
    meta_batch: int = 40
    """Tasks per meta-update (App. A.2: 40 for the locomotion tasks)."""
    meta_iterations: int = 500
    """Meta-updates (Sec. 5.3: up to 500)."""
    max_kl: float = 0.01
    """TRPO trust region δ (rllab's default, used by the MAML code)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations for the TRPO step."""
    cg_damping: float = 1e-5
    """Damping added to the Fisher-vector products (rllab's reg_coeff)."""
    line_search_steps: int = 15
    """Backtracking steps of the TRPO line search (rllab's ``ConjugateGradientOptimizer``:
    max_backtracks=15)."""
    backtrack_ratio: float = 0.8
    """Factor by which each backtracking step shrinks the TRPO step (rllab's
    ``ConjugateGradientOptimizer``: backtrack_ratio=0.8, used by the MAML authors' code; this code
    halved the step, 0.5, before)."""
    gamma: float = 0.99
    """Discount of returns and of the baseline targets."""
    baseline_reg: float = 1e-5
    """Ridge coefficient of the linear feature baseline (Duan et al. 2016)."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the state-independent Gaussian policy."""


# --- policy -------------------------------------------------------------------------


class GaussianMLP(torch.nn.Module):
    """A ReLU MLP mean with a state-independent log standard deviation."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], init_log_std: float = 0.0):
        super().__init__()
        sizes = [obs_dim, *hidden, act_dim]
        layers: list[torch.nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        self.mean = torch.nn.Sequential(*layers)
        self.log_std = torch.nn.Parameter(torch.full((act_dim,), init_log_std))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(obs), self.log_std.expand(*obs.shape[:-1], -1)


def log_prob(policy: GaussianMLP, params: Params, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    mean, log_std = functional_call(policy, params, (obs,))
    return gaussian_log_prob((act - mean) / log_std.exp(), log_std)


def gaussian_kl(policy: GaussianMLP, old: Params, new: Params, obs: torch.Tensor) -> torch.Tensor:
    """KL(π_old || π_new) per observation."""
    return normal_kl(*functional_call(policy, old, (obs,)), *functional_call(policy, new, (obs,)))


# --- trajectories and the linear feature baseline -----------------------------------


class Trajectories(NamedTuple):
    """K trajectories of one task (or [tasks, K, ...] stacked): padded to the horizon, ``mask`` marks
    real steps; ``adv`` holds the baseline's advantages."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    mask: torch.Tensor
    adv: torch.Tensor


def discounted_returns(rew: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
    """Returns-to-go along the last axis (time), zero after an episode's end."""
    out = np.zeros_like(rew)
    running = np.zeros(rew.shape[:-1])
    for t in reversed(range(rew.shape[-1])):
        running = (rew[..., t] + gamma * running) * mask[..., t]  # padding after an episode's end resets it
        out[..., t] = running
    return out


def baseline_features(obs: np.ndarray, horizon: int) -> np.ndarray:
    """Duan et al. (2016): [s, s², t, t², t³, 1] with t = step/100 (clipped observations)."""
    obs = np.clip(obs, -10, 10)
    t = np.broadcast_to(np.arange(obs.shape[-2])[:, None] / 100.0, obs.shape[:-1] + (1,))
    return np.concatenate([obs, obs**2, t, t**2, t**3, np.ones_like(t)], axis=-1)


def fit_baseline(obs: np.ndarray, returns: np.ndarray, mask: np.ndarray, reg: float) -> np.ndarray:
    """Ridge regression of the returns on the features of one task's trajectories; the fitted values."""
    feats = baseline_features(obs, obs.shape[-2])
    f, r = feats[mask > 0], returns[mask > 0]
    lam = reg
    for _ in range(5):  # rllab raises the ridge until the solve is finite
        coef = np.linalg.solve(f.T @ f + lam * np.eye(f.shape[1]), f.T @ r)
        if np.isfinite(coef).all():
            break
        lam *= 10
    return (feats @ coef) * mask


@torch.no_grad()
def sample_trajectories(policy: GaussianMLP, params: Params, envs: Sequence[gym.Env], horizon: int,
                        generator: torch.Generator) -> tuple[np.ndarray, ...]:
    """One episode in each env (continuing its generator: no new seed), all stepped together with one
    policy forward (on the device of ``params``); actions sampled from the Gaussian, clipped to the
    env's box when stepping (the trajectories keep the sampled ones). Padded numpy arrays obs, action,
    reward, mask ``[n, T, ...]``."""
    low, high = envs[0].action_space.low, envs[0].action_space.high
    device = next(iter(params.values())).device

    def act(obs: np.ndarray) -> np.ndarray:
        mean, log_std = functional_call(policy, params, (torch.as_tensor(obs, device=device),))
        return (mean + log_std.exp() * torch.randn(mean.shape, generator=generator).to(device)).cpu().numpy()

    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    buffers = [ReplayBuffer(horizon, obs_dim, act_dim) for _ in envs]
    rollout.episodes(envs, act, horizon=horizon, into=buffers, env_action=lambda a: np.clip(a, low, high))
    return rollout.padded(buffers, horizon)


def make_batch(obs, action, reward, mask, cfg: Config, device: str | torch.device = "cpu") -> Trajectories:
    """The trajectories with the baseline's advantages (fitted on the CPU), as tensors on ``device``."""
    returns = discounted_returns(reward, mask, cfg.gamma)
    adv = returns - fit_baseline(obs, returns, mask, cfg.baseline_reg)
    valid = adv[mask > 0]
    adv = (adv - valid.mean()) / (valid.std() + 1e-8) * mask  # centred and scaled, as rllab's VPG/TRPO
    return Trajectories(*(torch.as_tensor(x, dtype=torch.float32, device=device)
                          for x in (obs, action, reward, mask, adv)))


# --- losses -------------------------------------------------------------------------


def pg_loss(policy: GaussianMLP, params: Params, batch: Trajectories) -> torch.Tensor:
    """REINFORCE with the baseline's advantages: -E[log π(a|s) A]."""
    logp = log_prob(policy, params, batch.obs, batch.action)
    return -(logp * batch.adv * batch.mask).sum() / batch.mask.sum()


def adapt(policy: GaussianMLP, params: Params, batch: Trajectories, cfg: Config) -> Params:
    """The inner loop: ``inner_steps`` policy-gradient steps from ``params`` on one task's batch."""
    for _ in range(cfg.inner_steps):
        grads = grad(lambda p: pg_loss(policy, p, batch))(params)
        params = {k: params[k] - cfg.inner_lr * grads[k] for k in params}
    return params


def adapt_tasks(policy: GaussianMLP, params: Params, batches: Trajectories, cfg: Config) -> Params:
    """``adapt`` for every task of a stacked batch at once (vmap over the task axis)."""
    return vmap(lambda b: adapt(policy, params, b, cfg))(batches)


def surrogate(policy: GaussianMLP, params: Params, pre: Trajectories, post: Trajectories, old_logp: torch.Tensor,
              cfg: Config) -> torch.Tensor:
    """TRPO's objective through the inner step: -E_tasks E[π_θ'(a|s) / π_old(a|s) · A] on post-update data."""
    adapted = adapt_tasks(policy, params, pre, cfg)
    logp = vmap(lambda p, b: log_prob(policy, p, b.obs, b.action))(adapted, post)
    ratio = torch.exp(logp - old_logp)
    return -((ratio * post.adv * post.mask).sum((1, 2)) / post.mask.sum((1, 2))).mean()


def mean_kl(policy: GaussianMLP, params: Params, old_adapted: Params, pre: Trajectories, post: Trajectories,
            cfg: Config) -> torch.Tensor:
    adapted = adapt_tasks(policy, params, pre, cfg)
    kl = vmap(lambda o, n, b: gaussian_kl(policy, o, n, b.obs))(old_adapted, adapted, post)
    return ((kl * post.mask).sum((1, 2)) / post.mask.sum((1, 2))).mean()


# --- the TRPO meta-update -----------------------------------------------------------


def update(policy: GaussianMLP, params: Params, pre: Trajectories, post: Trajectories,
           cfg: Config) -> tuple[Params, dict[str, float]]:
    """One TRPO meta-update; returns the new meta-parameters and metrics."""
    params = {k: v.detach() for k, v in params.items()}
    with torch.no_grad():
        old_adapted = adapt_tasks(policy, params, pre, cfg)
    old_adapted = {k: v.detach() for k, v in old_adapted.items()}
    old_logp = vmap(lambda p, b: log_prob(policy, p, b.obs, b.action))(old_adapted, post).detach()

    loss_before, g = torch.func.grad_and_value(lambda p: surrogate(policy, p, pre, post, old_logp, cfg))(params)[::-1]
    g = flat(g)

    def fisher_vector(v: torch.Tensor) -> torch.Tensor:
        kl_grad = lambda p: flat(grad(lambda q: mean_kl(policy, q, old_adapted, pre, post, cfg))(p)) @ v  # noqa: E731
        return flat(grad(kl_grad)(params)) + cfg.cg_damping * v

    direction, _ = conjugate_gradient(fisher_vector, -g, cfg.cg_iters)
    shs = direction @ fisher_vector(direction)
    step = torch.sqrt(2 * cfg.max_kl / (shs + 1e-12)) * direction
    theta = flat(params)
    for i in range(cfg.line_search_steps):
        candidate = unflat(theta + cfg.backtrack_ratio**i * step, params)
        with torch.no_grad():
            loss = surrogate(policy, candidate, pre, post, old_logp, cfg)
            kl = mean_kl(policy, candidate, old_adapted, pre, post, cfg)
        if torch.isfinite(loss) and loss < loss_before and kl <= cfg.max_kl:
            return candidate, {"train/surrogate_before": loss_before.item(), "train/surrogate": loss.item(),
                               "train/kl": kl.item(), "train/line_search_steps": i}
    return params, {"train/surrogate_before": loss_before.item(), "train/surrogate": loss_before.item(),
                    "train/kl": 0.0, "train/line_search_steps": cfg.line_search_steps}


# --- the meta-training loop ---------------------------------------------------------


def stack(batches: Sequence[Trajectories]) -> Trajectories:
    return Trajectories(*(torch.stack(x) for x in zip(*batches)))


def train(make_env: Callable[[dict], gym.Env], train_tasks: Sequence[dict], horizon: int, cfg: Config, *,
          seed: int, log: Callable[[dict], None] = lambda m: None, checkpoint: str | None = None,
          checkpoint_every: int = 0, on_eval: Callable[[dict, int], None] | None = None, eval_every: int = 0,
          device: str | torch.device = "cpu") -> dict:
    """Meta-train on ``train_tasks``; ``make_env(task)`` builds a ready env. Returns the state that
    :func:`adapt_and_evaluate` needs (meta-parameters as CPU tensors, config, sizes). The policy and
    the meta-updates run on ``device``; its initial weights are drawn on the CPU, then moved.

    With ``checkpoint``, the state (parameters, iteration, environment steps, every RNG) is saved
    atomically every ``checkpoint_every`` meta-iterations, and a rerun resumes from it and ends where
    an uninterrupted run ends. ``on_eval(state, env_steps)`` is called whenever the meta-training
    environment steps cross a multiple of ``eval_every``, and at the end.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    probe = make_env(train_tasks[0])
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    policy = GaussianMLP(obs_dim, act_dim, cfg.hidden, cfg.init_log_std).to(device)
    params = {k: v.detach() for k, v in policy.named_parameters()}
    start, env_steps = 0, 0
    resumed = io.load_checkpoint(checkpoint) if checkpoint else None
    if resumed is not None:
        params = {k: v.to(device) for k, v in resumed["params"].items()}
        start, env_steps = resumed["iteration"], resumed["env_steps"]
        rng.bit_generator.state = resumed["numpy_rng"]
        gen.set_state(resumed["torch_rng"])

    def state() -> dict:
        return {"params": {k: v.cpu() for k, v in params.items()}, "config": dataclasses.asdict(cfg),
                "obs_dim": obs_dim, "act_dim": act_dim}

    for iteration in range(start, cfg.meta_iterations):
        if checkpoint and checkpoint_every and iteration > start and iteration % checkpoint_every == 0:
            io.save_checkpoint(checkpoint, {"params": params, "iteration": iteration, "env_steps": env_steps,
                                            "numpy_rng": rng.bit_generator.state, "torch_rng": gen.get_state()})
        # collect: K pre-update trajectories per task, adapt, K post-update trajectories
        tasks = [train_tasks[i] for i in rng.choice(len(train_tasks), cfg.meta_batch, replace=len(train_tasks) < cfg.meta_batch)]
        task_envs = [[make_env(t) for _ in range(cfg.trajectories)] for t in tasks]
        for envs_of_task in task_envs:
            for env in envs_of_task:
                env.reset(seed=int(rng.integers(2**31)))
        pre = stack([make_batch(*sample_trajectories(policy, params, e, horizon, gen), cfg, device)
                     for e in task_envs])
        if cfg.inner_steps:
            adapted = adapt_tasks(policy, params, pre, cfg)
            post = stack([make_batch(*sample_trajectories(policy, {k: v[i] for k, v in adapted.items()}, e, horizon, gen),
                                     cfg, device) for i, e in enumerate(task_envs)])
        else:  # no inner step: the pre-update trajectories are the post-update ones
            post = pre
        # update
        params, metrics = update(policy, params, pre, post, cfg)
        if not all(math.isfinite(v) for v in metrics.values()):
            raise FloatingPointError(f"MAML-TRPO: non-finite metrics at meta-iteration {iteration}: {metrics}")
        collected = pre.mask.sum() + (post.mask.sum() if cfg.inner_steps else 0)
        previous, env_steps = env_steps, env_steps + int(collected)
        # the returns seen before and after adaptation
        log({"iteration": iteration, "env_steps": env_steps, **metrics,
             "train/pre_return": float(pre.reward.sum(-1).mean()),
             "train/adapted_return": float(post.reward.sum(-1).mean())})
        # evaluate: adaptation on the test tasks, whenever the env steps cross a multiple of eval_every
        if on_eval and eval_every and env_steps // eval_every > previous // eval_every and iteration < cfg.meta_iterations - 1:
            on_eval(state(), env_steps)
    final = state()
    if on_eval:
        on_eval(final, env_steps)
    return final


def adapt_and_evaluate(state: dict, make_env: Callable[[], gym.Env], horizon: int, *, adapt_trajectories: int,
                       eval_episodes: int, seed: int, device: str | torch.device = "cpu", stages: int = 0,
                       stage_trajectories: int = 0, step: str = "vpg") -> list[dict]:
    """Test time: adapt on ``adapt_trajectories`` trajectories of the task, then evaluate the adapted policy.

    "prior" is the return of the adaptation trajectories themselves (the meta-policy before its
    update); both stages sample actions from the Gaussian policy, as MAML is evaluated. The policy
    and its inner update run on ``device``.

    With ``stages`` (AdMRL's protocol, AdMRL spec 3: returns after n = 0, 2000, 4000, 6000 samples):
    the policy is evaluated on ``eval_episodes`` fresh episodes before adaptation (steps 0) and after
    each of ``stages`` updates, each from ``stage_trajectories`` new trajectories of the current
    policy (steps n = stages so far × stage_trajectories × horizon; ``samples`` counts the real
    steps); ``step`` is the update: "vpg", the inner policy-gradient step (MAML), or "trpo", one TRPO
    step in the trust region ``max_kl`` (AdMRL's MT-joint: a conservative fine-tune). The evaluation
    episodes are not counted in n.
    """
    cfg = Config(**state["config"])
    policy = GaussianMLP(state["obs_dim"], state["act_dim"], cfg.hidden, cfg.init_log_std).to(device)
    params = {k: v.to(device) for k, v in state["params"].items()}
    gen = torch.Generator().manual_seed(seed)
    if stages:
        return adapt_in_stages(policy, params, cfg, make_env, horizon, stages, stage_trajectories, eval_episodes,
                               step, seed, gen, device)
    envs = [make_env() for _ in range(max(adapt_trajectories, eval_episodes))]
    for i, env in enumerate(envs):
        env.reset(seed=seed * 1000 + i)
    pre = sample_trajectories(policy, params, envs[:adapt_trajectories], horizon, gen)
    adapted = adapt(policy, params, make_batch(*pre, cfg, device), cfg)
    post = sample_trajectories(policy, adapted, envs[:eval_episodes], horizon, gen)
    return [{"stage": "prior", "steps": 0, "return": float(pre[2].sum(-1).mean())},
            {"stage": "adapted", "steps": 0, "return": float(post[2].sum(-1).mean())}]


def adapt_in_stages(policy: GaussianMLP, params: Params, cfg: Config, make_env: Callable[[], gym.Env], horizon: int,
                    stages: int, stage_trajectories: int, eval_episodes: int, step: str, seed: int,
                    gen: torch.Generator, device: str | torch.device) -> list[dict]:
    """AdMRL's sample schedule for MAML and MT-joint (see ``adapt_and_evaluate``)."""
    if step not in ("vpg", "trpo"):
        raise ValueError(f"MAML adaptation step must be 'vpg' or 'trpo', got {step!r}")
    if stage_trajectories < 1:
        raise ValueError(f"stage_trajectories must be at least 1 with stages={stages}, got {stage_trajectories}")
    envs = [make_env() for _ in range(max(stage_trajectories, eval_episodes))]
    resets = iter(range(seed * 100_000, seed * 100_000 + len(envs) * (2 * stages + 1)))

    def run(p: Params, n: int) -> tuple[np.ndarray, ...]:
        for env in envs[:n]:
            env.reset(seed=next(resets))
        return sample_trajectories(policy, p, envs[:n], horizon, gen)

    rows, samples = [{"stage": "adapted", "steps": 0, "samples": 0,
                      "return": float(run(params, eval_episodes)[2].sum(-1).mean())}], 0
    for k in range(1, stages + 1):
        batch = make_batch(*run(params, stage_trajectories), cfg, device)
        samples += int(batch.mask.sum())
        if step == "vpg":
            params = {n: v.detach() for n, v in adapt(policy, params, batch, cfg).items()}
        else:  # one TRPO step on this task alone, no inner step
            one = stack([batch])
            params, _ = update(policy, params, one, one, dataclasses.replace(cfg, inner_steps=0))
        rows.append({"stage": "adapted", "steps": k * stage_trajectories * horizon, "samples": samples,
                     "return": float(run(params, eval_episodes)[2].sum(-1).mean())})
    return rows

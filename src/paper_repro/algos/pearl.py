"""PEARL (Rakelly et al. 2019, "Efficient Off-Policy Meta-Reinforcement Learning via Probabilistic
Context Variables"), the off-policy meta-RL baseline of MIER (Sec. 5: "we follow the exact setting in
Rakelly et al. (2019)").

A permutation-invariant encoder maps each context transition c_n = (s, a, r[, s']) to a Gaussian
factor Ψ(z | c_n); the posterior q(z | c) ∝ Π_n Ψ(z | c_n) is their product (Sec. 4.2, Eq. 4 and
Fig. 2). A SAC agent (Haarnoja et al. 2018, the version with a state-value network) conditions its
policy, twin Q functions and value functions on z. The encoder is trained by the critic's Bellman
loss plus β·KL(q(z | c) || N(0, I)) (Sec. 4.1, Eq. 3 and Sec. 4.3); the policy and value losses do
not reach it ("stop gradient", Fig. 3). Data collection, the separate encoder and RL replay
buffers and every default follow the authors' code (github.com/katerakelly/oyster,
``configs/default.py`` updated by ``configs/cheetah-vel.json``; "oyster" below).

The update is one computation over the tasks of a meta-batch: contexts are ``[tasks, C, dim]``,
RL batches ``[tasks, N, dim]``; the networks are shared, so every layer is one batched matmul.

Test time (Sec. 4.2, Algorithm 2): the first exploration trajectory uses z from the prior, each
later one z sampled from the posterior of all context gathered so far; the adapted policy is then
evaluated with the posterior mean of all adaptation context.

Environments, replay buffers and random generators stay on the CPU; the networks and updates run on
``device``. Noise is drawn on the CPU generator and moved, so a seed draws the same numbers on every
device, and runs on two devices differ by float rounding only.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from paper_repro import io, rollout
from paper_repro.buffers import Batch, ReplayBuffer, sample
from paper_repro.nets import polyak, tanh_gaussian_log_prob

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
"""Clamp of the policy's log standard deviation (oyster ``rlkit/torch/sac/policies.py``)."""


@dataclass(frozen=True)
class Config:
    latent_dim: int = 5
    """Size of the latent context z (oyster ``default.py``: latent_size=5)."""
    encoder_hidden: tuple[int, ...] = (200, 200, 200)
    """Hidden layers of the context encoder MLP (oyster ``launch_experiment.py``)."""
    hidden: tuple[int, ...] = (300, 300, 300)
    """Hidden layers of policy, Q and V networks (oyster ``default.py``: net_size=300, three layers;
    PEARL App. A)."""
    use_next_obs_in_context: bool = False
    """Context transitions are (s, a, r, s') instead of (s, a, r) (oyster ``default.py``: False for
    reward-varying families such as cheetah-vel and humanoid-dir; its walker/hopper-rand-params
    configs, whose dynamics vary, set True — the analogue for cheetah-negated-joints)."""
    num_iterations: int = 500
    """Meta-training iterations of data collection then gradient steps (oyster ``default.py``)."""
    num_initial_steps: int = 2000
    """Transitions collected in every training task, with z from the prior, before training
    (oyster ``cheetah-vel.json`` and ``humanoid-dir.json``)."""
    num_tasks_sample: int = 5
    """Training tasks (drawn with replacement) that collect data in each iteration (oyster ``default.py``)."""
    num_steps_prior: int = 400
    """Transitions per sampled task with z ~ prior, into both buffers (oyster ``cheetah-vel.json``)."""
    num_steps_posterior: int = 0
    """Transitions per sampled task with z ~ posterior, into both buffers (oyster ``cheetah-vel.json``)."""
    num_extra_rl_steps_posterior: int = 600
    """Transitions per sampled task with z ~ posterior, into the RL buffer only (oyster
    ``cheetah-vel.json``; humanoid-dir: also 600)."""
    num_train_steps_per_itr: int = 2000
    """Gradient steps per iteration (oyster ``default.py``; humanoid-dir.json: 4000)."""
    meta_batch: int = 16
    """Tasks per gradient step, drawn with replacement (oyster ``default.py``)."""
    batch_size: int = 256
    """RL transitions per task per gradient step (oyster ``default.py``)."""
    embedding_batch_size: int = 100
    """Context transitions per task per gradient step, and in the context that infers the posterior
    while collecting data (oyster ``cheetah-vel.json``; humanoid-dir.json: 256). Oyster's
    embedding_mini_batch_size equals it for the MLP encoder, so there is no separate field."""
    discount: float = 0.99
    """RL discount γ (oyster ``default.py``)."""
    soft_target_tau: float = 0.005
    """Polyak rate of the target value network (oyster ``default.py``)."""
    policy_lr: float = 3e-4
    """Adam step size of the policy (oyster ``default.py``)."""
    qf_lr: float = 3e-4
    """Adam step size of the twin Q networks (oyster ``default.py``)."""
    vf_lr: float = 3e-4
    """Adam step size of the value network (oyster ``default.py``)."""
    context_lr: float = 3e-4
    """Adam step size of the context encoder (oyster ``default.py``)."""
    reward_scale: float = 5.0
    """Rewards are multiplied by it in the Bellman target; with the entropy weight fixed at 1 it sets
    the trade-off between return and entropy (oyster ``default.py``; PEARL App. A)."""
    kl_lambda: float = 0.1
    """Weight β of KL(q(z | c) || N(0, I)), summed over tasks and latent dims (oyster ``default.py``)."""
    policy_mean_reg_weight: float = 1e-3
    """Weight of the mean-squared pre-tanh policy mean in the policy loss (oyster ``sac.py`` default)."""
    policy_std_reg_weight: float = 1e-3
    """Weight of the mean-squared policy log-std in the policy loss (oyster ``sac.py`` default)."""
    num_exp_traj_eval: int = 1
    """Test time: trajectories with z from the prior before posterior sampling starts. 1 = PEARL's
    Algorithm 2 (and oyster ``default.py``); oyster's cheetah-vel and humanoid-dir configs use 2."""


# --- networks -----------------------------------------------------------------------


def mlp(sizes: Sequence[int], init_w: float, gen: torch.Generator) -> nn.Sequential:
    """ReLU MLP with rlkit's initialisation (oyster ``rlkit/torch/networks.py``): hidden weights
    uniform(±1/sqrt(size[0])) of the [out, in] weight (so 1/sqrt(out), as ``fanin_init`` reads it),
    hidden biases 0.1, last layer weights and biases uniform(±init_w)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        with torch.no_grad():
            if i < len(sizes) - 2:
                bound = 1.0 / math.sqrt(b)
                lin.weight.uniform_(-bound, bound, generator=gen)
                lin.bias.fill_(0.1)
                layers += [lin, nn.ReLU()]
            else:
                lin.weight.uniform_(-init_w, init_w, generator=gen)
                lin.bias.uniform_(-init_w, init_w, generator=gen)
                layers.append(lin)
    return nn.Sequential(*layers)


class Nets(nn.Module):
    """Context encoder, tanh-Gaussian policy, twin Q, value and target value networks (oyster)."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: Config, gen: torch.Generator):
        super().__init__()
        d = cfg.latent_dim
        ctx_dim = obs_dim + act_dim + 1 + (obs_dim if cfg.use_next_obs_in_context else 0)
        self.encoder = mlp([ctx_dim, *cfg.encoder_hidden, 2 * d], 3e-3, gen)
        # mean and log-std heads on one trunk = one last layer of width 2A (both heads init ±1e-3)
        self.policy = mlp([obs_dim + d, *cfg.hidden, 2 * act_dim], 1e-3, gen)
        self.qf1 = mlp([obs_dim + act_dim + d, *cfg.hidden, 1], 3e-3, gen)
        self.qf2 = mlp([obs_dim + act_dim + d, *cfg.hidden, 1], 3e-3, gen)
        self.vf = mlp([obs_dim + d, *cfg.hidden, 1], 3e-3, gen)
        self.target_vf = copy.deepcopy(self.vf).requires_grad_(False)
        self.latent_dim = d


def product_of_gaussians(mu: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised product of the Gaussian factors along dim -2: ``[..., n, D] -> [..., D]``.

    σ² = 1 / Σ 1/σ_n², μ = σ² Σ μ_n/σ_n²; factor variances are clamped at 1e-7 (oyster ``agent.py``).
    """
    var = var.clamp(min=1e-7)
    post_var = 1.0 / (1.0 / var).sum(-2)
    return post_var * (mu / var).sum(-2), post_var


def posterior(nets: Nets, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z | c) for each task: context ``[T, C, ctx_dim]`` -> mean and variance ``[T, D]``."""
    mu, pre_var = nets.encoder(context).split(nets.latent_dim, -1)
    return product_of_gaussians(mu, nn.functional.softplus(pre_var))


def kl_to_prior(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) || N(0, I)) per task, summed over latent dims: ``[T, D] -> [T]``."""
    return 0.5 * (var + mu.pow(2) - 1.0 - var.log()).sum(-1)


def policy_forward(nets: Nets, obs: torch.Tensor, z: torch.Tensor, eps: torch.Tensor | None):
    """Tanh-Gaussian policy on ``[obs, z]``. Returns action in [-1, 1], pre-tanh mean, log-std and
    log-probability (None when ``eps`` is None: the deterministic action tanh(mean))."""
    mean, log_std = nets.policy(torch.cat([obs, z], -1)).chunk(2, -1)
    log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
    if eps is None:
        return torch.tanh(mean), mean, log_std, None
    a = torch.tanh(mean + log_std.exp() * eps)
    return a, mean, log_std, tanh_gaussian_log_prob(eps, log_std, a)  # oyster's TanhNormal epsilon, 1e-6


def expand_z(z: torch.Tensor, n: int) -> torch.Tensor:
    """``[T, D] -> [T, n, D]``: each task's z next to each of its transitions."""
    return z[:, None].expand(-1, n, -1)


# --- losses (oyster ``sac.py`` ``_take_step``), batched over tasks -------------------


def critic_losses(nets: Nets, context: torch.Tensor, b: Batch, eps_z: torch.Tensor, cfg: Config):
    """Bellman loss of both Q networks (gradient reaches the encoder through z) and β·KL.

    Q targets use the target value network: r·reward_scale + γ(1 - terminated)·V̄(s', z). Both
    losses are means over all tasks' transitions / sums over tasks, as oyster. Returns
    (qf_loss, kl_loss, z detached ``[T, D]``, posterior mean and variance).
    """
    mu, var = posterior(nets, context)
    z = mu + var.sqrt() * eps_z
    zb = expand_z(z, b.obs.shape[1])
    q1 = nets.qf1(torch.cat([b.obs, b.action, zb], -1)).squeeze(-1)
    q2 = nets.qf2(torch.cat([b.obs, b.action, zb], -1)).squeeze(-1)
    with torch.no_grad():
        target_v = nets.target_vf(torch.cat([b.next_obs, zb], -1)).squeeze(-1)
        q_target = cfg.reward_scale * b.reward + (1 - b.terminated) * cfg.discount * target_v
    qf_loss = (q1 - q_target).pow(2).mean() + (q2 - q_target).pow(2).mean()
    kl_loss = cfg.kl_lambda * kl_to_prior(mu, var).sum()
    return qf_loss, kl_loss, z.detach(), mu.detach(), var.detach()


def actor_value_losses(nets: Nets, b: Batch, z: torch.Tensor, eps_a: torch.Tensor, cfg: Config):
    """Value loss (target min Q(s, ã) - log π(ã|s), ã ~ π) and the policy loss
    E[log π(ã|s) - min Q(s, ã)] + mean/log-std regularisers. z arrives detached: neither loss trains
    the encoder. Returns (vf_loss, policy_loss, mean log π)."""
    zb = expand_z(z, b.obs.shape[1])
    a, mean, log_std, logp = policy_forward(nets, b.obs, zb, eps_a)
    q_in = torch.cat([b.obs, a, zb], -1)
    min_q = torch.min(nets.qf1(q_in), nets.qf2(q_in)).squeeze(-1)
    v_pred = nets.vf(torch.cat([b.obs, zb], -1)).squeeze(-1)
    vf_loss = (v_pred - (min_q - logp).detach()).pow(2).mean()
    policy_loss = (logp - min_q).mean() + cfg.policy_mean_reg_weight * mean.pow(2).mean() \
        + cfg.policy_std_reg_weight * log_std.pow(2).mean()
    return vf_loss, policy_loss, logp.detach().mean()


def make_optimizers(nets: Nets, cfg: Config) -> dict[str, torch.optim.Optimizer]:
    # Adam is elementwise: one Adam over qf1 and qf2 equals oyster's two.
    return {
        "policy": torch.optim.Adam(nets.policy.parameters(), lr=cfg.policy_lr),
        "qf": torch.optim.Adam([*nets.qf1.parameters(), *nets.qf2.parameters()], lr=cfg.qf_lr),
        "vf": torch.optim.Adam(nets.vf.parameters(), lr=cfg.vf_lr),
        "context": torch.optim.Adam(nets.encoder.parameters(), lr=cfg.context_lr),
    }


def update(nets: Nets, opts: dict, context: torch.Tensor, b: Batch, gen: torch.Generator, cfg: Config,
           iteration: int) -> dict[str, torch.Tensor]:
    """One gradient step on a meta-batch, in oyster's order: encoder + Q step, then value and policy
    steps (with the updated Q), then the target value network."""
    t, n = b.obs.shape[:2]
    dtype, device = b.obs.dtype, b.obs.device
    eps_z = torch.randn(t, nets.latent_dim, generator=gen, dtype=dtype).to(device)
    eps_a = torch.randn(t, n, b.action.shape[-1], generator=gen, dtype=dtype).to(device)
    qf_loss, kl_loss, z, mu, var = critic_losses(nets, context, b, eps_z, cfg)
    check(iteration, qf_loss=qf_loss, kl_loss=kl_loss)
    opts["qf"].zero_grad(set_to_none=True)
    opts["context"].zero_grad(set_to_none=True)
    (qf_loss + kl_loss).backward()
    opts["qf"].step()
    opts["context"].step()

    # oyster discards the Q networks' gradients of these losses; not computing them is the same
    nets.qf1.requires_grad_(False)
    nets.qf2.requires_grad_(False)
    vf_loss, policy_loss, logp = actor_value_losses(nets, b, z, eps_a, cfg)
    nets.qf1.requires_grad_(True)
    nets.qf2.requires_grad_(True)
    check(iteration, vf_loss=vf_loss, policy_loss=policy_loss)
    opts["vf"].zero_grad(set_to_none=True)
    opts["policy"].zero_grad(set_to_none=True)
    (vf_loss + policy_loss).backward()  # disjoint parameters: the same as two backward passes
    opts["vf"].step()
    opts["policy"].step()
    polyak(nets.target_vf, nets.vf, cfg.soft_target_tau)
    return {"train/qf_loss": qf_loss.detach(), "train/kl_loss": kl_loss.detach(), "train/vf_loss": vf_loss.detach(),
            "train/policy_loss": policy_loss.detach(), "train/log_pi": logp,
            "train/z_mean_abs": mu.abs().mean(), "train/z_var": var.mean()}


def check(iteration: int, **losses: torch.Tensor) -> None:
    """Raise FloatingPointError naming the first non-finite loss."""
    for name, value in losses.items():
        if not torch.isfinite(value):
            raise FloatingPointError(f"PEARL: {name} is {value.item()} at iteration {iteration}")


# --- data: replay buffers (paper_repro.buffers) and episodes ------------------------


def context_of(b: Batch, cfg: Config) -> torch.Tensor:
    """(s, a, r[, s']) concatenated: ``[T, C, ctx_dim]``; raw (unscaled) rewards, as oyster."""
    parts = [b.obs, b.action, b.reward[..., None]]
    if cfg.use_next_obs_in_context:
        parts.append(b.next_obs)
    return torch.cat(parts, -1)


@torch.no_grad()
def episode(nets: Nets, env: gym.Env, z: torch.Tensor, horizon: int, env_seed: int, gen: torch.Generator | None,
            into: ReplayBuffer | None = None, successes: list[float] | None = None) -> float:
    """One episode with a fixed z ``[D]``, its transitions into ``into``; returns its return.
    Stochastic actions from ``gen``, or tanh(mean) when ``gen`` is None. Actions are stored in
    [-1, 1] and rescaled to the env's box (rlkit's NormalizedBoxEnv). A time limit is not a
    termination: the Bellman target stops at ``terminated`` only. The policy runs on z's device.
    ``successes``: as :func:`rollout.episodes`."""
    low, high = env.action_space.low, env.action_space.high
    zt = z.reshape(1, -1).float()

    def act(obs: np.ndarray) -> np.ndarray:
        eps = None if gen is None else torch.randn(1, low.shape[0], generator=gen).to(zt.device)
        return policy_forward(nets, torch.as_tensor(obs, device=zt.device), zt, eps)[0].cpu().numpy()

    rescale = lambda a: low + (a + 1.0) * 0.5 * (high - low)  # noqa: E731
    return float(rollout.episodes([env], act, [env_seed], horizon, into, rescale, successes)[0])


def prior(cfg: Config, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(cfg.latent_dim, device=device), torch.ones(cfg.latent_dim, device=device)


def sample_z(mu: torch.Tensor, var: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """z ~ N(μ, diag σ²), the noise drawn on the CPU generator ``gen`` and moved to μ's device."""
    return mu + var.sqrt() * torch.randn(mu.shape, generator=gen).to(mu.device)


# --- meta-training ------------------------------------------------------------------


def new_state(nets: Nets, cfg: Config, obs_dim: int, act_dim: int) -> dict:
    """What ``adapt_and_evaluate`` needs: weights (CPU copies), the Config (a plain dict) and the dims."""
    return {"nets": {k: v.detach().to("cpu", copy=True) for k, v in nets.state_dict().items()},
            "config": dataclasses.asdict(cfg), "obs_dim": obs_dim, "act_dim": act_dim}


def load_nets(state: dict) -> Nets:
    nets = Nets(state["obs_dim"], state["act_dim"], Config(**state["config"]), torch.Generator().manual_seed(0))
    nets.load_state_dict(state["nets"])
    return nets


def train(make_env: Callable[[dict], gym.Env], train_tasks: Sequence[dict], horizon: int, cfg: Config, *,
          seed: int, log: Callable[[dict], None] = lambda m: None,
          checkpoint: str | None = None, checkpoint_every: int = 0,
          on_eval: Callable[[dict, int], None] | None = None, eval_every: int = 0,
          device: str | torch.device = "cpu") -> dict:
    """Meta-train PEARL on ``train_tasks`` (oyster ``rl_algorithm.py`` ``train``); see the module
    docstring and the shared interface of the meta-RL algorithms. Networks and updates run on
    ``device`` (initial weights drawn on the CPU, then moved); the returned state holds CPU tensors.

    Iteration 0 first collects ``num_initial_steps`` in every task with z from the prior. Every
    iteration then, for ``num_tasks_sample`` tasks: clears the task's encoder buffer, collects
    ``num_steps_prior`` transitions with z ~ prior (both buffers), ``num_steps_posterior`` with z ~
    posterior (both buffers) and ``num_extra_rl_steps_posterior`` with z ~ posterior (RL buffer
    only). Each collection starts from the prior (so the first trajectory of a posterior phase, too,
    uses z ~ prior, as oyster's ``collect_data``), samples a new z for every trajectory and, in the
    posterior phases, re-infers the posterior after every trajectory (update_post_train = 1) from
    ``embedding_batch_size`` transitions of the task's encoder buffer. Then
    ``num_train_steps_per_itr`` gradient steps, each on ``meta_batch`` tasks. Logs the mean losses
    of the iteration's steps and the mean return of the episodes it collected with z from the prior
    and from the posterior (stochastic actions).
    Every episode resets its env with a seed drawn from the run's generator, so a checkpoint at an
    iteration boundary captures the whole state.
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    envs = [make_env(task) for task in train_tasks]
    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    nets = Nets(obs_dim, act_dim, cfg, gen).to(device)
    opts = make_optimizers(nets, cfg)
    # Growing buffers: oyster's per-task capacity of 1e6 is never reached (a task receives
    # ≈ 2000 + iterations·num_tasks_sample·1000/tasks transitions).
    rl_bufs = [ReplayBuffer(0, obs_dim, act_dim, grow=True) for _ in train_tasks]
    enc_bufs = [ReplayBuffer(0, obs_dim, act_dim, grow=True) for _ in train_tasks]
    start, env_steps, next_eval = 0, 0, eval_every

    saved = io.load_checkpoint(checkpoint) if checkpoint else None
    if saved is not None:
        nets.load_state_dict(saved["nets"])
        for k, opt in opts.items():
            opt.load_state_dict(saved["opts"][k])
        for buf, arrays in zip(rl_bufs + enc_bufs, saved["buffers"]):
            buf.load_arrays(arrays)
        rng.bit_generator.state = saved["numpy_rng"]
        gen.set_state(saved["torch_rng"])
        start, env_steps, next_eval = saved["iteration"], saved["env_steps"], saved["next_eval"]

    returns: dict[str, list[float]] = {}

    def collect(i: int, num_samples: int, use_posterior: bool, add_to_enc: bool) -> int:
        mu, var = prior(cfg, device)
        n = 0
        while n < num_samples:
            z = sample_z(mu, var, gen)
            path = ReplayBuffer(horizon, obs_dim, act_dim)
            ret = episode(nets, envs[i], z, horizon, int(rng.integers(2**31)), gen, path)
            n += path.size
            returns.setdefault("posterior" if use_posterior else "prior", []).append(ret)
            rl_bufs[i].extend(path.arrays())
            if add_to_enc:
                enc_bufs[i].extend(path.arrays())
            if use_posterior:
                with torch.no_grad():
                    mu, var = (x[0] for x in posterior(nets, context_of(
                        sample([enc_bufs[i]], cfg.embedding_batch_size, rng).tensors(device), cfg)))
        return n

    last_eval = None
    for iteration in range(start, cfg.num_iterations):
        if checkpoint and checkpoint_every and iteration > start and iteration % checkpoint_every == 0:
            io.save_checkpoint(checkpoint, {
                "nets": nets.state_dict(), "opts": {k: o.state_dict() for k, o in opts.items()},
                "buffers": [b.tensors() for b in rl_bufs + enc_bufs], "numpy_rng": rng.bit_generator.state,
                "torch_rng": gen.get_state(), "iteration": iteration, "env_steps": env_steps, "next_eval": next_eval})
        # collect: the initial data, then for a few tasks with z from the prior and from the posterior
        returns.clear()
        if iteration == 0:
            for i in range(len(train_tasks)):
                env_steps += collect(i, cfg.num_initial_steps, use_posterior=False, add_to_enc=True)
        for _ in range(cfg.num_tasks_sample):
            i = int(rng.integers(len(train_tasks)))
            enc_bufs[i].clear()
            if cfg.num_steps_prior > 0:
                env_steps += collect(i, cfg.num_steps_prior, use_posterior=False, add_to_enc=True)
            if cfg.num_steps_posterior > 0:
                env_steps += collect(i, cfg.num_steps_posterior, use_posterior=True, add_to_enc=True)
            if cfg.num_extra_rl_steps_posterior > 0:
                env_steps += collect(i, cfg.num_extra_rl_steps_posterior, use_posterior=True, add_to_enc=False)

        # update: gradient steps on meta-batches of tasks (context from the encoder buffers)
        totals: dict[str, torch.Tensor] = {}
        for _ in range(cfg.num_train_steps_per_itr):
            tasks = rng.choice(len(train_tasks), cfg.meta_batch)
            context = context_of(sample([enc_bufs[t] for t in tasks], cfg.embedding_batch_size, rng).tensors(device),
                                 cfg)
            b = sample([rl_bufs[t] for t in tasks], cfg.batch_size, rng).tensors(device)
            metrics = update(nets, opts, context, b, gen, cfg, iteration)
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + v
        steps = max(cfg.num_train_steps_per_itr, 1)
        log({"iteration": iteration, "env_steps": env_steps, **{k: float(v) / steps for k, v in totals.items()},
             **{f"collect/return_{k}": float(np.mean(v)) for k, v in returns.items()}})
        # evaluate: adaptation on the test tasks, whenever the env steps cross a multiple of eval_every
        if on_eval is not None and eval_every and env_steps >= next_eval:
            on_eval(new_state(nets, cfg, obs_dim, act_dim), env_steps)
            last_eval = env_steps
            next_eval = (env_steps // eval_every + 1) * eval_every
    state = new_state(nets, cfg, obs_dim, act_dim)
    if on_eval is not None and last_eval != env_steps:
        on_eval(state, env_steps)
    return state


# --- test time ----------------------------------------------------------------------


def adapt_and_evaluate(state: dict, make_env: Callable[[], gym.Env], horizon: int, *,
                       adapt_trajectories: int, eval_episodes: int, seed: int, device: str | torch.device = "cpu",
                       stages: int = 0, stage_trajectories: int = 0) -> list[dict]:
    """PEARL's test protocol on one task (Algorithm 2; oyster ``collect_paths``).

    "prior": ``eval_episodes`` deterministic episodes with z = the prior mean. Adaptation:
    ``adapt_trajectories`` trajectories with deterministic actions (oyster's eval_deterministic),
    the first ``num_exp_traj_eval`` with z sampled from the prior, each later one with z sampled
    from the posterior of all context gathered so far. "adapted" (steps 0): ``eval_episodes``
    deterministic episodes with z = the posterior mean of all adaptation context (oyster instead
    reports its last trajectory, whose z is sampled from that posterior). The networks run on
    ``device``.

    With ``stages`` (AdMRL's protocol, AdMRL spec 3): the context grows by ``stage_trajectories``
    trajectories per stage, gathered as above, and "adapted" rows are the returns with z = the
    posterior mean of all context so far after n = 0 (the prior mean), 1, ..., ``stages`` stages
    (steps n = stages × stage_trajectories × horizon; ``samples`` counts the real steps). The
    evaluation episodes are not context.
    """
    cfg = Config(**state["config"])
    nets = load_nets(state).to(device)
    gen = torch.Generator().manual_seed(seed)
    env = make_env()
    if stages and stage_trajectories < 1:
        raise ValueError(f"stage_trajectories must be at least 1 with stages={stages}, got {stage_trajectories}")
    collected = stages * stage_trajectories if stages else adapt_trajectories
    seeds = iter(range(seed * 10_000, seed * 10_000 + (stages + 2) * eval_episodes + collected))

    def mean_return(z: torch.Tensor) -> float:
        return float(np.mean([episode(nets, env, z, horizon, next(seeds), None) for _ in range(eval_episodes)]))

    mu, var = prior(cfg, device)
    context = ReplayBuffer(0, state["obs_dim"], state["act_dim"], grow=True)

    def gather(k: int) -> None:  # the k-th adaptation trajectory, z from the prior or the posterior so far
        z = sample_z(*(infer(nets, context, cfg) if k >= cfg.num_exp_traj_eval else (mu, var)), gen)
        episode(nets, env, z, horizon, next(seeds), None, context)

    if stages:
        rows = [{"stage": "adapted", "steps": 0, "samples": 0, "return": mean_return(mu)}]
        for s in range(1, stages + 1):
            for k in range((s - 1) * stage_trajectories, s * stage_trajectories):
                gather(k)
            rows.append({"stage": "adapted", "steps": s * stage_trajectories * horizon, "samples": context.size,
                         "return": mean_return(infer(nets, context, cfg)[0])})
        return rows
    rows = [{"stage": "prior", "steps": 0, "return": mean_return(mu)}]
    for k in range(adapt_trajectories):
        gather(k)
    if context.size:
        mu, var = infer(nets, context, cfg)
    rows.append({"stage": "adapted", "steps": 0, "return": mean_return(mu)})
    return rows


@torch.no_grad()
def infer(nets: Nets, context: ReplayBuffer, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and variance ``[D]`` from all transitions in ``context`` (on the nets' device)."""
    device = next(nets.parameters()).device
    b = Batch(*(x[None] for x in context.batch().tensors(device)))
    mu, var = posterior(nets, context_of(b, cfg))
    return mu[0], var[0]


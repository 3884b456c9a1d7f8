"""Offline PEARL, MACAW's PEARL baseline (Mitchell et al., Sec. 5 and App. D.2, Tab. 2): PEARL
(Rakelly et al. 2019) trained "restricting the data sampling procedure to sample data only from a
fixed offline buffer". Not in the MACAW authors' code; rebuilt here from the paper and the project's
PEARL (:mod:`paper_repro.algos.pearl`: its networks, losses and update, unchanged).

- Each gradient step: ``meta_batch`` training tasks drawn with replacement; the context is
  ``embedding_batch_size`` transitions drawn uniformly from each task's whole offline buffer and the
  RL batch ``batch_size`` more from the same buffer (oyster samples both from its buffers the same
  way); no environment interaction. The Bellman target stops at ``terminated`` only.
- Test (fully offline): the posterior of ``max(embedding_batch_size, eval_context)`` uniform
  transitions of the test task's buffer (as many as MACAW adapts on), then deterministic episodes
  with z = the posterior mean.

Actions are stored in [-1, 1] (rlkit's NormalizedBoxEnv, as :mod:`pearl`): the offline buffers hold
the env's actions, rescaled from the env's box on loading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from paper_repro import io
from paper_repro.algos import pearl
from paper_repro.buffers import ARRAYS, ReplayBuffer, sample


@dataclass(frozen=True)
class Config(pearl.Config):
    """PEARL's networks, losses and rates (``pearl.Config``; MACAW's Tab. 2 gives the same: 3×300,
    latent 5, Adam 3e-4, KL weight 0.1, reward scale 5, RL batch 256), trained offline. pearl.Config's
    collection fields (num_initial_steps, num_tasks_sample, num_steps_*, num_iterations,
    num_train_steps_per_itr, num_exp_traj_eval) are not read."""

    meta_batch: int = 10
    """Tasks per gradient step (Tab. 2: 4-10; oyster's per-family configs: 4 for cheetah-dir and
    ant-dir, 10 for walker-params; cheetah-vel's 16 is outside Tab. 2's range, so 10)."""
    train_steps: int = 1_000_000
    """Gradient steps (not stated; oyster's 500 iterations × 2000, the range of MACAW's Fig. 3 axis)."""
    eval_context: int = 256
    """Test-time context: max(embedding_batch_size, eval_context) uniform transitions of the test
    task's buffer, as many as MACAW adapts on."""


def task_data(buffer: Mapping[str, np.ndarray], cfg: Config) -> dict[str, np.ndarray]:
    """What one task contributes to training, and a test task's context is drawn from: its lifetime
    buffer's transitions, all of them (PEARL samples its replay buffers whole)."""
    return {k: buffer[k] for k in ARRAYS}


test_data = task_data


def normalised(arrays: Mapping[str, np.ndarray], low: np.ndarray, high: np.ndarray) -> ReplayBuffer:
    """A buffer over ``arrays`` (a task's lifetime data) with actions mapped from [low, high] to [-1, 1]."""
    return ReplayBuffer.from_arrays({**arrays, "action": (2 * (arrays["action"] - low) / (high - low) - 1)
                                     .astype(np.float32)})


def train(make_env: Callable[[dict], gym.Env], train_tasks: Sequence[dict], horizon: int, cfg: Config, *,
          seed: int, data: Sequence[Mapping[str, np.ndarray]], log: Callable[[dict], None] = lambda m: None,
          checkpoint: str | None = None, checkpoint_every: int = 0,
          on_eval: Callable[[dict, int], None] | None = None, eval_every: int = 0, device: str = "cpu") -> dict:
    """PEARL's gradient steps on the training tasks' offline buffers (``data[i]``: task i's lifetime
    arrays, as :func:`buffers.load_buffer` reads them). Returns the state :func:`adapt_and_evaluate`
    needs (CPU tensors); ``on_eval(state, step)`` every ``eval_every`` steps and at the end."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    env = make_env(train_tasks[0])
    space = env.action_space
    obs_dim, act_dim = env.observation_space.shape[0], space.shape[0]
    bufs = [normalised(d, space.low, space.high) for d in data]
    nets = pearl.Nets(obs_dim, act_dim, cfg, gen).to(device)
    opts = pearl.make_optimizers(nets, cfg)
    start = 0
    saved = io.load_checkpoint(checkpoint) if checkpoint else None
    if saved is not None:
        nets.load_state_dict(saved["nets"])
        for k, opt in opts.items():
            opt.load_state_dict(saved["opts"][k])
        rng.bit_generator.state, start = saved["numpy_rng"], saved["step"]
        gen.set_state(saved["torch_rng"])
    for step in range(start, cfg.train_steps):
        if checkpoint and checkpoint_every and step > start and step % checkpoint_every == 0:
            io.save_checkpoint(checkpoint, {"nets": nets.state_dict(), "opts": {k: o.state_dict() for k, o in opts.items()},
                                            "numpy_rng": rng.bit_generator.state, "torch_rng": gen.get_state(),
                                            "step": step})
        if on_eval is not None and eval_every and step % eval_every == 0:
            on_eval(pearl.new_state(nets, cfg, obs_dim, act_dim), step)
        tasks = rng.choice(len(bufs), cfg.meta_batch)
        context = pearl.context_of(sample([bufs[t] for t in tasks], cfg.embedding_batch_size, rng).tensors(device), cfg)
        b = sample([bufs[t] for t in tasks], cfg.batch_size, rng).tensors(device)
        metrics = pearl.update(nets, opts, context, b, gen, cfg, step)
        log({"iteration": step, "train_steps": step + 1, **{k: float(v) for k, v in metrics.items()}})
    state = pearl.new_state(nets, cfg, obs_dim, act_dim)
    if on_eval is not None:
        on_eval(state, cfg.train_steps)
    return state


def adapt_and_evaluate(state: dict, make_env: Callable[[], gym.Env], horizon: int, *,
                       adapt_data: Mapping[str, np.ndarray], eval_episodes: int, seed: int,
                       device: str = "cpu") -> list[dict]:
    """Rows "prior" (z = the prior mean) and "adapted" (z = the posterior mean of the test task's
    offline context), steps 0, each the mean of ``eval_episodes`` deterministic episodes."""
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()})
    nets = pearl.Nets(state["obs_dim"], state["act_dim"], cfg, torch.Generator().manual_seed(0))
    nets.load_state_dict(state["nets"])
    nets.to(device)
    env = make_env()
    buf = normalised(adapt_data, env.action_space.low, env.action_space.high)
    rng = np.random.default_rng(seed)
    n = min(max(cfg.embedding_batch_size, cfg.eval_context), buf.size)
    rows = rng.choice(buf.size, n, replace=False)
    context = ReplayBuffer.from_arrays({k: v[rows] for k, v in buf.arrays().items()})
    seeds = [seed * 1000 + i for i in range(eval_episodes)]

    mu, _ = pearl.prior(cfg, device)
    post, _ = pearl.infer(nets, context, cfg)
    return [{"stage": "prior", "steps": 0, **evaluate(nets, env, mu, horizon, seeds)},
            {"stage": "adapted", "steps": 0, **evaluate(nets, env, post, horizon, seeds)}]


def evaluate(nets: pearl.Nets, env: gym.Env, z: torch.Tensor, horizon: int, seeds: Sequence[int]) -> dict[str, float]:
    """Deterministic episodes with a fixed z: the mean return, and the share of successes where the env
    reports success (Meta-World), as :func:`paper_repro.rollout.evaluate`."""
    successes: list[float] = []
    row = {"return": float(np.mean([pearl.episode(nets, env, z, horizon, s, None, successes=successes) for s in seeds]))}
    if not np.isnan(successes).all():
        row["success"] = float(np.nanmean(successes))
    return row



# --- Table 1: Offline PEARL + FT ------------------------------------------------------------


@dataclass(frozen=True)
class FineTune:
    """Offline PEARL + FT (Table 1; MACAW App. C.2 names it but gives no protocol, so it mirrors MACAW+FT's
    [ours], MACAW spec §3.6): PEARL's own gradient steps on this task's aggregate data between trajectories."""

    steps: int = 100
    """PEARL gradient steps (critic, KL and encoder; value; policy) per trajectory, as MACAW's 100 value steps."""
    burn_in: int = 0
    """Trajectories collected before the first update: 0, updates after every trajectory (App. C.2 alternates
    every trajectory with 100 gradient steps). 26 is MACAW+FT's schedule (the authors' ``burn_in`` 25)."""
    keep_offline: bool = True
    """The aggregate data start with the offline context the posterior was inferred from (D_0)."""


def finetune(state: dict, make_env: Callable[[], gym.Env], horizon: int, ft: FineTune, *,
             adapt_data: Mapping[str, np.ndarray], trajectories: int, eval_at: Sequence[int], eval_episodes: int,
             seed: int, device: str = "cpu") -> list[dict]:
    """Table 1 on one test task: z's posterior from D_0 (the offline context of :func:`adapt_and_evaluate`),
    then ``trajectories`` times: one trajectory of the stochastic policy with z drawn from the posterior of
    a context from the aggregate data, appended to them, then (once ``burn_in`` trajectories have been collected
    without updates; none by default) ``steps`` PEARL updates on
    this task alone, context and RL batch from the aggregate data. Rows "finetuned" with ``steps`` = the
    online environment steps so far, after each count in ``eval_at`` of trajectories: deterministic
    episodes with z = the posterior mean of a context from the aggregate data.

    A context is D_0's size of uniform draws from the aggregate data without replacement (all of it while
    it is that small): PEARL's policy learnt z from contexts of this size, and the posterior of all of it
    (up to the paper's 200k online steps) would be far sharper than any z it saw, and quadratic in cost."""
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()})
    nets = pearl.Nets(state["obs_dim"], state["act_dim"], cfg, torch.Generator().manual_seed(0))
    nets.load_state_dict(state["nets"])
    nets.to(device)
    opts = pearl.make_optimizers(nets, cfg)
    env, eval_env = make_env(), make_env()
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    test = normalised(adapt_data, env.action_space.low, env.action_space.high)
    n = min(max(cfg.embedding_batch_size, cfg.eval_context), test.size)
    rows = rng.choice(test.size, n, replace=False)
    d0 = ReplayBuffer.from_arrays({k: v[rows] for k, v in test.arrays().items()})
    # the aggregate data: D_0 then every online trajectory (or the online ones alone), appended in place
    data = ReplayBuffer(horizon, state["obs_dim"], state["act_dim"], grow=True)
    if ft.keep_offline:
        data.extend(d0.arrays())
    online_steps = 0

    def context() -> ReplayBuffer:
        if not online_steps:
            return d0  # before any online data, the posterior of D_0
        if data.size <= n:
            return data
        picked = rng.choice(data.size, n, replace=False)
        return ReplayBuffer.from_arrays({k: v[picked] for k, v in data.arrays().items()})

    out = []
    for t in range(trajectories + 1):
        # evaluate
        if t in eval_at:
            mu, _ = pearl.infer(nets, context(), cfg)
            seeds = [seed * 1000 + 100_000 * (t + 1) + i for i in range(eval_episodes)]
            out.append({"stage": "finetuned", "steps": online_steps, "trajectories": t,
                        **evaluate(nets, eval_env, mu, horizon, seeds)})
        if t == trajectories:
            break
        # collect
        z = pearl.sample_z(*pearl.infer(nets, context(), cfg), gen)
        before = data.size
        pearl.episode(nets, env, z, horizon, seed * 1000 + 500 + t, gen, data)
        online_steps += data.size - before
        if t < ft.burn_in:  # the first burn_in trajectories: no update
            continue
        # update: PEARL's step on this task alone
        for i in range(ft.steps):
            batch = pearl.context_of(sample([data], cfg.embedding_batch_size, rng).tensors(device), cfg)
            pearl.update(nets, opts, batch, sample([data], cfg.batch_size, rng).tensors(device), gen, cfg, i)
    return out

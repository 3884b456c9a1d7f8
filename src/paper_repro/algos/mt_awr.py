"""Offline MT+FT, MACAW's multi-task baseline (Mitchell et al., Sec. 5 and App. D, Tab. 3): one
advantage-weighted regression agent trained on every training task's offline data with the task's
one-hot index appended to the observation, then fine-tuned on a test task's offline data by 20 Adam
steps (the one-hot all zeros, as the authors' code rolls out a test task: ``src/macaw.py``
``--multitask``, ``config/alg/multitask_standard.json``).

The networks and losses are MACAW's (:mod:`paper_repro.algos.macaw`) without weight transform and
without advantage head: bias-transform layers, the value function regressed on Monte-Carlo returns,
the policy on AWR weights of bootstrapped advantages. The learning rates are the paper's Tab. 3 (the
code's ``multitask_standard.json`` differs: value 1e-5, fine-tuning value 1e-5); every field cites
its source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch.func import vmap

from paper_repro import buffers, io, nets, rollout
from paper_repro.algos import macaw

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Config:
    width: int = 100
    """Hidden width (Tab. 3: 3 hidden layers of 100)."""
    depth: int = 3
    """Hidden layers (Tab. 3)."""
    layer: str = "bias"
    """Layer kind: the authors' BiasLinear (their default ``bias_linear``; no weight transform)."""
    value_lr: float = 1e-4
    """Adam step size of the value function (Tab. 3; 1e-5 for walker-params, set per experiment;
    ``multitask_standard.json``: 1e-5)."""
    policy_lr: float = 1e-4
    """Adam step size of the policy (Tab. 3)."""
    finetune_value_lr: float = 1e-4
    """Adam step size of the value function's fine-tuning (Tab. 3; ``multitask_standard.json``: 1e-5)."""
    finetune_policy_lr: float = 1e-3
    """Adam step size of the policy's fine-tuning (Tab. 3)."""
    finetune_steps: int = 20
    """Fine-tuning steps on the test task, each a value then a policy Adam step (Sec. 5)."""
    meta_batch: int = 5
    """Tasks per training step (Tab. 3 "Task batch size")."""
    batch: int = 256
    """Uniform transitions per task per step, and of the fine-tuning batch (Tab. 3)."""
    action_sigma: float = 0.2
    """Fixed policy standard deviation (as MACAW)."""
    adv_clip: float = 20.0
    """Largest advantage weight (as MACAW)."""
    temperature: float = 1.0
    """AWR temperature (as MACAW)."""
    gamma: float = 0.99
    """Discount (as MACAW)."""
    bootstrap_at_termination: bool = False
    """As ``macaw.Config.bootstrap_at_termination``."""
    data_stride: int = 7
    """Every 7th transition of each lifetime buffer (``multitask_standard.json`` buffer_skip)."""
    train_steps: int = 1_000_000
    """Training steps (as MACAW)."""


def task_data(buffer: Mapping[str, np.ndarray], cfg: Config) -> dict[str, np.ndarray]:
    """What one task contributes to training, and a test task fine-tunes on: its lifetime buffer's
    :func:`buffers.offline_arrays`, every ``data_stride``-th row."""
    return buffers.offline_arrays(buffer, cfg.gamma, cfg.data_stride)


test_data = task_data


def net_config(cfg: Config) -> macaw.Config:
    """MACAW's network and loss settings for these networks: no weight transform, no head, AWR."""
    return macaw.Config(width=cfg.width, depth=cfg.depth, weight_transform=False, no_wt_layer=cfg.layer,
                        adv_coef=0.0, action_sigma=cfg.action_sigma, adv_clip=cfg.adv_clip,
                        temperature=cfg.temperature, gamma=cfg.gamma,
                        bootstrap_at_termination=cfg.bootstrap_at_termination, data_stride=cfg.data_stride)


def with_task(d: Mapping[str, torch.Tensor], onehot: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch with the task's one-hot appended to ``obs`` and ``s_T``."""
    def cat(x):
        return torch.cat([x, onehot.expand(*x.shape[:-1], -1)], -1)
    return {**d, "obs": cat(d["obs"]), "s_T": cat(d["s_T"])}


def losses(P: Params, V: Params, d: Mapping[str, torch.Tensor], cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """One task's value loss (Monte-Carlo targets) and AWR policy loss (bootstrapped advantages)."""
    nc = net_config(cfg)
    return macaw.value_loss(V, d, d["G"], nc), macaw.policy_loss(P, d, macaw.advantages(V, d, nc), None, nc, inner=False)


def train(make_env: Callable[[dict], gym.Env], train_tasks: Sequence[dict], horizon: int, cfg: Config, *,
          seed: int, data: Sequence[Mapping[str, np.ndarray]], log: Callable[[dict], None] = lambda m: None,
          checkpoint: str | None = None, checkpoint_every: int = 0,
          on_eval: Callable[[dict, int], None] | None = None, eval_every: int = 0, device: str = "cpu") -> dict:
    """Multi-task AWR on the training tasks' offline data (``data[i]``: :func:`buffers.offline_arrays`
    of task i at ``data_stride``). Each step: ``meta_batch`` tasks without replacement, each loss
    summed over them and divided by the number of training tasks (``src/macaw.py``), one Adam step of
    each network. Returns the state :func:`adapt_and_evaluate` needs, CPU tensors."""
    env = make_env(train_tasks[0])
    obs_dim, act_dim = env.observation_space.shape[0] + len(data), env.action_space.shape[0]
    params = macaw.init_params(obs_dim, act_dim, net_config(cfg), seed, device)
    P, V = params["P"], params["V"]
    opts = {"P": torch.optim.Adam(P.values(), lr=cfg.policy_lr), "V": torch.optim.Adam(V.values(), lr=cfg.value_lr)}
    rng = np.random.default_rng(seed)
    task_rngs = [np.random.default_rng([seed, i]) for i in range(len(data))]
    onehots = torch.eye(len(data), device=device)
    start = 0

    def export() -> dict:
        return {"config": dataclasses.asdict(cfg), "obs_dim": obs_dim, "act_dim": act_dim, "n_tasks": len(data),
                "params": io.to_cpu(nets.tree_map(lambda t: t.detach().clone(), {"P": P, "V": V}))}

    ck = io.load_checkpoint(checkpoint) if checkpoint else None
    if ck is not None:
        with torch.no_grad():
            for mine, saved in zip(nets.leaves({"P": P, "V": V}), nets.leaves(ck["params"])):
                mine.copy_(saved)
        for name, opt in opts.items():
            opt.load_state_dict(ck["opts"][name])
        rng.bit_generator.state, start = ck["rng"], ck["step"]
        for r, s in zip(task_rngs, ck["task_rngs"]):
            r.bit_generator.state = s
    k = min(cfg.meta_batch, len(data))
    for step in range(start, cfg.train_steps):
        if checkpoint and checkpoint_every and step > start and step % checkpoint_every == 0:
            io.save_checkpoint(checkpoint, {"params": nets.tree_map(lambda t: t.detach(), {"P": P, "V": V}),
                                            "opts": {n: o.state_dict() for n, o in opts.items()},
                                            "rng": rng.bit_generator.state, "step": step,
                                            "task_rngs": [r.bit_generator.state for r in task_rngs]})
        if on_eval and eval_every and step % eval_every == 0:
            on_eval(export(), step)
        tasks = rng.choice(len(data), k, replace=False)
        d = buffers.sample_offline([data[t] for t in tasks], cfg.batch, [task_rngs[t] for t in tasks],
                                   contiguous=False, device=device)
        lv, lp = vmap(lambda b, h: losses(P, V, with_task(b, h), cfg))(d, onehots[torch.as_tensor(tasks)])
        lv, lp = lv.sum() / len(data), lp.sum() / len(data)
        if not (torch.isfinite(lv) and torch.isfinite(lp)):
            raise FloatingPointError(f"MT+FT losses are value {lv.item()}, policy {lp.item()} at step {step}")
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        (lv + lp).backward()
        for opt in opts.values():
            opt.step()
        log({"iteration": step, "train_steps": step + 1, "train/value_loss": float(lv.detach()),
             "train/policy_loss": float(lp.detach())})
    state = export()
    if on_eval:
        on_eval(state, cfg.train_steps)
    return state


def adapt_and_evaluate(state: dict, make_env: Callable[[], gym.Env], horizon: int, *,
                       adapt_data: Mapping[str, np.ndarray], eval_episodes: int, seed: int,
                       device: str = "cpu") -> list[dict]:
    """Fine-tune a copy of both networks on one uniform batch of the test task's offline data
    (``finetune_steps`` × {value step, policy step}, the one-hot zero), then ``eval_episodes``
    deterministic episodes. Rows: "prior" (before fine-tuning) and "adapted" (after), steps 0."""
    cfg = Config(**state["config"])
    nc = net_config(cfg)
    P = {k: v.detach().clone().to(device).requires_grad_(True) for k, v in state["params"]["P"].items()}
    V = {k: v.detach().clone().to(device).requires_grad_(True) for k, v in state["params"]["V"].items()}
    prior = {k: v.detach().clone() for k, v in P.items()}
    zero = torch.zeros(state["n_tasks"], device=device)
    d = buffers.sample_offline([adapt_data], cfg.batch, [np.random.default_rng(seed)], contiguous=False, device=device)
    d = with_task({k: v[0] for k, v in d.items()}, zero)
    opt_v = torch.optim.Adam(V.values(), lr=cfg.finetune_value_lr)
    opt_p = torch.optim.Adam(P.values(), lr=cfg.finetune_policy_lr)
    for _ in range(cfg.finetune_steps):
        opt_v.zero_grad(set_to_none=True)
        macaw.value_loss(V, d, d["G"], nc).backward()
        opt_v.step()
        opt_p.zero_grad(set_to_none=True)
        macaw.policy_loss(P, d, macaw.advantages(V, d, nc), None, nc, inner=False).backward()
        opt_p.step()
    envs = [make_env() for _ in range(eval_episodes)]
    low, high = envs[0].action_space.low, envs[0].action_space.high

    def policy(params):
        @torch.no_grad()
        def act(obs: np.ndarray) -> np.ndarray:
            x = torch.as_tensor(obs, dtype=torch.float32, device=device)
            mean, _ = macaw.policy_mean(params, torch.cat([x, zero.expand(len(x), -1)], -1), nc)
            return np.clip(mean.cpu().numpy(), low, high)
        return act

    seeds = [seed * 1000 + i for i in range(eval_episodes)]
    return [{"stage": stage, "steps": 0, **rollout.evaluate(envs, policy(p), seeds, horizon)}
            for stage, p in (("prior", prior), ("adapted", {k: v.detach() for k, v in P.items()}))]

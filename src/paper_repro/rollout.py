"""Stepping environments with a policy: continuous collection and whole episodes.

A policy is any callable ``obs [n, O] -> actions [n, A]`` (numpy in, numpy out), called once per
step for all ``n`` environments together. Environments are stepped by hand and reset by hand when
an episode ends, so a buffer receives each episode's true final observation as ``next_obs`` and
never an auto-reset transition (gymnasium's vector envs would have to be told to keep one apart).

- :func:`step` / :func:`transitions`: continuous collection, episodes restarting as they end
  (per-task SAC/TD3 collection steps once between updates; MIER collects a fixed number of steps).
- :func:`episodes`: one episode per environment (evaluation, adaptation trajectories, MAML's
  batches), with every episode's return; :func:`padded` lays such episodes out as ``[n, T, ...]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from paper_repro.buffers import ReplayBuffer

Policy = Callable[[np.ndarray], np.ndarray]


def reset(envs: Sequence[Any], seeds: Sequence[int | None] | None = None) -> np.ndarray:
    """Reset every env (env k with ``seeds[k]``; None: continue its generator); first observations ``[n, O]``."""
    return np.stack([env.reset(seed=None if seeds is None or seeds[k] is None else int(seeds[k]))[0]
                     for k, env in enumerate(envs)]).astype(np.float32)


def step(envs: Sequence[Any], obs: np.ndarray, actions: np.ndarray,
         into: Sequence[ReplayBuffer] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Step env k with ``actions[k]`` and add its transition to ``into[k]``; an env whose episode
    ended is reset (unseeded: its generator continues). ``obs`` is updated in place to what each env
    observes now. Returns the rewards ``[n]`` and where an episode ended ``[n]``."""
    rewards, done = np.zeros(len(envs)), np.zeros(len(envs), bool)
    for k, env in enumerate(envs):
        next_obs, rewards[k], term, trunc, _ = env.step(actions[k])
        if into is not None:
            into[k].add(obs[k], actions[k], rewards[k], next_obs, term, trunc)
        done[k] = term or trunc
        if done[k]:
            next_obs, _ = env.reset()
        obs[k] = next_obs
    return rewards, done


def transitions(envs: Sequence[Any], policy: Policy, steps: int, seeds: Sequence[int],
                into: Sequence[ReplayBuffer]) -> None:
    """``steps`` steps of every env (reset first with ``seeds``), episodes restarting as they end;
    env k's transitions go to ``into[k]``."""
    obs = reset(envs, seeds)
    for _ in range(steps):
        step(envs, obs, policy(obs), into)


def episodes(envs: Sequence[Any], policy: Policy, seeds: Sequence[int | None] | None = None,
             horizon: int | None = None, into: ReplayBuffer | Sequence[ReplayBuffer] | None = None,
             env_action: Callable[[np.ndarray], np.ndarray] | None = None,
             successes: list[float] | None = None) -> np.ndarray:
    """One episode in each env (reset with ``seeds``), all stepped together: the policy sees every
    env's observation at every step, finished ones included, so its random draws do not depend on
    when episodes end. Stops when every episode has ended, or after ``horizon`` steps.

    Env k's transitions go to ``into[k]``; one buffer for all: in the order they happen. The env
    is stepped with ``env_action(a)`` where given (e.g. a rescaling or a clip), the buffer keeps
    the policy's ``a``. Returns each episode's return ``[n]`` (float64 sums of the rewards).
    ``successes`` gets one value per episode: 1 where some step's ``info["success"]`` was true
    (Meta-World's criterion, as MACAW counts it), 0 where it never was, nan where the env reports none.
    """
    n = len(envs)
    buffers = [into] * n if isinstance(into, ReplayBuffer) else into
    obs = reset(envs, seeds)
    returns, alive = np.zeros(n), np.ones(n, bool)
    success = np.full(n, np.nan)
    t = 0
    while alive.any() and (horizon is None or t < horizon):
        actions = policy(obs)
        for k in np.flatnonzero(alive):
            a = actions[k] if env_action is None else env_action(actions[k])
            next_obs, r, term, trunc, info = envs[k].step(a)
            if "success" in info:
                success[k] = max(0.0 if np.isnan(success[k]) else success[k], float(bool(info["success"])))
            if buffers is not None:
                buffers[k].add(obs[k], actions[k], r, next_obs, term, trunc)
            returns[k] += r
            obs[k], alive[k] = next_obs, not (term or trunc)
        t += 1
    if successes is not None:
        successes.extend(success.tolist())
    return returns


def evaluate(envs: Sequence[Any], policy: Policy, seeds: Sequence[int], horizon: int) -> dict[str, float]:
    """One episode per env (:func:`episodes`): ``{"return": mean return}``, and ``"success"``, the share
    of episodes that succeeded, where the env reports success (Meta-World)."""
    successes: list[float] = []
    row = {"return": float(episodes(envs, policy, seeds, horizon, successes=successes).mean())}
    if not np.isnan(successes).all():
        row["success"] = float(np.nanmean(successes))
    return row


def padded(buffers: Sequence[ReplayBuffer], horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One episode per buffer laid out as ``obs [n, T, O]``, ``action [n, T, A]``, ``reward [n, T]``
    and ``mask [n, T]`` (1 on the steps the episode took, 0 on the zero padding after it)."""
    n, first = len(buffers), buffers[0].data
    obs = np.zeros((n, horizon, first["obs"].shape[1]), np.float32)
    action = np.zeros((n, horizon, first["action"].shape[1]), np.float32)
    reward, mask = np.zeros((n, horizon), np.float32), np.zeros((n, horizon), np.float32)
    for k, b in enumerate(buffers):
        rows, t = b.arrays(), b.size
        obs[k, :t], action[k, :t], reward[k, :t], mask[k, :t] = rows["obs"], rows["action"], rows["reward"], 1
    return obs, action, reward, mask

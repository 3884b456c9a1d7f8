"""AdMRL's tasks in the real environments: the task box and ψ(x), each task's envs and reset states,
collection of real transitions (π_θ + OU noise) and evaluation of the policies' returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from paper_repro import envs, rollout
from paper_repro.algos.slbo import Batch, Normalizers, Params, act
from paper_repro.buffers import ReplayBuffer

RETURN_ESTIMATORS = ("episodes", "authors_window")
"""``evaluate``'s estimators of A_n (``Config.return_estimator``)."""


# --- task parameters -------------------------------------------------------------------------------


def box(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = zip(*envs.get_family(family).task_box.values())
    return torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)


def to_psi(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """ψ = lo + (x + 1)(hi - lo)/2; cheetah-highdim's box is [-1, 1]¹⁸, where this is ψ = x as its code has it."""
    return lo.to(x) + (x + 1) * (hi - lo).to(x) / 2


def task_row(family: str, psi: torch.Tensor) -> dict:
    return dict(zip(envs.get_family(family).task_box, map(float, psi)))


# --- real data --------------------------------------------------------------------------------------


def real_envs(family: str, psis: torch.Tensor, n: int) -> list[list]:
    return [[envs.make(family, task_row(family, psi)) for _ in range(n)] for psi in psis]


def reset_states(family: str, psis: torch.Tensor, n: int, seeds: Sequence[int]) -> torch.Tensor:
    """``n`` reset observations of each task's real env: the start states of virtual episodes."""
    out = []
    for psi, seed in zip(psis, seeds):
        env = envs.make(family, task_row(family, psi))
        out.append(np.stack([env.reset(seed=seed * 100_003 + i)[0] for i in range(n)]))
    return torch.as_tensor(np.stack(out), dtype=torch.float32)


def collect(pi: Params, nz: Normalizers, gens: Sequence[torch.Generator], task_envs: list[list], steps: int,
            seeds: Sequence[int], ou: tuple[float, float] | None, np_gens: Sequence[np.random.Generator]) -> list[dict]:
    """``steps`` steps of each task's envs (reset with ``seeds``, episodes restarting as they end),
    actions π_θ + OU noise (``main.py:721``, ``runner.py:40-87``). Returns each task's transitions."""
    K, E = len(task_envs), len(task_envs[0])
    flat_envs = [e for row in task_envs for e in row]
    obs_dim = flat_envs[0].observation_space.shape[0]
    act_dim = flat_envs[0].action_space.shape[0]
    bufs = [ReplayBuffer(E * steps, obs_dim, act_dim) for _ in range(K)]
    into = [bufs[k] for k in range(K) for _ in range(E)]
    noise = np.zeros((K, E, act_dim))
    device = nz.s_mean.device

    def policy(obs: np.ndarray) -> np.ndarray:
        nonlocal noise
        a = act(pi, nz, torch.as_tensor(obs, device=device).view(K, E, -1), gens).cpu().numpy()
        if ou is not None:
            theta, sigma = ou
            noise = noise - theta * noise + sigma * np.stack([g.standard_normal((E, act_dim)) for g in np_gens])
            a = a + noise
        return a.reshape(K * E, -1)

    rollout.transitions(flat_envs, policy, steps, [s * 1000 + e for s in seeds for e in range(E)], into)
    return [{k: torch.as_tensor(v, device=device) for k, v in b.arrays().items()} for b in bufs]


def as_batch(rows: dict, n_envs: int) -> Batch:
    """One task's collected transitions as ``[E, T]`` rows: ``rollout.transitions`` steps all envs
    together, so the buffer's order is (t, e)."""
    T = len(rows["reward"]) // n_envs

    def et(x):
        return x.view(T, n_envs, *x.shape[1:]).transpose(0, 1)
    return Batch(et(rows["obs"]), et(rows["action"]), et(rows["reward"]), et(rows["next_obs"]), et(rows["terminated"]).bool())


def window_episodes(flat_envs: Sequence, policy: Callable[[np.ndarray], np.ndarray], seeds: Sequence[int], steps: int,
                    max_steps: int) -> list[list[float]]:
    """``steps`` steps of every env (reset first with ``seeds``), episodes restarting as they end, when they
    terminate or truncate or after ``max_steps`` steps, as the authors' runner (``slbo/utils/runner.py:40-87``).
    Returns, per env, the returns of the episodes that ended inside the window (the one still running at
    its end is left out)."""
    obs = rollout.reset(flat_envs, seeds)
    returns, lengths = np.zeros(len(flat_envs)), np.zeros(len(flat_envs), int)
    ended: list[list[float]] = [[] for _ in flat_envs]
    for _ in range(steps):
        actions = policy(obs)
        for k, env in enumerate(flat_envs):
            next_obs, r, term, trunc, _ = env.step(actions[k])
            returns[k] += r
            lengths[k] += 1
            if term or trunc or lengths[k] == max_steps:
                ended[k].append(float(returns[k]))
                returns[k], lengths[k] = 0.0, 0
                next_obs, _ = env.reset()
            obs[k] = next_obs
    return ended


def evaluate(pi: Params, nz: Normalizers, gens: Sequence[torch.Generator], task_envs: list[list], seeds: Sequence[int],
             horizon: int, estimator: str = "episodes") -> np.ndarray:
    """Mean undiscounted return of stochastic episodes, per task. ``episodes``: one whole episode per env.
    ``authors_window``: the code's ``testeval`` (``main.py:67-72``; ``runner.py:40-87``): every env runs
    ``horizon`` steps, an episode restarting when it terminates or reaches ``horizon`` steps, and the mean is
    over the episodes that end inside that window: an env that falls early adds each short episode, and
    its last one, still alive at the window's end, is dropped. With no early fall the two are equal."""
    K, E = len(task_envs), len(task_envs[0])
    flat_envs = [e for row in task_envs for e in row]
    device = nz.s_mean.device

    def policy(obs):
        return act(pi, nz, torch.as_tensor(obs, device=device).view(K, E, -1), gens).cpu().numpy().reshape(K * E, -1)

    env_seeds = [s * 1000 + e for s in seeds for e in range(E)]
    if estimator == "authors_window":
        ended = window_episodes(flat_envs, policy, env_seeds, horizon, horizon)
        return np.array([np.mean([r for e in range(E) for r in ended[k * E + e]]) for k in range(K)])
    if estimator != "episodes":
        raise ValueError(f"admrl: unknown return estimator {estimator!r}; allowed: {list(RETURN_ESTIMATORS)}")
    return rollout.episodes(flat_envs, policy, env_seeds, horizon).reshape(K, E).mean(1)

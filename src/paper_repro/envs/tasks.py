"""The pieces every family is built from: the `Family` record, task splits, and the env base.

A task is a flat mapping of scalar parameters (vectors flattened to ``name_0, name_1, ...``), so a
split is a plain table (one row per task) that the workflow stores as CSV and every later stage reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

Task = dict[str, Any]
# A protocol draws the tasks of its splits from a seeded generator: split -> {task_id: task}.
Protocol = Callable[[np.random.Generator], dict[str, dict[int, Task]]]


@dataclass(frozen=True)
class Family:
    """One task family: how to build its env, its horizon, and its named split protocols."""

    name: str
    env_cls: Callable[[], gym.Env]
    horizon: int
    protocols: Mapping[str, Protocol]
    task_box: dict[str, tuple[float, float]] | None = None
    """The box an AdMRL-style algorithm picks training tasks from (None where tasks are fixed)."""
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    dynamics_vary: bool = False
    """True where tasks change the dynamics (joints, body parameters, Meta-World's environments);
    False where only the reward changes."""
    model_reward: Callable | None = None
    """AdMRL's model-based twin of the reward: ``r(obs, act, next_obs, psi)`` in torch, batched over
    leading dimensions, ``psi`` ordered as ``task_box``; equal to the env's reward (tested)."""
    model_done: Callable | None = None
    """``terminated(next_obs)`` in torch, equal to the env's termination (tested)."""
    task_range: Callable[[str], tuple[float, float] | frozenset | None] | None = None
    """The values a task key may take where the family defines them: key -> ``(lo, hi)`` (closed) or the
    set of allowed values, or None where any value is a task (a velocity, an angle). ``make`` refuses a
    task outside it. A task box is not a range: AdMRL tests ant-2d outside its box (Fig 5)."""


class TaskEnv:
    """Mixin for a MuJoCo env whose reward or dynamics depend on a task.

    ``set_task`` takes a task-table row (a ``task_id`` key is ignored) and applies it before the
    next reset: gymnasium's MuJoCo envs ignore ``reset(options=...)``.
    """

    task_keys: tuple[str, ...] = ()
    task: Task

    def set_task(self, task: Mapping[str, Any]) -> None:
        task = {k: v for k, v in task.items() if k != "task_id"}
        missing = [k for k in self.task_keys if k not in task]
        if missing:
            raise ValueError(f"{type(self).__name__}: task {task} lacks {missing}; expected keys {list(self.task_keys)}")
        self.task = task
        self.apply_task(task)

    def apply_task(self, task: Task) -> None:
        """Hook for families whose dynamics change; reward-only families read ``self.task``."""


class AuthorsResetNoise:
    """rllab's reset, which AdMRL's hopper and walker use: qpos + U(±0.1), qvel + 0.1·N(0, 1)
    (``rllab/rllab/envs/mujoco/hopper_env.py:40-45``; v5's own is U(±0.005) on both)."""

    def reset_model(self):
        qpos = self.init_qpos + self.np_random.uniform(-0.1, 0.1, size=self.model.nq)
        qvel = self.init_qvel + 0.1 * self.np_random.standard_normal(self.model.nv)
        self.set_state(qpos, qvel)
        return self._get_obs()


# --- split helpers -----------------------------------------------------------------


def vector(task: Mapping[str, Any], name: str, n: int) -> np.ndarray:
    """Gather ``name_0 .. name_{n-1}`` back into an array."""
    return np.array([task[f"{name}_{i}"] for i in range(n)], dtype=np.float64)


def flatten(name: str, values: Sequence[float]) -> Task:
    return {f"{name}_{i}": float(v) for i, v in enumerate(np.ravel(values))}


def by_index(tasks: Sequence[Task], **splits: Sequence[int]) -> dict[str, dict[int, Task]]:
    """Splits that are index lists into one ordered task list; task_id = the index."""
    for split, idx in splits.items():
        bad = [i for i in idx if not 0 <= i < len(tasks)]
        if bad:
            raise ValueError(f"split {split!r}: indices {bad} outside 0..{len(tasks) - 1}")
    return {split: {int(i): tasks[i] for i in idx} for split, idx in splits.items()}


def complement(n: int, idx: Sequence[int]) -> list[int]:
    return [i for i in range(n) if i not in set(idx)]


def grid(axes: Mapping[str, Sequence[float]]) -> list[Task]:
    """Every combination of the given axis values (first axis slowest)."""
    mesh = np.meshgrid(*[np.asarray(v, dtype=float) for v in axes.values()], indexing="ij")
    return [{k: float(m.flat[i]) for k, m in zip(axes, mesh)} for i in range(mesh[0].size)]


def box_boundary(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, n: int) -> np.ndarray:
    """``n`` points uniform on the surface of the box [low, high]: a face by its area, then uniform on it."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    width = high - low
    d = len(low)
    face_area = np.array([np.prod(np.delete(width, j)) for j in range(d)])
    points = rng.uniform(low, high, size=(n, d))
    axis = rng.choice(d, size=n, p=face_area / face_area.sum())
    side = rng.integers(0, 2, size=n)
    points[np.arange(n), axis] = np.where(side == 1, high[axis], low[axis])
    return points


def box_uniform(rng: np.random.Generator, box: Mapping[str, tuple[float, float]], n: int) -> list[Task]:
    """``n`` tasks uniform in the box (one column per box key)."""
    lo, hi = (np.array([b[i] for b in box.values()], dtype=float) for i in (0, 1))
    return [dict(zip(box, map(float, row))) for row in rng.uniform(lo, hi, size=(n, len(box)))]


def to_tables(splits: dict[str, dict[int, Task]]) -> dict[str, pd.DataFrame]:
    tables = {}
    for split, tasks in splits.items():
        rows = [{"task_id": tid, **task} for tid, task in tasks.items()]
        tables[split] = pd.DataFrame(rows)
    return tables

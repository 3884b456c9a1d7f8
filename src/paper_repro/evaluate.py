"""The out-of-distribution evaluation protocols: one for every online meta-RL method, one for every
offline one.

Online (MIER, PEARL, MAML): on each test task, ``adapt_trajectories`` trajectories to adapt on, then
``episodes`` evaluation episodes, as the algorithm's ``adapt_and_evaluate`` runs them (with its own
test-time ``options``, e.g. MIER's relabelling schedule). Offline (MACAW and its baselines, MACAW
Alg. 2): each test task adapts on its own offline data, then ``episodes`` deterministic episodes.
Meta-training (learning curves) and the evaluation jobs run these same protocols. Online, task i of a
job gets the seed ``seed * 10_000 + i`` at every evaluation. Offline, task i's evaluation after ``step``
meta-training steps gets a seed derived from (seed, i, step) (:func:`offline_seed`): a fresh adaptation
batch and fresh episodes at every point of a learning curve, as the MACAW authors' code draws them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from paper_repro import envs
from paper_repro.progress import Progress

log = logging.getLogger("paper_repro.evaluate")


def task_seed(seed: int, i: int) -> int:
    """The seed of the i-th test task of a job run with ``seed``."""
    return seed * 10_000 + i


def offline_seed(seed: int, i: int, step: int) -> int:
    """The seed of the i-th test task's offline evaluation after ``step`` meta-training steps of a run with
    ``seed`` (a 32-bit hash of the three): it draws that evaluation's adaptation batch and episodes, so each
    evaluation of a learning curve, and the final one, adapts on its own batch (``src/macaw.py`` samples the
    test buffer afresh at every evaluation), and the same (seed, task, step) gives the same evaluation."""
    return int(np.random.SeedSequence([seed, i, step]).generate_state(1)[0])


def on_test_tasks(algo: ModuleType, state: Mapping[str, Any], family: str, tasks: Sequence[Mapping[str, Any]],
                  horizon: int, adapt_trajectories: int, episodes: int, seed: int, *, device: str = "cpu",
                  make_env: Callable[[Mapping[str, Any]], Any] | None = None, **options: Any) -> list[dict]:
    """Adapt ``state`` (what ``algo.train`` returned) on each of ``tasks`` and evaluate it.

    Returns one row per task, stage and step count: the task's ``task_id``, then the algorithm's
    own row (stage, steps, return). ``make_env(task)`` builds a task's env
    (default: the family's, ``paper_repro.envs.make(family, task)``); the algorithm's networks run
    on ``device``.
    """
    if make_env is None:
        def make_env(task):
            return envs.make(family, task)

    rows, where = [], Progress(len(tasks), "test task")
    for i, task in enumerate(tasks):
        result = algo.adapt_and_evaluate(state, lambda: make_env(task), horizon, adapt_trajectories=adapt_trajectories,
                                         eval_episodes=episodes, seed=task_seed(seed, i), device=device, **options)
        rows += [{"task_id": task["task_id"], **row} for row in result]
        log.info("%s  task %s: %s", where.line(i + 1), task["task_id"], result)
    return rows


def on_test_tasks_offline(algo: ModuleType, state: Mapping[str, Any], family: str, tasks: Sequence[Mapping[str, Any]],
                          adapt_data: Sequence[Any], horizon: int, episodes: int, seed: int, *, step: int,
                          device: str = "cpu") -> list[dict]:
    """Adapt ``state`` (the run's after ``step`` meta-training steps) on each of ``tasks`` from that task's
    offline data (``adapt_data[i]``: what ``algo.test_data`` made of its buffer) and evaluate it, task i with
    :func:`offline_seed` of (seed, i, step): rows as :func:`on_test_tasks`."""
    if len(adapt_data) != len(tasks):
        raise ValueError(f"on_test_tasks_offline: {len(adapt_data)} offline data sets for {len(tasks)} test tasks")
    rows, where = [], Progress(len(tasks), "test task")
    for i, (task, data) in enumerate(zip(tasks, adapt_data)):
        result = algo.adapt_and_evaluate(state, lambda: envs.make(family, task), horizon, adapt_data=data,
                                         eval_episodes=episodes, seed=offline_seed(seed, i, step), device=device)
        rows += [{"task_id": task["task_id"], **row} for row in result]
        log.info("%s  task %s: %s", where.line(i + 1), task["task_id"], result)
    return rows

"""Aggregates over seeds and tasks, with bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


def bootstrap_ci(scores: ArrayLike, level: float = 95.0, resamples: int = 1000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Mean of a seeds × tasks score matrix and its percentile interval from a bootstrap over runs and tasks.

    Each resample draws seeds (whole rows: one seed's model is evaluated on every task, so its scores
    are one draw, not independent values) and, independently, test tasks (columns), and takes the
    mean of that seeds × tasks sub-matrix: the interval covers both another training seed and other
    test tasks from the same distribution. This is the stratified bootstrap of Agarwal et al. (2021)
    for the case where runs are shared across tasks (rliable resamples runs within each task because
    there each run trains on one task, which would hide a seed effect here). With one task it is the
    percentile bootstrap of the seed means (``scipy.stats.bootstrap``); with one seed it resamples
    the tasks only, and then says nothing about another seed. With few seeds the seed part is
    too narrow (2 seeds give 3 distinct seed resamples), so the figures also draw every seed when
    there are 5 or fewer. One seed and one task: the interval is the value.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"bootstrap_ci: expected a non-empty seeds × tasks matrix, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("bootstrap_ci: missing scores (every seed needs a score on every task)")
    mean = float(scores.mean())
    n_seeds, n_tasks = scores.shape
    if scores.size == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    rows = rng.integers(n_seeds, size=(resamples, n_seeds, 1))
    cols = rng.integers(n_tasks, size=(resamples, 1, n_tasks))
    means = scores[rows, cols].mean(axis=(1, 2))
    tail = (100.0 - level) / 2
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return mean, float(low), float(high)


def seeds_and_aggregate(df: pd.DataFrame, by: list[str], value: str, level: float = 95.0, resamples: int = 1000,
                        carry: Sequence[str] = ()) -> pd.DataFrame:
    """Per group of ``by``: a ``seed`` row per seed (its mean of ``value`` over tasks) and an ``aggregate`` row
    (mean over seeds and tasks, its ``bootstrap_ci``, n_seeds, n_tasks); ``carry`` columns are averaged alike."""
    seeds = df.groupby([*by, "seed"], as_index=False).agg(
        mean=(value, "mean"), n_tasks=("task_id", "nunique"), **{c: (c, "mean") for c in carry})
    rows = []
    for key, group in df.groupby(by):
        where = ", ".join(f"{k}={v}" for k, v in zip(by, key))
        if group.duplicated(["seed", "task_id"]).any():
            raise ValueError(f"{where}: more than one {value!r} for a seed and task")
        scores = group.pivot(index="seed", columns="task_id", values=value)
        if scores.isna().any(axis=None):
            raise ValueError(f"{where}: {value!r} missing for a seed and task (every seed needs every task)")
        mean, low, high = bootstrap_ci(scores, level, resamples)
        rows.append({**dict(zip(by, key)), "mean": mean, "ci_low": low, "ci_high": high,
                     "n_seeds": scores.shape[0], "n_tasks": scores.shape[1]})
    aggregates = pd.DataFrame(rows).merge(seeds.groupby(by, as_index=False)[list(carry)].mean(), on=by)
    table = pd.concat([seeds.assign(kind="seed", n_seeds=1), aggregates.assign(kind="aggregate")], ignore_index=True)
    columns = [*by, *carry, "kind", "seed", "mean", "ci_low", "ci_high", "n_seeds", "n_tasks"]
    return table[columns].astype({"seed": "Int64"})

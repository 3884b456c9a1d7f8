"""Aggregates over seeds and tasks, with bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def bootstrap_ci(values: Sequence[float], level: float = 95.0, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap_ci: no values")
    if values.size == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(resamples, values.size), replace=True).mean(axis=1)
    tail = (100.0 - level) / 2
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def mean_ci(df: pd.DataFrame, by: list[str], value: str, level: float = 95.0, resamples: int = 1000) -> pd.DataFrame:
    """Mean of ``value`` per group of ``by``, with its bootstrap interval and the number of values."""
    rows = []
    for key, group in df.groupby(by, sort=True):
        lo, hi = bootstrap_ci(group[value].to_numpy(), level, resamples)
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "mean": group[value].mean(), "ci_low": lo, "ci_high": hi, "n": len(group)})
    return pd.DataFrame(rows)

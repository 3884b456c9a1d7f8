"""What every paper's figures share: the plot style, the families' titles and order, and the mean over
seeds drawn as a line with its bootstrap interval as a band (every seed as a dot when there are few)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, chosen before pyplot loads (plots/__init__.py imports this module first)
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

FAMILY_TITLES = {
    "cheetah-vel": "Cheetah-Velocity",
    "cheetah-dir": "Cheetah-Direction",
    "walker-params": "Walker-Params",
    "ant-dir": "Ant-Direction",
    "cheetah-negated-joints": "HalfCheetah (negated joints)",
    "humanoid-dir": "Humanoid-Direction",
}


def apply_style(style: Mapping[str, Any]) -> None:
    """Seaborn context and palette from the config's ``plot`` section."""
    sns.set_theme(context=style["context"], style="whitegrid", palette=style["palette"])


MAX_SEEDS_DRAWN = 5  # with this many seeds or fewer, the figures draw every seed beside the mean


def _families_in_order(df: pd.DataFrame) -> pd.DataFrame:
    """``family`` as a categorical in order of first appearance (the config's), which sorting keeps."""
    return df.assign(family=pd.Categorical(df["family"], categories=pd.unique(df["family"])))


def _few_seeds(table: pd.DataFrame) -> bool:
    """Whether the aggregate rows rest on few enough seeds to draw every seed."""
    return table.loc[table["kind"] == "aggregate", "n_seeds"].max() <= MAX_SEEDS_DRAWN


def _errorbar_line(ax, table: pd.DataFrame, x: str, label: str, color) -> None:
    """The aggregate rows as a line with its interval as a band, and every seed as a dot when there are few."""
    data = table[table["kind"] == "aggregate"].sort_values(x)
    ax.plot(data[x], data["mean"], marker="o", markersize=3, label=label, color=color)
    ax.fill_between(data[x], data["ci_low"], data["ci_high"], alpha=0.2, color=color, linewidth=0)
    if _few_seeds(table):
        seeds = table[table["kind"] == "seed"]
        ax.scatter(seeds[x], seeds["mean"], s=10, color=color, alpha=0.6, linewidths=0)

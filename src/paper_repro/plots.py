"""Figures from tidy tables: DataFrame in, matplotlib Figure out. No file I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
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


def offline_policy_curves(curves: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MACAW Figs 8-9: one panel per family, one line per task, evaluation return vs environment steps.

    ``curves`` columns: family, algo, seed, task_id, env_steps, eval_return.
    """
    apply_style(style)
    families = list(dict.fromkeys(curves["family"]))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.4), squeeze=False)
    for ax, family in zip(axes[0], families):
        data = curves[curves["family"] == family]
        algo = "/".join(sorted(data["algo"].str.upper().unique()))
        sns.lineplot(data=data, x="env_steps", y="eval_return", hue="task_id", units="seed", estimator=None,
                     palette="viridis", legend=False, linewidth=1.0, ax=ax)
        ax.set_title(f"{FAMILY_TITLES.get(family, family)} ({algo})")
        ax.set_xlabel("Environment steps")
        ax.set_ylabel("Average return" if ax is axes[0][0] else "")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    fig.suptitle(title)
    fig.tight_layout()
    return fig

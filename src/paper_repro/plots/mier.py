"""MIER (papers/001) Figs 2-4: each figure's table (``<what>_table``) and its drawing (``<what>``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from paper_repro import stats
from paper_repro.plots.common import FAMILY_TITLES, _errorbar_line, _families_in_order, _few_seeds, apply_style

METHOD_LABELS = {
    "mier": "MIER (Ours)",
    "mier-no-relabel": "MIER without relabelling",
    "pearl": "PEARL",
    "maml": "MAML",
}
METHOD_ORDER = ["pearl", "maml", "mier", "mier-no-relabel"]  # the paper's legend order


def _methods(table: pd.DataFrame) -> list[str]:
    present = set(table["method"])
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def _colors(style: Mapping[str, Any]) -> dict[str, Any]:
    """One colour per method, the same in every MIER figure."""
    return dict(zip(METHOD_ORDER, sns.color_palette(style["palette"], len(METHOD_ORDER))))


def final_adapted(evals: pd.DataFrame) -> pd.DataFrame:
    """Each (method, seed, task)'s return after all of its adaptation: the "adapted" row with the
    most policy-training steps (MIER's last relabelling step; 0 for the others)."""
    adapted = evals[evals["stage"] == "adapted"]
    last = adapted.groupby(["method", "seed", "task_id"])["steps"].transform("max")
    return adapted[adapted["steps"] == last]


def sample_efficiency_table(curves: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """The numbers MIER Fig. 2 draws: per family, method and k-th evaluation during meta-training, each
    seed's return after adaptation averaged over the test tasks, and the mean over seeds with its
    bootstrap interval. Seeds of on-policy methods reach their k-th evaluation at slightly different step
    counts (episodes end early): ``env_steps`` is each seed's, and their mean on the aggregate row.

    ``curves`` columns: family, method, seed, env_steps, task_id, stage, steps, return.
    """
    adapted = final_adapted(_families_in_order(curves))
    adapted = adapted.assign(evaluation=adapted.groupby(["family", "method", "seed"])["env_steps"].rank(method="dense")
                             .astype(int))
    return stats.seeds_and_aggregate(adapted, ["family", "method", "evaluation"], "return", level, resamples,
                                     carry=["env_steps"])


def sample_efficiency(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MIER Fig. 2: return after adaptation on the (in-distribution) test tasks vs environment steps of
    meta-training, one panel per family, from ``sample_efficiency_table``."""
    apply_style(style)
    families = list(dict.fromkeys(table["family"]))
    colors = _colors(style)
    fig, axes = plt.subplots(1, len(families), figsize=(5.0 * len(families), 3.6), squeeze=False)
    for ax, family in zip(axes[0], families):
        data = table[table["family"] == family]
        for method in _methods(data):
            _errorbar_line(ax, data[data["method"] == method], "env_steps", METHOD_LABELS.get(method, method),
                           colors.get(method))
        ax.set_title(f"{FAMILY_TITLES.get(family, family)} Standard Benchmark")
        ax.set_xlabel("Number of Environment Steps")
        ax.set_ylabel("Average Return" if ax is axes[0][0] else "")
        ax.set_xscale("log")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reward_extrapolation_table(evals: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """The numbers MIER Fig. 3 draws: per method and target velocity, each seed's return after adapting
    on 2 trajectories (averaged over that velocity's tasks) and the mean over seeds with its interval.

    ``evals`` columns: method, seed, task_id, velocity, stage, steps, return.
    """
    return stats.seeds_and_aggregate(final_adapted(evals), ["method", "velocity"], "return", level, resamples)


def reward_extrapolation(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MIER Fig. 3: return after adapting on 2 trajectories, per target velocity (trained on [0, 1]), from
    ``reward_extrapolation_table``."""
    apply_style(style)
    colors = _colors(style)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for method in _methods(table):
        _errorbar_line(ax, table[table["method"] == method], "velocity", METHOD_LABELS.get(method, method),
                       colors.get(method))
    ax.axvspan(0, 1, color="grey", alpha=0.12, label="meta-training velocities")
    ax.set_title("HalfCheetah Velocity Extrapolation")
    ax.set_xlabel("Target velocity")
    ax.set_ylabel("Average Return")
    ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def dynamics_extrapolation_table(evals: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """The numbers MIER Fig. 4 draws, each seed's mean over the test tasks and the mean over seeds with its
    interval. ``panel`` "methods": per method, the return after all of its adaptation (MIER without
    relabelling left out); "relabelling": MIER with and without cross-task relabelling, per number of
    relabelling steps.

    ``evals`` columns: method, seed, task_id, stage, steps, return.
    """
    final = final_adapted(evals[evals["method"] != "mier-no-relabel"])
    relabel = evals[(evals["stage"] == "adapted") & evals["method"].isin(["mier", "mier-no-relabel"])]
    table = pd.concat([
        stats.seeds_and_aggregate(final, ["method"], "return", level, resamples).assign(panel="methods"),
        stats.seeds_and_aggregate(relabel, ["method", "steps"], "return", level, resamples).assign(panel="relabelling"),
    ], ignore_index=True)
    columns = ["panel", "method", "steps", "kind", "seed", "mean", "ci_low", "ci_high", "n_seeds", "n_tasks"]
    return table[columns].astype({"steps": "Int64"})


def dynamics_extrapolation(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MIER Fig. 4, from ``dynamics_extrapolation_table``. Left: return after adaptation on the
    out-of-distribution negated-joint tasks, per method. Right: return vs number of relabelling steps,
    MIER with cross-task relabelling and without (the test task's own data only)."""
    apply_style(style)
    colors = _colors(style)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    final = table[table["panel"] == "methods"]
    methods = _methods(final)
    summary = final[final["kind"] == "aggregate"].set_index("method").loc[methods]
    left.bar(range(len(methods)), summary["mean"], color=[colors.get(m) for m in methods],
             yerr=[summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]], capsize=4)
    if _few_seeds(final):
        seeds = final[final["kind"] == "seed"]
        left.scatter(seeds["method"].map(methods.index), seeds["mean"], s=10, color="0.2", zorder=3, linewidths=0)
    left.set_xticks(range(len(methods)), [METHOD_LABELS.get(m, m) for m in methods])
    left.set_title("HalfCheetah Dynamics Extrapolation Performance")
    left.set_ylabel("Average Return")
    relabel = table[table["panel"] == "relabelling"]
    for method in _methods(relabel):
        label = {"mier": "MIER with cross-task relabelling", "mier-no-relabel": "MIER without relabelling"}[method]
        _errorbar_line(right, relabel[relabel["method"] == method], "steps", label, colors.get(method))
    right.set_title("Relabelling Analysis")
    right.set_xlabel("Number of relabelling steps")
    right.set_ylabel("Average Return")
    right.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig

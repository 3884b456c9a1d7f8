"""Figures from tidy tables: DataFrame in, matplotlib Figure out. No file I/O here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from paper_repro import stats  # noqa: E402

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

    ``curves`` columns: family, algo, seed, task_id, env_steps, eval_return and optionally split
    ("train", "test" or "train+test": test-only tasks are drawn dashed, the others solid) and
    random_return (each task's uniform random policy: a dotted line at its mean over tasks).
    """
    apply_style(style)
    if "split" not in curves:
        curves = curves.assign(split="train")
    curves = curves.assign(line=curves["split"].map(lambda s: "test" if s == "test" else "train"))
    families = list(dict.fromkeys(curves["family"]))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.8), squeeze=False)
    keys = {}  # one legend for the figure, below the panels, so that no key hides a curve
    for ax, family in zip(axes[0], families):
        data = curves[curves["family"] == family]
        algo = "/".join(sorted(data["algo"].str.upper().unique()))
        sns.lineplot(data=data, x="env_steps", y="eval_return", hue="task_id", units="seed", estimator=None,
                     style="line", style_order=["train", "test"], dashes={"train": "", "test": (4, 2)},
                     palette="viridis", legend=False, linewidth=1.0, ax=ax)
        if (data["line"] == "test").any():
            keys["training tasks"] = plt.Line2D([], [], color="0.3", lw=1.0)
            keys["test tasks"] = plt.Line2D([], [], color="0.3", lw=1.0, ls=(0, (4, 2)))
        random = data.drop_duplicates(["seed", "task_id"])["random_return"].mean() if "random_return" in data else None
        if random is not None and np.isfinite(random):
            keys["random policy (task mean)"] = ax.axhline(random, color="0.5", lw=1.0, ls=":")
        ax.set_title(f"{FAMILY_TITLES.get(family, family)} ({algo})")
        ax.set_xlabel("Environment steps")
        ax.set_ylabel("Average return" if ax is axes[0][0] else "")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    fig.suptitle(title)
    if keys:
        fig.legend(keys.values(), keys.keys(), loc="lower center", ncol=len(keys), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.07 if keys else 0, 1, 1))
    return fig


# --- MIER (papers/001) ----------------------------------------------------------------

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


def _ci(table: pd.DataFrame, by: list[str], style: Mapping[str, Any]) -> pd.DataFrame:
    return stats.mean_ci(table, by, "return", style["ci"], style.get("bootstrap", 1000))


def _errorbar_line(ax, data: pd.DataFrame, x: str, label: str, color) -> None:
    ax.plot(data[x], data["mean"], marker="o", markersize=3, label=label, color=color)
    ax.fill_between(data[x], data["ci_low"], data["ci_high"], alpha=0.2, color=color, linewidth=0)


def sample_efficiency(curves: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MIER Fig. 2: return after adaptation on the (in-distribution) test tasks vs environment steps
    of meta-training, one panel per family. Mean over seeds and test tasks, bootstrap CI over seeds.

    ``curves`` columns: family, method, seed, env_steps, task_id, stage, steps, return.
    """
    apply_style(style)
    adapted = final_adapted(curves)
    adapted = adapted.groupby(["family", "method", "seed", "env_steps"], as_index=False)["return"].mean()
    # Seeds of on-policy methods reach their evaluations at slightly different step counts (episodes
    # end early): align the k-th evaluation of every seed.
    adapted["evaluation"] = adapted.groupby(["family", "method", "seed"])["env_steps"].rank(method="first")
    families = list(dict.fromkeys(curves["family"]))
    colors = _colors(style)
    fig, axes = plt.subplots(1, len(families), figsize=(5.0 * len(families), 3.6), squeeze=False)
    for ax, family in zip(axes[0], families):
        data = adapted[adapted["family"] == family]
        for method in _methods(data):
            d = data[data["method"] == method]
            summary = _ci(d, ["evaluation"], style).merge(
                d.groupby("evaluation", as_index=False)["env_steps"].mean(), on="evaluation")
            _errorbar_line(ax, summary, "env_steps", METHOD_LABELS.get(method, method), colors.get(method))
        ax.set_title(f"{FAMILY_TITLES.get(family, family)} Standard Benchmark")
        ax.set_xlabel("Number of Environment Steps")
        ax.set_ylabel("Average Return" if ax is axes[0][0] else "")
        ax.set_xscale("log")
        ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def reward_extrapolation(evals: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MIER Fig. 3: return after adapting on 2 trajectories, per target velocity (trained on [0, 1]).

    ``evals`` columns: method, seed, task_id, velocity, stage, steps, return.
    """
    apply_style(style)
    final = final_adapted(evals)
    colors = _colors(style)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for method in _methods(final):
        summary = _ci(final[final["method"] == method], ["velocity"], style)
        _errorbar_line(ax, summary, "velocity", METHOD_LABELS.get(method, method), colors.get(method))
    ax.axvspan(0, 1, color="grey", alpha=0.12, label="meta-training velocities")
    ax.set_title("HalfCheetah Velocity Extrapolation")
    ax.set_xlabel("Target velocity")
    ax.set_ylabel("Average Return")
    ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def dynamics_extrapolation(evals: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MIER Fig. 4. Left: return after adaptation on the out-of-distribution negated-joint tasks,
    per method. Right: return vs number of relabelling steps, MIER with cross-task relabelling and
    without (the test task's own data only). Mean over seeds and test tasks, bootstrap CI.

    ``evals`` columns: method, seed, task_id, stage, steps, return.
    """
    apply_style(style)
    colors = _colors(style)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    final = final_adapted(evals[evals["method"] != "mier-no-relabel"])
    methods = _methods(final)
    summary = _ci(final, ["method"], style).set_index("method").loc[methods]
    left.bar(range(len(methods)), summary["mean"], color=[colors.get(m) for m in methods],
             yerr=[summary["mean"] - summary["ci_low"], summary["ci_high"] - summary["mean"]], capsize=4)
    left.set_xticks(range(len(methods)), [METHOD_LABELS.get(m, m) for m in methods])
    left.set_title("HalfCheetah Dynamics Extrapolation Performance")
    left.set_ylabel("Average Return")
    relabel = evals[(evals["stage"] == "adapted") & evals["method"].isin(["mier", "mier-no-relabel"])]
    for method in _methods(relabel):
        summary = _ci(relabel[relabel["method"] == method], ["steps"], style)
        label = {"mier": "MIER with cross-task relabelling", "mier-no-relabel": "MIER without relabelling"}[method]
        _errorbar_line(right, summary, "steps", label, colors.get(method))
    right.set_title("Relabelling Analysis")
    right.set_xlabel("Number of relabelling steps")
    right.set_ylabel("Average Return")
    right.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig

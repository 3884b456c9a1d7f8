"""MACAW (papers/004) Figs 3-9 and Table 1: each figure's table (``<what>_table``) and its drawing
(``<what>``). Figs 3-7 and Table 1 are the offline meta-learners'; Figs 8-9 the learning curves of the
per-task agents whose replay buffers are the offline data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from paper_repro import stats
from paper_repro.plots.common import (FAMILY_TITLES, MAX_SEEDS_DRAWN, _errorbar_line, _families_in_order,
                                      apply_style)

MACAW_LABELS = {
    "macaw": "MACAW (Ours)",
    "offline-pearl": "Offline PEARL",
    "offline-mt-ft": "Offline MT+FT",
    "meta-bc": "Meta-BC",
    "macaw-no-adv-head": "MACAW without advantage head (MAML+AWR)",
    "macaw-no-wt": "No WT, equal width",
    "macaw-wide": "No WT, equal parameters",
}
MACAW_ORDER = list(MACAW_LABELS)
QUALITY_LABELS = {"first": "Bad data (first episodes)", "middle": "Medium data (middle episodes)",
                  "last": "Good data (last episodes)"}


def _macaw_colors(style: Mapping[str, Any]) -> dict[str, Any]:
    """One colour per method, the same in every MACAW figure."""
    return dict(zip(MACAW_ORDER, sns.color_palette(style["palette"], len(MACAW_ORDER))))


def _macaw_methods(table: pd.DataFrame) -> list[str]:
    present = set(table["method"])
    return [m for m in MACAW_ORDER if m in present] + sorted(present - set(MACAW_ORDER))


def offline_meta_rl_table(curves: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """The numbers MACAW Fig. 3 draws: per family, method and number of training steps, each seed's
    return after offline adaptation averaged over the test tasks, and the mean over seeds with its
    bootstrap interval (the paper draws ±1 standard error over seeds).

    ``curves`` columns: family, method, seed, train_steps, task_id, stage, return.
    """
    adapted = _families_in_order(curves[curves["stage"] == "adapted"])
    return stats.seeds_and_aggregate(adapted, ["family", "method", "train_steps"], "return", level, resamples)


def weight_transform_ablation_table(curves: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """The numbers MACAW Fig. 5 draws (MACAW with and without weight transform, per family): as
    :func:`offline_meta_rl_table`."""
    return offline_meta_rl_table(curves, level, resamples)


def _learning_curve(ax, table: pd.DataFrame, label: str, color, ls="-") -> None:
    """Return vs training steps on a symmetric log axis (step 0 included), the interval as a band."""
    _errorbar_line(ax, table, "train_steps", label, color)
    if ls != "-":
        ax.lines[-1].set_linestyle(ls)
    steps = sorted(s for s in table["train_steps"].unique() if s > 0)
    ax.set_xscale("symlog", linthresh=steps[0] if steps else 1)


def _curves_by_family(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    apply_style(style)
    families = list(dict.fromkeys(table["family"]))
    colors = _macaw_colors(style)
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.6), squeeze=False)
    for ax, family in zip(axes[0], families):
        data = table[table["family"] == family]
        for method in _macaw_methods(data):
            _learning_curve(ax, data[data["method"] == method], MACAW_LABELS.get(method, method), colors.get(method))
        ax.set_title(FAMILY_TITLES.get(family, family))
        ax.set_xlabel("Training steps")
        ax.set_ylabel("Average return" if ax is axes[0][0] else "")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small", frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def offline_meta_rl(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MACAW Fig. 3: test return after offline adaptation vs training steps (log axis), one panel per
    family, MACAW against Offline PEARL, Offline MT+FT and Meta-BC, from ``offline_meta_rl_table``."""
    return _curves_by_family(table, style, title)


def weight_transform_ablation(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MACAW Fig. 5: MACAW with weight-transform layers against the same networks without them (equal
    width), one panel per family, from ``weight_transform_ablation_table``."""
    return _curves_by_family(table, style, title)


OMNIGLOT_LABELS = {"macaw": "Weight transform", "macaw-no-wt": "No WT, equal width", "macaw-wide": "No WT, equal parameters"}
OMNIGLOT_SPLITS = {"train": "Meta-training tasks (running mean)", "val": "Meta-validation tasks"}


def weight_transform_omniglot_table(curves: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """The numbers MACAW Fig. 6 draws: per ``split``, MLP (``method``) and meta-step, the query accuracy after
    the inner step, each seed's and the mean over seeds with its bootstrap interval.

    - ``train``: the meta-batches' accuracy, averaged over the meta-steps since the previous evaluation (a
      running mean; one value per seed, so the interval is over seeds);
    - ``val``: each fixed validation task's accuracy (the interval is over seeds and tasks).

    ``curves`` columns: split, method, seed, train_steps (updates done), task_id, accuracy, parameters, ways.
    """
    val = curves[curves["split"] == "val"]
    steps = np.sort(val["train_steps"].unique())
    train = curves[curves["split"] == "train"]
    bins = np.searchsorted(steps, train["train_steps"].to_numpy())  # the first evaluation at or after the row
    train = train[bins < len(steps)].assign(train_steps=steps[bins[bins < len(steps)]])
    train = train.groupby(["split", "method", "seed", "parameters", "ways", "train_steps"],
                          as_index=False)["accuracy"].mean()
    both = pd.concat([train.assign(task_id=0), val], ignore_index=True)
    return stats.seeds_and_aggregate(both, ["split", "method", "train_steps"], "accuracy", level, resamples,
                                     carry=("parameters", "ways"))


def weight_transform_omniglot(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MACAW Fig. 6: 20-way 1-shot Omniglot learning curves of the three MLPs, on the meta-training tasks
    and on held-out validation tasks, from ``weight_transform_omniglot_table``."""
    apply_style(style)
    colors = _macaw_colors(style)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, (split, split_title) in zip(axes, OMNIGLOT_SPLITS.items()):
        data = table[table["split"] == split]
        for method in _macaw_methods(data):
            rows = data[data["method"] == method]
            n = int(rows["parameters"].iloc[0])
            _errorbar_line(ax, rows, "train_steps", f"{OMNIGLOT_LABELS.get(method, method)} ({n:,} parameters)",
                           colors.get(method))
        ax.axhline(1 / table["ways"].iloc[0], color="grey", ls=":", lw=1, label="chance")
        ax.set_title(split_title)
        ax.set_xlabel("Meta-training steps")
    axes[0].set_ylabel("Query accuracy after adaptation")
    axes[0].legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


FINETUNE_LABELS = {"offline-pearl-ft": "Offline PEARL+FT", "macaw-ft": "MACAW+FT"}
# MACAW Table 1 as published: extra env steps -> method -> (return, its SE, improvement, its SE)
PAPER_TABLE1 = {0: {"offline-pearl-ft": (-553.4, 21.2, None, None), "macaw-ft": (-323.1, 42.9, None, None)},
                20_000: {"offline-pearl-ft": (-565.0, 4.7, -11.5, 3.5), "macaw-ft": (-279.1, 16.8, 44.0, 14.5)},
                200_000: {"offline-pearl-ft": (-533.6, 19.8, 19.8, 3.7), "macaw-ft": (-272.0, 15.2, 51.1, 12.7)}}


def _mean_se(x: pd.Series) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def online_finetuning_table(rows: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """MACAW Table 1's numbers, the paper's statistic per meta-training run: per fine-tuned method, seed and
    evaluation point (trajectories, and the mean online environment steps), the return and its improvement
    over the point before any online data, each the mean and standard error over the run's test tasks (the
    paper's, one run: the authors' ``online_ft.json`` has ``instances: 1``). Further seeds are further rows
    (``kind`` "seed", as the other tables' per-seed rows), never pooled: a standard error over seeds and tasks
    could not be set beside the paper's. ``level`` and ``resamples`` are unused (the paper's statistic is the
    standard error)."""
    base = rows[rows["trajectories"] == 0].set_index(["method", "seed", "task_id"])["return"]
    rows = rows.assign(improvement=rows["return"] - base.reindex(
        pd.MultiIndex.from_frame(rows[["method", "seed", "task_id"]])).to_numpy())
    out = []
    for (method, seed, t), g in rows.groupby(["method", "seed", "trajectories"]):
        r, r_se = _mean_se(g["return"])
        imp, imp_se = _mean_se(g["improvement"])
        out.append({"method": method, "seed": seed, "trajectories": t, "steps": float(g["steps"].mean()), "kind": "seed",
                    "return": r, "return_se": r_se, "improvement": imp, "improvement_se": imp_se,
                    "n_tasks": int(g["task_id"].nunique())})
    return pd.DataFrame(out).astype({"seed": "Int64"})


def online_finetuning(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MACAW Table 1 drawn as two tables: ours (from ``online_finetuning_table``: one block of rows per
    meta-training seed) and the paper's (one run)."""
    apply_style(style)

    def cell(mean, se):
        return "—" if mean is None or pd.isna(mean) else f"{mean:.1f} ({se:.1f})" if not pd.isna(se) else f"{mean:.1f}"

    methods = [m for m in FINETUNE_LABELS if m in set(table["method"])]
    columns = [f"{FINETUNE_LABELS[m]} {what}" for m in methods for what in ("return", "improvement")]
    ours = []
    for (seed, t), g in table.groupby(["seed", "trajectories"]):
        by = g.set_index("method")
        ours.append([str(seed), f"{int(round(g['steps'].mean())):,}"] + [
            cell(by.loc[m, k], by.loc[m, f"{k}_se"]) if m in by.index and (k == "return" or t > 0) else "—"
            for m in methods for k in ("return", "improvement")])
    paper = [[f"{steps:,}"] + [cell(*v[m][i:i + 2]) for m in methods for i in (0, 2)] for steps, v in PAPER_TABLE1.items()]
    fig, axes = plt.subplots(2, 1, figsize=(11, 1.2 + 0.45 * (len(ours) + len(paper))),
                             gridspec_kw={"height_ratios": [len(ours) + 1, len(paper) + 1]})
    for ax, body, header, name in (
            (axes[0], ours, ["seed", "extra env steps", *columns],
             "This reproduction: mean (standard error) over test tasks, per meta-training seed"),
            (axes[1], paper, ["extra env steps", *columns], "The paper (MACAW Tab. 1, one run)")):
        ax.axis("off")
        drawn = ax.table(cellText=body, colLabels=header, loc="center", cellLoc="center")
        drawn.auto_set_font_size(False)  # one size in both tables, however many columns
        drawn.set_fontsize(8)
        drawn.scale(1, 1.3)
        ax.set_title(name, fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def metaworld_ml45_table(curves: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """The numbers MACAW Fig. 7 draws: per method and number of training steps, each seed's success rate
    after offline adaptation averaged over the ML45 test tasks, and the mean over seeds with its bootstrap
    interval. ``curves`` columns: method, seed, train_steps, task_id, stage, success."""
    adapted = curves[curves["stage"] == "adapted"]
    return stats.seeds_and_aggregate(adapted, ["method", "train_steps"], "success", level, resamples)


def metaworld_ml45(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MACAW Fig. 7: success rate on the ML45 test tasks vs training steps, with Offline PEARL's final
    value as a dashed line (the paper's "final PEARL average success rate"), from ``metaworld_ml45_table``."""
    apply_style(style)
    colors = _macaw_colors(style)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method in _macaw_methods(table):
        _learning_curve(ax, table[table["method"] == method], MACAW_LABELS.get(method, method), colors.get(method))
    pearl = table[(table["method"] == "offline-pearl") & (table["kind"] == "aggregate")]
    if len(pearl):
        final = pearl.sort_values("train_steps")["mean"].iloc[-1]
        ax.axhline(final, color=colors.get("offline-pearl"), ls="--", lw=1, label="Offline PEARL, final")
    ax.set_xlabel("Training steps")
    ax.set_ylabel("Success rate (5 test tasks)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def macaw_ablations_table(curves: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """The numbers MACAW Fig. 4 draws, in three ``panel``s, each seed's mean over the test tasks and the
    mean over seeds with its interval:

    - ``quality`` (left): MACAW and MACAW without the advantage head per ``data_quality`` slice, vs
      training steps;
    - ``weight_transform`` (centre): MACAW and its two no-weight-transform variants on the standard
      split, vs training steps;
    - ``tasks`` (right): MACAW, Offline PEARL and Offline MT+FT after their last training step (the
      evaluation with the most episodes), per experiment, with its number of training tasks ``n_train``
      (each protocol has its own test tasks, as in the paper).

    ``curves`` columns: experiment, protocol, data_quality, n_train, method, seed, train_steps, task_id,
    stage, return.
    """
    adapted = curves[curves["stage"] == "adapted"]
    whole = adapted[adapted["data_quality"] == "all"]
    quality = adapted[adapted["data_quality"] != "all"]
    standard = whole[(whole["protocol"] == "macaw") & whole["method"].isin(["macaw", "macaw-no-wt", "macaw-wide"])]
    tasks = whole[whole["method"].isin(["macaw", "offline-pearl", "offline-mt-ft"])]
    last = tasks.groupby(["experiment", "method", "seed"])["train_steps"].transform("max")
    final = tasks[tasks["train_steps"] == last]
    panels = [
        ("quality", quality, ["data_quality", "method", "train_steps"], []),
        ("weight_transform", standard, ["method", "train_steps"], []),
        ("tasks", final, ["experiment", "method"], ["n_train", "train_steps"]),
    ]
    table = pd.concat([stats.seeds_and_aggregate(data, by, "return", level, resamples, carry=carry).assign(panel=panel)
                       for panel, data, by, carry in panels if not data.empty], ignore_index=True)
    columns = ["panel", "experiment", "data_quality", "method", "train_steps", "n_train", "kind", "seed", "mean",
               "ci_low", "ci_high", "n_seeds", "n_tasks"]
    return table.reindex(columns=columns).astype({"train_steps": "Int64", "n_train": "Int64"})


def macaw_ablations(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MACAW Fig. 4, from ``macaw_ablations_table``. Left: MACAW (solid) and without the advantage head
    (dashed) on bad, medium and good adaptation data. Centre: weight transform against no weight
    transform at equal width and at equal parameter count. Right: final return vs number of training
    tasks for MACAW, Offline PEARL and Offline MT+FT."""
    apply_style(style)
    colors = _macaw_colors(style)
    fig, (left, centre, right) = plt.subplots(1, 3, figsize=(15.0, 4.0))
    quality = table[table["panel"] == "quality"]
    shades = dict(zip(QUALITY_LABELS, sns.color_palette("rocket", len(QUALITY_LABELS) + 1)))
    slices = [q for q in QUALITY_LABELS if q in set(quality["data_quality"])]
    for q in slices:
        for method in _macaw_methods(quality[quality["data_quality"] == q]):
            data = quality[(quality["data_quality"] == q) & (quality["method"] == method)]
            head = method == "macaw"
            _learning_curve(left, data, f"{QUALITY_LABELS[q]}, {'MACAW' if head else 'no adv. head'}", shades[q],
                            "-" if head else "--")
    left.set_title("Data quality x enriched policy loss")
    wt = table[table["panel"] == "weight_transform"]
    for method in _macaw_methods(wt):
        _learning_curve(centre, wt[wt["method"] == method], MACAW_LABELS.get(method, method), colors.get(method))
    centre.set_title("Weight transform")
    for ax in (left, centre):
        ax.set_xlabel("Training steps")
        ax.set_ylabel("Average return")
        ax.legend(fontsize="x-small")
    sparse = table[table["panel"] == "tasks"]
    for method in _macaw_methods(sparse):
        _errorbar_line(right, sparse[sparse["method"] == method], "n_train", MACAW_LABELS.get(method, method),
                       colors.get(method))
    right.set_title("Task sparsity")
    right.set_xlabel("Number of training tasks")
    right.set_ylabel("Final average return")
    right.legend(fontsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- Figs 8-9: the per-task agents whose replay buffers are the offline data ---------------------


def offline_policy_curves_table(curves: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """The numbers MACAW Figs 8-9 draw: per family and task, each seed's curve (``seed`` rows), the mean
    over seeds with its bootstrap interval (``aggregate`` rows) and the random policy's return, averaged
    over the family's tasks and seeds (one ``random`` row per family; none where no task has one).

    ``curves`` columns: family, algo, seed, task_id, split, env_steps, eval_return, random_return.
    """
    curves = _families_in_order(curves)
    table = stats.seeds_and_aggregate(curves, ["family", "algo", "task_id", "split", "env_steps"], "eval_return",
                                      level, resamples)
    random = (curves.drop_duplicates(["family", "seed", "task_id"]).dropna(subset=["random_return"])
              .groupby(["family", "algo"], as_index=False)
              .agg(mean=("random_return", "mean"), n_seeds=("seed", "nunique"), n_tasks=("task_id", "nunique")))
    return pd.concat([table, random.assign(kind="random")], ignore_index=True).astype(
        {"task_id": "Int64", "env_steps": "Int64"})


def offline_policy_curves(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """MACAW Figs 8-9: one panel per family, one line per task, evaluation return vs environment steps.

    ``table`` is ``offline_policy_curves_table``'s. Each task's line is its mean over seeds, with the
    bootstrap interval as a band and every seed's curve as a thin line when there are 2 to 5 seeds (one
    seed: the line is that seed's curve). Test-only tasks are dashed; the random policy is dotted.
    """
    apply_style(style)
    families = list(dict.fromkeys(table["family"]))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.8), squeeze=False)
    keys = {}  # one legend for the figure, below the panels, so that no key hides a curve
    for ax, family in zip(axes[0], families):
        data = table[table["family"] == family]
        aggregate, seeds = data[data["kind"] == "aggregate"], data[data["kind"] == "seed"]
        n_seeds = aggregate["n_seeds"].max()
        tasks = sorted(aggregate["task_id"].unique())
        colors = dict(zip(tasks, sns.color_palette("viridis", len(tasks))))
        for (task, split), curve in aggregate.groupby(["task_id", "split"]):
            dashes = (0, (4, 2)) if split == "test" else "-"
            ax.plot(curve["env_steps"], curve["mean"], color=colors[task], lw=1.0, ls=dashes)
            if n_seeds > 1:
                ax.fill_between(curve["env_steps"], curve["ci_low"], curve["ci_high"], color=colors[task], alpha=0.08,
                                lw=0)
            if 1 < n_seeds <= MAX_SEEDS_DRAWN:
                for _, one in seeds[seeds["task_id"] == task].groupby("seed"):
                    ax.plot(one["env_steps"], one["mean"], color=colors[task], lw=0.4, alpha=0.5, ls=dashes)
        if (aggregate["split"] == "test").any():
            keys["training tasks"] = plt.Line2D([], [], color="0.3", lw=1.0)
            keys["test tasks"] = plt.Line2D([], [], color="0.3", lw=1.0, ls=(0, (4, 2)))
        for random in data.loc[data["kind"] == "random", "mean"]:
            keys["random policy (task mean)"] = ax.axhline(random, color="0.5", lw=1.0, ls=":")
        algo = "/".join(sorted(aggregate["algo"].str.upper().unique()))
        ax.set_title(f"{FAMILY_TITLES.get(family, family)} ({algo})")
        ax.set_xlabel("Environment steps")
        ax.set_ylabel("Average return" if ax is axes[0][0] else "")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    fig.suptitle(title)
    if keys:
        fig.legend(keys.values(), keys.keys(), loc="lower center", ncol=len(keys), fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.07 if keys else 0, 1, 1))
    return fig

"""Each figure in two steps: ``<what>_table`` turns the results into the numbers the figure draws (each
seed's value and the mean over seeds with its bootstrap interval), ``<what>`` draws that table into a
matplotlib Figure and computes nothing. No file I/O here."""

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


MAX_SEEDS_DRAWN = 5  # with this many seeds or fewer, the figures draw every seed beside the mean


def _families_in_order(df: pd.DataFrame) -> pd.DataFrame:
    """``family`` as a categorical in order of first appearance (the config's), which sorting keeps."""
    return df.assign(family=pd.Categorical(df["family"], categories=pd.unique(df["family"])))


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


# --- MACAW (papers/004): learning curves of the offline methods --------------------------

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


# --- AdMRL (papers/002) ------------------------------------------------------------------

ADMRL_LABELS = {"admrl": "AdMRL (Ours)", "mb-unif": "MB-Unif", "mb-gauss": "MB-Gauss", "maml": "MAML", "pearl": "PEARL",
                "mt-joint": "MT-joint", "maml-mt": "MAML-MT", "pearl-mt": "PEARL-MT"}
ADMRL_ORDER = list(ADMRL_LABELS)


def adaptation_rows(evals: pd.DataFrame, tests: pd.DataFrame) -> pd.DataFrame:
    """Every method's returns in the model-based evaluations' form (task_id, ψ, n, return): a model-free
    baseline's "adapted" rows with n = its ``steps`` (samples of the schedule) and the test task's
    parameters joined from ``tests`` (experiment, task_id, ψ...); model-based rows pass unchanged."""
    if "n" in evals and evals["n"].notna().all():
        return evals
    mb = evals[evals["n"].notna()] if "n" in evals else evals.iloc[:0]
    mf = evals[evals["n"].isna()] if "n" in evals else evals
    if (mf["stage"] != "adapted").any() or mf["steps"].isna().any():
        raise ValueError("adaptation_rows: model-free rows need stage 'adapted' and steps (AdMRL's sample schedule); got "
                         f"stages {sorted(mf['stage'].dropna().unique())} for {sorted(mf['method'].unique())}")
    params = [c for c in tests.columns if c not in ("experiment", "task_id")]
    mf = mf.drop(columns=[c for c in params if c in mf]).assign(n=mf["steps"]).merge(
        tests, on=["experiment", "task_id"], how="left", validate="many_to_one", indicator=True)
    missing = mf.loc[mf["_merge"] != "both", ["experiment", "task_id"]].drop_duplicates()
    if len(missing):
        raise ValueError(f"adaptation_rows: no test task for {missing.to_dict('records')}")
    mf = mf.drop(columns="_merge")
    return pd.concat([mb, mf], ignore_index=True) if len(mb) else mf


def _admrl_colors(style: Mapping[str, Any]) -> dict[str, Any]:
    return dict(zip(ADMRL_ORDER, sns.color_palette(style["palette"], len(ADMRL_ORDER))))


def _admrl_methods(table: pd.DataFrame) -> list[str]:
    present = set(table["method"].dropna())
    return [m for m in ADMRL_ORDER if m in present] + sorted(present - set(ADMRL_ORDER))


def gap_rows(evals: pd.DataFrame, a_star_sac: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Every evaluation row with its task's reference return and gap G_n(ψ) = A*(ψ) - A_n(ψ).

    ``a_star_sac``: (experiment, task_id, a_star_sac), the reference SAC agent's final return.
    ``reference``: ``best_known`` takes A* = max(A*_SAC, the best return any method, seed and n reached
    on the task), so G ≥ 0; ``sac`` keeps A*_SAC alone (AdMRL spec 4.1).
    """
    if reference not in ("best_known", "sac"):
        raise ValueError(f"gap_reference: {reference!r} is not one of best_known, sac")
    best = evals.groupby(["experiment", "task_id"], as_index=False)["return"].max().rename(columns={"return": "a_star_methods"})
    df = evals.merge(a_star_sac, on=["experiment", "task_id"], how="left", validate="many_to_one").merge(
        best, on=["experiment", "task_id"], validate="many_to_one")
    missing = df.loc[df["a_star_sac"].isna(), ["experiment", "task_id"]].drop_duplicates()
    if len(missing):
        raise ValueError(f"no reference agent's return for {missing.to_dict('records')}")
    if reference == "best_known":
        df["a_star"] = df[["a_star_sac", "a_star_methods"]].max(axis=1)
        df["a_star_source"] = (df["a_star_sac"] >= df["a_star_methods"]).map({True: "sac", False: "method"})
    else:
        df["a_star"], df["a_star_source"] = df["a_star_sac"], "sac"
    df["gap"] = df["a_star"] - df["return"]
    return df.drop(columns="a_star_methods")


def worst_case_gap_table(evals: pd.DataFrame, a_star_sac: pd.DataFrame, reference: str, level: float,
                         resamples: int) -> pd.DataFrame:
    """AdMRL Figs 3, 4b and 5: ``kind`` ``task`` rows (each seed, test task and n with its return and gap:
    the heatmaps average them over seeds), ``seed`` rows (the worst-case gap G^max_n = the largest gap over
    the test tasks, per seed) and ``aggregate`` rows (the mean of G^max_n over seeds with its bootstrap
    interval over seeds; AdMRL spec 4.2: the max is taken per seed, then averaged)."""
    tasks = gap_rows(evals, a_star_sac, reference).assign(kind="task")
    return pd.concat([tasks, _over_seeds(tasks, "gap", "max", level, resamples)], ignore_index=True)


ADMRL_BY = ["experiment", "family", "method", "n"]


def _over_seeds(rows: pd.DataFrame, value: str, over_tasks: str, level: float, resamples: int) -> pd.DataFrame:
    """Per experiment, method and n: each seed's ``over_tasks`` (max, mean) of ``value`` over the test tasks
    (``seed`` rows), and their mean over seeds with its bootstrap interval (``aggregate`` rows)."""
    per_seed = rows.groupby([*ADMRL_BY, "seed"], as_index=False).agg(mean=(value, over_tasks),
                                                                    n_tasks=("task_id", "nunique"))
    out = []
    for key, group in per_seed.groupby(ADMRL_BY):
        mean, low, high = stats.bootstrap_ci(group[["mean"]].to_numpy(), level, resamples)
        out.append({**dict(zip(ADMRL_BY, key)), "mean": mean, "ci_low": low, "ci_high": high, "n_seeds": len(group),
                    "n_tasks": int(group["n_tasks"].iloc[0])})
    return pd.concat([per_seed.assign(kind="seed", n_seeds=1), pd.DataFrame(out).assign(kind="aggregate")],
                     ignore_index=True)


def visited_tasks_table(tasks: pd.DataFrame) -> pd.DataFrame:
    """AdMRL Fig. 4a: the training tasks each run visited, in order (``kind`` ``visited``)."""
    return tasks.assign(kind="visited")


TASK_AXES = {"ant-2d": ("goal_vx", "goal_vy"), "walker-2d": ("goal_v", "goal_h"), "hopper-2d": ("goal_v", "goal_h")}
AXIS_LABELS = {"goal_vx": "goal $v_x$", "goal_vy": "goal $v_y$", "goal_v": "goal velocity", "goal_h": "goal height",
               "goal_z": "goal height"}
ADMRL_TITLES = {"ant-2d": "Ant2D", "walker-2d": "Walker2D", "hopper-2d": "Hopper2D", "ant-3d": "Ant3D",
                "cheetah-highdim": "HalfCheetah (18-d task)"}


def _gap_heatmap(ax, cells: pd.DataFrame, family: str, vmin: float, vmax: float, cmap, box=None) -> None:
    """Mean gap over seeds at the largest n on the test grid; lighter = smaller gap; missing cells blank."""
    x, y = TASK_AXES[family]
    grid = cells.groupby([y, x])["gap"].mean().unstack(x).sort_index(ascending=False)
    sns.heatmap(grid, ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, cbar=False, square=True,
                xticklabels=[f"{v:g}" for v in grid.columns], yticklabels=[f"{v:g}" for v in grid.index])
    ax.set_xlabel(AXIS_LABELS.get(x, x))
    ax.set_ylabel(AXIS_LABELS.get(y, y))
    if box is not None and min(grid.shape) > 1:  # the training box, in cell coordinates (cell i spans [i, i + 1])
        cols, rows = np.asarray(grid.columns, float), np.asarray(grid.index, float)[::-1]
        c0, c1 = np.interp(box[0], cols, np.arange(len(cols)) + 0.5)
        r0, r1 = len(rows) - np.interp(box[1][::-1], rows, np.arange(len(rows)) + 0.5)
        ax.add_patch(plt.Rectangle((c0, r1), c1 - c0, r0 - r1, fill=False, edgecolor="red", linewidth=2))


def _worst_case_curves(ax, table: pd.DataFrame, style: Mapping[str, Any]) -> None:
    colors = _admrl_colors(style)
    for method in _admrl_methods(table):
        _errorbar_line(ax, table[table["method"] == method], "n", ADMRL_LABELS.get(method, method), colors.get(method))
    ax.set_xlabel("Adaptation samples $n$")
    ax.set_ylabel("Worst-case gap $G^{max}_n$")
    ax.set_xticks(sorted(table["n"].dropna().unique()))


def _gap_figure(table: pd.DataFrame, style: Mapping[str, Any], title: str, box=None) -> plt.Figure:
    """Per experiment (row): one gap heatmap per method at the largest n on a shared colour scale, and
    the worst-case gap vs n with intervals over seeds."""
    apply_style(style)
    experiments = list(dict.fromkeys(table["experiment"]))
    methods = _admrl_methods(table)
    fig, axes = plt.subplots(len(experiments), len(methods) + 1, figsize=(3.4 * (len(methods) + 1), 3.4 * len(experiments)),
                             squeeze=False, layout="constrained")
    cmap = sns.color_palette("rocket_r", as_cmap=True)
    for row, name in zip(axes, experiments):
        data = table[table["experiment"] == name]
        family = data["family"].iloc[0]
        cells = data[(data["kind"] == "task") & (data["n"] == data["n"].max())]
        means = cells.groupby(["method", "task_id"])["gap"].mean()
        vmin, vmax = float(means.min()), float(means.max())
        for ax, method in zip(row, methods):
            _gap_heatmap(ax, cells[cells["method"] == method], family, vmin, vmax, cmap, box)
            ax.set_title(f"{ADMRL_TITLES.get(family, family)}: {ADMRL_LABELS.get(method, method)}", fontsize="small")
        fig.colorbar(row[0].collections[0], ax=list(row[:len(methods)]), shrink=0.8,
                     label=f"gap $G_{{{int(data['n'].max())}}}$ (lighter = smaller)")
        _worst_case_curves(row[-1], data[data["kind"] != "task"], style)
        row[-1].set_title(ADMRL_TITLES.get(family, family), fontsize="small")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize="small", frameon=False)
    fig.suptitle(title)
    return fig


def worst_case_gap(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """AdMRL Fig. 3: (a) the gap at the largest n over each family's test grid, per method, lighter =
    smaller; (b) the worst-case gap over the test tasks vs adaptation samples, from ``worst_case_gap_table``."""
    return _gap_figure(table, style, title)


def ood_gap(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """AdMRL Fig. 5: the same outside the training box: the boundary tasks of [-5, 5]² (inner cells blank),
    the training box [-3, 3]² in red."""
    return _gap_figure(table, style, title, box=((-3.0, 3.0), (-3.0, 3.0)))


def ood_gap_table(evals, a_star_sac, reference, level, resamples) -> pd.DataFrame:
    return worst_case_gap_table(evals, a_star_sac, reference, level, resamples)


def adversarial_tasks_table(evals, a_star_sac, reference, level, resamples, visited) -> pd.DataFrame:
    """AdMRL Fig. 4: the tasks visited in ant-3d's box (a) and the worst-case gap on cheetah-highdim (b)."""
    return pd.concat([visited_tasks_table(visited), worst_case_gap_table(evals, a_star_sac, reference, level, resamples)],
                     ignore_index=True)


def adversarial_tasks(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """AdMRL Fig. 4: (a) the training tasks each method visited in ant-3d's box, coloured by their order
    (seed 0); (b) the worst-case gap vs adaptation samples on cheetah-highdim's boundary tasks."""
    apply_style(style)
    visited = table[table["kind"] == "visited"]
    methods = _admrl_methods(visited)
    fig = plt.figure(figsize=(3.8 * (len(methods) + 1), 4.0), layout="constrained")
    for i, method in enumerate(methods):
        ax = fig.add_subplot(1, len(methods) + 1, i + 1, projection="3d")
        data = visited[(visited["method"] == method) & (visited["seed"] == visited["seed"].min())].sort_values("task")
        points = ax.scatter(data["goal_vx"], data["goal_vy"], data["goal_z"], c=data["task"], cmap="viridis", s=25,
                            vmin=0, vmax=visited["task"].max())
        ax.set(xlim=(-3, 3), ylim=(-3, 3), zlim=(0.4, 0.6), xlabel="goal $v_x$", ylabel="goal $v_y$", zlabel="goal height")
        ax.set_title(f"Ant3D: {ADMRL_LABELS.get(method, method)}", fontsize="small")
    fig.colorbar(points, ax=fig.axes, shrink=0.6, location="left", label="training task $j$")
    gaps = table[table["kind"].isin(["seed", "aggregate"])]
    ax = fig.add_subplot(1, len(methods) + 1, len(methods) + 1)
    _worst_case_curves(ax, gaps, style)
    ax.set_title(ADMRL_TITLES.get("cheetah-highdim"), fontsize="small")
    ax.legend(fontsize="small", frameon=False)
    fig.suptitle(title)
    return fig


def pearl_gap_heatmap_table(evals, a_star_sac, reference, level, resamples) -> pd.DataFrame:
    """AdMRL Fig. 1: PEARL's gaps per test task and n (and its worst-case gap), as Fig. 3's table."""
    return worst_case_gap_table(evals, a_star_sac, reference, level, resamples)


def pearl_gap_heatmap(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """AdMRL Fig. 1: the gap at the largest n over the task grid, mean over seeds, lighter = smaller."""
    apply_style(style)
    cells = table[(table["kind"] == "task") & (table["n"] == table["n"].max())]
    panels = list(cells.groupby(["experiment", "method"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.0), squeeze=False, layout="constrained")
    means = cells.groupby(["experiment", "method", "task_id"])["gap"].mean()
    for ax, ((_, method), data) in zip(axes[0], panels):
        family = data["family"].iloc[0]
        _gap_heatmap(ax, data, family, float(means.min()), float(means.max()), sns.color_palette("rocket_r", as_cmap=True))
        ax.set_title(f"{ADMRL_TITLES.get(family, family)}: {ADMRL_LABELS.get(method, method)}", fontsize="small")
        fig.colorbar(ax.collections[0], ax=ax, shrink=0.8, label=f"gap $G_{{{int(cells['n'].max())}}}$ (lighter = smaller)")
    fig.suptitle(title)
    return fig


def adaptation_returns_table(evals, a_star_sac, reference, level, resamples) -> pd.DataFrame:
    """AdMRL Fig. 2: per experiment, method and n, each seed's return averaged over the test tasks
    (``seed`` rows) and their mean over seeds with a bootstrap interval (``aggregate``). No reference
    return: the figure draws returns, not gaps."""
    return _over_seeds(evals, "return", "mean", level, resamples)


def adaptation_returns(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """AdMRL Fig. 2: average test return vs adaptation samples n, one panel per family, one line per method."""
    apply_style(style)
    order = {f: i for i, f in enumerate(("hopper-2d", "walker-2d", "ant-2d", "ant-3d"))}  # the paper's panels
    experiments = sorted(dict.fromkeys(table["experiment"]),
                         key=lambda e: order.get(table.loc[table["experiment"] == e, "family"].iloc[0], len(order)))
    colors = dict(zip(ADMRL_ORDER, sns.color_palette(style["palette"], len(ADMRL_ORDER))))
    fig, axes = plt.subplots(1, len(experiments), figsize=(3.6 * len(experiments), 3.4), squeeze=False,
                             layout="constrained")
    for ax, name in zip(axes[0], experiments):
        data = table[table["experiment"] == name]
        for method in _admrl_methods(data):
            _errorbar_line(ax, data[data["method"] == method], "n", ADMRL_LABELS.get(method, method), colors.get(method))
        family = data["family"].iloc[0]
        ax.set_title(ADMRL_TITLES.get(family, family), fontsize="small")
        ax.set_xlabel("Adaptation samples $n$")
        ax.set_xticks(sorted(data["n"].dropna().unique()))
    axes[0][0].set_ylabel("Average return")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 6), fontsize="small", frameon=False)
    fig.suptitle(title)
    return fig


MODEL_ERROR_LABELS = {"model_rms": "training criterion (RMS, own normaliser)",
                      "model_mse_normalised": "MSE of s' - s / its variance"}


def model_error_table(errors: pd.DataFrame, level: float, resamples: int) -> pd.DataFrame:
    """AdMRL Fig. 6: per ``metric``, method and snapshot (``task``: the model after training task j), each
    seed's error on the out-of-distribution dataset (``seed`` rows) and the mean over seeds with its
    bootstrap interval (``aggregate``)."""
    long = errors.melt(id_vars=["experiment", "family", "method", "seed", "task"], value_vars=list(MODEL_ERROR_LABELS),
                       var_name="metric", value_name="mean")
    by = ["experiment", "family", "metric", "method", "task"]
    rows = []
    for key, group in long.groupby(by):
        mean, low, high = stats.bootstrap_ci(group[["mean"]].to_numpy(), level, resamples)
        rows.append({**dict(zip(by, key)), "mean": mean, "ci_low": low, "ci_high": high, "n_seeds": len(group)})
    return pd.concat([long.assign(kind="seed", n_seeds=1), pd.DataFrame(rows).assign(kind="aggregate")],
                     ignore_index=True)


def model_error(table: pd.DataFrame, style: Mapping[str, Any], title: str) -> plt.Figure:
    """AdMRL Fig. 6: each method's final model's error on out-of-distribution data (bars, mean and interval
    over seeds, every seed as a dot), and the error of the model after each training task j."""
    apply_style(style)
    colors = _admrl_colors(style)
    metrics = [m for m in MODEL_ERROR_LABELS if m in set(table["metric"])]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(9, 3.4 * len(metrics)), squeeze=False, layout="constrained")
    for (bar_ax, curve_ax), metric in zip(axes, metrics):
        data = table[table["metric"] == metric]
        methods = _admrl_methods(data)
        final = data[data["task"] == data["task"].max()]
        agg = final[final["kind"] == "aggregate"].set_index("method").loc[methods]
        bar_ax.bar(range(len(methods)), agg["mean"], color=[colors.get(m) for m in methods],
                   yerr=[agg["mean"] - agg["ci_low"], agg["ci_high"] - agg["mean"]], capsize=4)
        seeds = final[final["kind"] == "seed"]
        for i, m in enumerate(methods):
            bar_ax.scatter([i] * int((seeds["method"] == m).sum()), seeds.loc[seeds["method"] == m, "mean"], color="k", s=8)
        bar_ax.set_xticks(range(len(methods)), [ADMRL_LABELS.get(m, m) for m in methods])
        bar_ax.set_ylabel(MODEL_ERROR_LABELS[metric])
        bar_ax.set_title(f"after {int(data['task'].max()) + 1} training tasks", fontsize="small")
        for m in methods:
            _errorbar_line(curve_ax, data[data["method"] == m], "task", ADMRL_LABELS.get(m, m), colors.get(m))
        curve_ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        curve_ax.set_xlabel("model after training task $j$")
        curve_ax.set_ylabel(MODEL_ERROR_LABELS[metric])
    axes[0][1].legend(fontsize="small", frameon=False)
    fig.suptitle(title)
    return fig

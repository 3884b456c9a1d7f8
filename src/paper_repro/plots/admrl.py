"""AdMRL (papers/002) Figs 1-6: each figure's table (``<what>_table``) and its drawing (``<what>``), from
every method's evaluations in one form (``adaptation_rows``) with each test task's reference return and
sub-optimality gap (``gap_rows``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from paper_repro import stats
from paper_repro.plots.common import _errorbar_line, apply_style

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

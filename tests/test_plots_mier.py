"""MIER's figures (Figs 2-4): tables from synthetic evaluations whose means are known, and figures that
draw exactly the tables' numbers."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from paper_repro.plots import mier

STYLE = {"dpi": 100, "context": "paper", "palette": "colorblind", "ci": 95, "bootstrap": 200}
CI, RESAMPLES = 95, 200


def _evals(methods_steps, seeds=2, tasks=3, value=lambda m, s, t, n: 0.0, **extra):
    rows = []
    for method, steps in methods_steps.items():
        for seed in range(seeds):
            for task in range(tasks):
                rows.append({"method": method, "seed": seed, "task_id": task, "stage": "prior", "steps": 0,
                             "return": -1000.0, **extra})
                for n in steps:
                    rows.append({"method": method, "seed": seed, "task_id": task, "stage": "adapted", "steps": n,
                                 "return": value(method, seed, task, n), **extra})
    return pd.DataFrame(rows)


def _seed_points(ax) -> np.ndarray:
    """The per-seed dots drawn on ``ax`` (scatter offsets), as (x, y) rows."""
    dots = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    return np.concatenate(dots) if dots else np.empty((0, 2))


def _rows(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    return table[table["kind"] == kind]


def test_final_adapted_takes_the_last_relabelling_step_per_method():
    evals = _evals({"mier": [0, 10, 20], "pearl": [0]}, value=lambda m, s, t, n: n)
    final = mier.final_adapted(evals)
    assert len(final) == 2 * 2 * 3
    assert set(final[final.method == "mier"]["steps"]) == {20}
    assert set(final[final.method == "pearl"]["steps"]) == {0}


STEPS = {"pearl": [0], "maml": [0], "mier": [0, 100, 200], "mier-no-relabel": [0, 100, 200]}
MEANS = {"pearl": -50.0, "maml": -120.0, "mier": 80.0}


def _fig4_value(method, seed, task, n):
    """The bars show each method's last step only; a seed effect of ±10 around each method's mean."""
    if method == "mier-no-relabel":
        return -200.0 + n
    return MEANS[method] + 10.0 * (2 * seed - 1) if n == STEPS[method][-1] else 0.0


def test_dynamics_extrapolation_table_holds_seed_and_aggregate_rows_per_panel():
    table = mier.dynamics_extrapolation_table(_evals(STEPS, value=_fig4_value), CI, RESAMPLES)
    methods = table[table.panel == "methods"]
    aggregate = _rows(methods, "aggregate").set_index("method")
    assert aggregate["mean"].to_dict() == pytest.approx(MEANS)
    assert (aggregate["n_seeds"] == 2).all() and (aggregate["n_tasks"] == 3).all()
    assert aggregate.loc["mier", ["ci_low", "ci_high"]].tolist() == pytest.approx([70.0, 90.0])  # the 2 seeds' means
    seeds = _rows(methods, "seed").set_index(["method", "seed"])["mean"]
    assert seeds.loc[("mier", 0)] == 70.0 and seeds.loc[("mier", 1)] == 90.0
    relabel = _rows(table[table.panel == "relabelling"], "aggregate")
    assert relabel[relabel.method == "mier-no-relabel"][["steps", "mean"]].values.tolist() == [[0, -200], [100, -100],
                                                                                                [200, 0]]


def test_dynamics_extrapolation_draws_the_tables_numbers_and_every_seed():
    table = mier.dynamics_extrapolation_table(_evals(STEPS, value=_fig4_value), CI, RESAMPLES)
    fig = mier.dynamics_extrapolation(table, STYLE, "Fig 4")
    left, right = fig.axes
    aggregate = _rows(table[table.panel == "methods"], "aggregate").set_index("method").loc[["pearl", "maml", "mier"]]
    assert [p.get_height() for p in left.patches] == pytest.approx(aggregate["mean"].tolist())
    assert [t.get_text() for t in left.get_xticklabels()] == ["PEARL", "MAML", "MIER (Ours)"]
    error_bars = left.containers[1].errorbar.lines[2][0].get_segments()  # one vertical segment per bar
    np.testing.assert_allclose([(s[0][1], s[1][1]) for s in error_bars], aggregate[["ci_low", "ci_high"]])
    seeds = _rows(table[table.panel == "methods"], "seed")
    assert sorted(_seed_points(left)[:, 1]) == pytest.approx(sorted(seeds["mean"]))  # 3 methods × 2 seeds
    assert right.get_xlabel() == "Number of relabelling steps"
    lines = {line.get_label(): line for line in right.get_lines()}
    assert set(lines) == {"MIER with cross-task relabelling", "MIER without relabelling"}
    np.testing.assert_array_equal(lines["MIER without relabelling"].get_xdata(), [0, 100, 200])
    np.testing.assert_array_equal(lines["MIER without relabelling"].get_ydata(), [-200, -100, 0])
    assert len(_seed_points(right)) == 2 * 2 * 3  # 2 methods × 2 seeds × 3 step counts


def test_more_than_five_seeds_draw_no_seed_points():
    table = mier.dynamics_extrapolation_table(_evals(STEPS, seeds=6, value=_fig4_value), CI, RESAMPLES)
    fig = mier.dynamics_extrapolation(table, STYLE, "Fig 4")
    assert all(len(_seed_points(ax)) == 0 for ax in fig.axes)
    assert (_rows(table, "aggregate")["n_seeds"] == 6).all()


def test_reward_extrapolation_draws_one_point_per_velocity_and_method():
    frames = [_evals({"mier": [0], "pearl": [0], "maml": [0]}, velocity=v, value=lambda m, s, t, n, v=v: -100 * v)
              for v in (0.5, 1.0, 1.5, 2.0, 2.5)]
    evals = pd.concat(frames)
    evals["task_id"] += (evals["velocity"] * 100).astype(int)  # each velocity its own test tasks
    table = mier.reward_extrapolation_table(evals, CI, RESAMPLES)
    fig = mier.reward_extrapolation(table, STYLE, "Fig 3")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"MIER (Ours)", "PEARL", "MAML"}
    np.testing.assert_allclose(lines["PEARL"].get_ydata(), [-50, -100, -150, -200, -250])
    assert ax.get_xlabel() == "Target velocity"
    assert len(_seed_points(ax)) == 3 * 5 * 2  # methods × velocities × seeds


def test_sample_efficiency_has_a_panel_per_family_and_aligns_evaluations_across_seeds():
    rows = []
    for family in ("cheetah-vel", "humanoid-dir"):
        for method, scale in (("mier", 1.0), ("maml", 100.0)):
            for seed in range(2):
                for k in range(1, 4):
                    for task in range(2):
                        rows.append({"family": family, "method": method, "seed": seed, "task_id": task,
                                     "env_steps": int(k * 1000 * scale + seed), "stage": "adapted", "steps": 0,
                                     "return": float(k + seed)})
    table = mier.sample_efficiency_table(pd.DataFrame(rows), CI, RESAMPLES)
    maml = table[(table.family == "cheetah-vel") & (table.method == "maml")]
    assert _rows(maml, "aggregate")[["evaluation", "env_steps", "mean"]].values.tolist() == [
        [1, 100000.5, 1.5], [2, 200000.5, 2.5], [3, 300000.5, 3.5]]
    assert _rows(maml, "seed")[["seed", "env_steps"]].values.tolist() == [[0, 100000], [1, 100001], [0, 200000],
                                                                          [1, 200001], [0, 300000], [1, 300001]]
    fig = mier.sample_efficiency(table, STYLE, "Fig 2")
    assert [ax.get_title() for ax in fig.axes] == ["Cheetah-Velocity Standard Benchmark",
                                                    "Humanoid-Direction Standard Benchmark"]
    line = {line.get_label(): line for line in fig.axes[0].get_lines()}["MAML"]
    np.testing.assert_allclose(line.get_xdata(), [100000.5, 200000.5, 300000.5])
    np.testing.assert_allclose(line.get_ydata(), [1.5, 2.5, 3.5])
    bands = [c for c in fig.axes[0].collections if not isinstance(c, PathCollection)]
    band = bands[0].get_paths()[0].vertices  # MAML's interval (drawn first, in the paper's legend order)
    assert band[:, 1].min() == pytest.approx(1.0) and band[:, 1].max() == pytest.approx(4.0)
    assert sorted(map(tuple, _seed_points(fig.axes[0]))) == sorted(
        map(tuple, _rows(table[table.family == "cheetah-vel"], "seed")[["env_steps", "mean"]].values))

"""MIER's figures (Figs 2-4) from synthetic tables whose means are known."""

import numpy as np
import pandas as pd
import pytest

from paper_repro import plots

STYLE = {"dpi": 100, "context": "paper", "palette": "colorblind", "ci": 95, "bootstrap": 200}


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


def test_final_adapted_takes_the_last_relabelling_step_per_method():
    evals = _evals({"mier": [0, 10, 20], "pearl": [0]}, value=lambda m, s, t, n: n)
    final = plots.final_adapted(evals)
    assert len(final) == 2 * 2 * 3
    assert set(final[final.method == "mier"]["steps"]) == {20}
    assert set(final[final.method == "pearl"]["steps"]) == {0}


def test_dynamics_extrapolation_bars_are_the_means_after_adaptation():
    means = {"pearl": -50.0, "maml": -120.0, "mier": 80.0}
    steps = {"pearl": [0], "maml": [0], "mier": [0, 100, 200], "mier-no-relabel": [0, 100, 200]}

    def value(method, seed, task, n):  # the bars show each method's last step only
        if method == "mier-no-relabel":
            return -200.0 + n
        return means[method] if n == steps[method][-1] else 0.0

    evals = _evals(steps, value=value)
    fig = plots.dynamics_extrapolation(evals, STYLE, "Fig 4")
    left, right = fig.axes
    heights = [p.get_height() for p in left.patches]
    assert heights == pytest.approx([means["pearl"], means["maml"], means["mier"]])
    assert [t.get_text() for t in left.get_xticklabels()] == ["PEARL", "MAML", "MIER (Ours)"]
    assert right.get_xlabel() == "Number of relabelling steps"
    lines = {line.get_label(): line for line in right.get_lines()}
    assert set(lines) == {"MIER with cross-task relabelling", "MIER without relabelling"}
    np.testing.assert_array_equal(lines["MIER without relabelling"].get_xdata(), [0, 100, 200])


def test_reward_extrapolation_draws_one_point_per_velocity_and_method():
    frames = [_evals({"mier": [0], "pearl": [0], "maml": [0]}, velocity=v, value=lambda m, s, t, n, v=v: -100 * v)
              for v in (0.5, 1.0, 1.5, 2.0, 2.5)]
    fig = plots.reward_extrapolation(pd.concat(frames), STYLE, "Fig 3")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"MIER (Ours)", "PEARL", "MAML"}
    np.testing.assert_allclose(lines["PEARL"].get_ydata(), [-50, -100, -150, -200, -250])
    assert ax.get_xlabel() == "Target velocity"


def test_sample_efficiency_has_a_panel_per_family_and_aligns_evaluations_across_seeds():
    rows = []
    for family in ("cheetah-vel", "humanoid-dir"):
        for method, scale in (("mier", 1.0), ("maml", 100.0)):
            for seed in range(2):
                for k in range(1, 4):
                    for task in range(2):
                        rows.append({"family": family, "method": method, "seed": seed, "task_id": task,
                                     "env_steps": int(k * 1000 * scale + seed), "stage": "adapted", "steps": 0,
                                     "return": float(k)})
    fig = plots.sample_efficiency(pd.DataFrame(rows), STYLE, "Fig 2")
    assert [ax.get_title() for ax in fig.axes] == ["Cheetah-Velocity Standard Benchmark",
                                                    "Humanoid-Direction Standard Benchmark"]
    line = {line.get_label(): line for line in fig.axes[0].get_lines()}["MAML"]
    np.testing.assert_allclose(line.get_xdata(), [100000.5, 200000.5, 300000.5])
    np.testing.assert_allclose(line.get_ydata(), [1, 2, 3])

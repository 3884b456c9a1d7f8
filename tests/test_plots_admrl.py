"""AdMRL's Figs 1-2 tables: the model-free baselines' rows in the model-based form, and the mean return
over test tasks per seed with its interval over seeds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from paper_repro.plots import admrl

STYLE = {"dpi": 100, "context": "paper", "palette": "colorblind"}
TESTS = pd.DataFrame({"experiment": "admrl-ant-2d", "task_id": [0, 1], "goal_vx": [-3.0, 3.0], "goal_vy": [0.0, 3.0]})


def mb_rows(method="admrl", seeds=(0,)):
    return pd.DataFrame([{"experiment": "admrl-ant-2d", "family": "ant-2d", "method": method, "seed": s, "task_id": t,
                          "goal_vx": TESTS.goal_vx[t], "goal_vy": TESTS.goal_vy[t], "n": n, "return": 100.0 * t + n / 100 + s}
                         for s in seeds for t in (0, 1) for n in (0, 2000)])


def mf_rows(method="pearl", seeds=(0,)):
    return pd.DataFrame([{"experiment": "admrl-ant-2d", "family": "ant-2d", "method": method, "seed": s, "task_id": t,
                          "adapt_trajectories": 2, "stage": "adapted", "steps": n, "samples": n, "return": -10.0 * t + s}
                         for s in seeds for t in (0, 1) for n in (0, 2000)])


def test_adaptation_rows_give_baselines_n_and_their_task_parameters():
    rows = admrl.adaptation_rows(pd.concat([mb_rows(), mf_rows()], ignore_index=True), TESTS)
    assert len(rows) == 8 and rows["n"].notna().all()
    pearl = rows[rows.method == "pearl"].sort_values(["task_id", "n"])
    assert pearl["n"].tolist() == [0, 2000, 0, 2000]
    assert pearl[["goal_vx", "goal_vy"]].to_numpy().tolist() == [[-3.0, 0.0]] * 2 + [[3.0, 3.0]] * 2
    pd.testing.assert_frame_equal(admrl.adaptation_rows(mb_rows(), TESTS), mb_rows())  # model-based rows pass


def test_adaptation_rows_refuse_unknown_tasks_and_other_protocols():
    with pytest.raises(ValueError, match="no test task"):
        admrl.adaptation_rows(mf_rows(), TESTS[TESTS.task_id == 0])
    classic = mf_rows().assign(stage="prior")
    with pytest.raises(ValueError, match="stage 'adapted'"):
        admrl.adaptation_rows(classic, TESTS)


def test_adaptation_returns_table_means_tasks_per_seed_then_seeds():
    evals = admrl.adaptation_rows(pd.concat([mb_rows(seeds=(0, 1, 2)), mf_rows(seeds=(0, 1, 2))], ignore_index=True), TESTS)
    table = admrl.adaptation_returns_table(evals, None, "best_known", 95, 200)
    seed = table[table.kind == "seed"].set_index(["method", "n", "seed"])["mean"]
    assert seed[("pearl", 2000, 1)] == pytest.approx((-0.0 + 1 - 10.0 + 1) / 2)
    agg = table[table.kind == "aggregate"].set_index(["method", "n"])
    assert agg.loc[("admrl", 2000), "mean"] == pytest.approx(np.mean([50 + 20 + s for s in (0, 1, 2)]))
    assert (agg.ci_low <= agg["mean"]).all() and (agg["mean"] <= agg.ci_high).all() and (agg.n_seeds == 3).all()
    fig = admrl.adaptation_returns(table, STYLE, "t")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["AdMRL (Ours)", "PEARL"]
    plt.close(fig)


def test_pearl_gap_heatmap_draws_the_largest_n():
    evals = admrl.adaptation_rows(mf_rows(), TESTS)
    a_star = pd.DataFrame({"experiment": "admrl-ant-2d", "task_id": [0, 1], "a_star_sac": [5.0, 5.0]})
    table = admrl.pearl_gap_heatmap_table(evals, a_star, "best_known", 95, 100)
    cells = table[(table.kind == "task") & (table.n == 2000)].set_index("task_id")
    assert cells.loc[0, "gap"] == 5.0 and cells.loc[1, "gap"] == 15.0
    fig = admrl.pearl_gap_heatmap(table, STYLE, "t")
    assert fig.axes[0].get_title() == "Ant2D: PEARL"
    plt.close(fig)

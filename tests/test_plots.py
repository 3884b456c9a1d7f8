import numpy as np
import pytest
import pandas as pd

from paper_repro.plots import macaw

STYLE = {"dpi": 100, "context": "paper", "palette": "colorblind", "ci": 95, "bootstrap": 100}


def _curves(tasks, seeds=1, random_return=np.nan, split="train", value=lambda t, seed, s: s * (t + 1)):
    return pd.DataFrame([
        {"family": fam, "algo": algo, "seed": seed, "task_id": t, "split": split, "env_steps": s,
         "eval_return": value(t, seed, s), "random_return": random_return}
        for fam, algo, n in tasks for t in range(n) for seed in range(seeds) for s in (0, 100, 200)])


def _table(curves: pd.DataFrame) -> pd.DataFrame:
    return macaw.offline_policy_curves_table(curves, STYLE["ci"], STYLE["bootstrap"])


def test_offline_policy_curves_has_one_panel_per_family_and_one_line_per_task():
    table = _table(_curves([("cheetah-vel", "td3", 3), ("ant-dir", "sac", 2)]))
    fig = macaw.offline_policy_curves(table, STYLE, "Fig 8")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["Cheetah-Velocity (TD3)", "Ant-Direction (SAC)"]
    assert [len(ax.get_lines()) for ax in axes] == [3, 2]
    assert axes[0].get_xlabel() == "Environment steps"


def test_offline_policy_curves_draws_test_tasks_dashed():
    curves = _curves([("cheetah-vel", "td3", 3)])
    curves["split"] = curves["task_id"].map({0: "train", 1: "train+test", 2: "test"})
    fig = macaw.offline_policy_curves(_table(curves), STYLE, "Fig 8")
    ax = fig.axes[0]
    styles = sorted(str(line.get_linestyle()) for line in ax.get_lines()[:3])
    assert styles == ["-", "-", "--"]  # only the test-only task is dashed
    assert ax.get_legend() is None  # the keys sit below the panels, off the curves
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["training tasks", "test tasks"]


def test_offline_policy_curves_marks_the_random_policy_mean_over_tasks():
    curves = _curves([("cheetah-vel", "td3", 3)])
    curves["random_return"] = -100.0 * (curves["task_id"] + 1)
    table = _table(curves)
    random = table[table.kind == "random"]
    assert random[["family", "mean", "n_tasks"]].values.tolist() == [["cheetah-vel", -200, 3]]
    fig = macaw.offline_policy_curves(table, STYLE, "Fig 8")
    ax = fig.axes[0]
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"] == [-200.0]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["random policy (task mean)"]


def test_offline_policy_curves_draw_the_mean_over_seeds_its_interval_and_every_seed():
    table = _table(_curves([("cheetah-vel", "td3", 2)], seeds=3, value=lambda t, seed, s: s * (t + 1) + 10 * seed))
    aggregate = table[table.kind == "aggregate"]
    assert (aggregate["n_seeds"] == 3).all() and (aggregate["n_tasks"] == 1).all()
    np.testing.assert_allclose(aggregate[aggregate.task_id == 1]["mean"], [10, 210, 410])
    ax = macaw.offline_policy_curves(table, STYLE, "Fig 8").axes[0]
    lines = ax.get_lines()
    assert len(lines) == 2 * (1 + 3)  # per task: the mean and each seed
    means = [line for line in lines if line.get_linewidth() == 1.0]
    np.testing.assert_allclose([line.get_ydata() for line in means], [[10, 110, 210], [10, 210, 410]])
    bands = [c.get_paths()[0].vertices[:, 1] for c in ax.collections]
    np.testing.assert_allclose([(b.min(), b.max()) for b in bands], [(0, 220), (0, 420)])  # lowest/highest seed


def test_offline_policy_curves_with_more_than_five_seeds_draw_only_the_mean():
    table = _table(_curves([("cheetah-vel", "td3", 2)], seeds=6))
    assert len(macaw.offline_policy_curves(table, STYLE, "Fig 8").axes[0].get_lines()) == 2


def test_omniglot_table_bins_training_steps_between_evaluations():
    """MACAW Fig. 6: the training accuracy is the running mean over the steps since the previous evaluation;
    validation rows keep each task, so their interval is over tasks too."""
    rows = [{"split": "train", "method": "macaw", "seed": 0, "train_steps": s, "task_id": 0, "accuracy": s / 10,
             "parameters": 9, "ways": 5} for s in range(1, 5)]
    rows += [{"split": "val", "method": "macaw", "seed": 0, "train_steps": s, "task_id": t, "accuracy": 0.1 * t,
              "parameters": 9, "ways": 5} for s in (0, 2, 4) for t in range(3)]
    table = macaw.weight_transform_omniglot_table(pd.DataFrame(rows), 95, 200)
    agg = table[table.kind == "aggregate"].set_index(["split", "train_steps"])
    assert agg.loc[("train", 2), "mean"] == pytest.approx(0.15) and agg.loc[("train", 4), "mean"] == pytest.approx(0.35)
    assert ("train", 0) not in agg.index and agg.loc[("val", 2), "n_tasks"] == 3
    assert agg.loc[("val", 2), "ci_low"] < agg.loc[("val", 2), "mean"] < agg.loc[("val", 2), "ci_high"]
    fig = macaw.weight_transform_omniglot(table, {"dpi": 50, "context": "paper", "palette": "colorblind"}, "t")
    assert [ax.get_title() for ax in fig.axes] == list(macaw.OMNIGLOT_SPLITS.values())


def test_online_finetuning_table_reports_the_papers_statistics_per_run():
    """MACAW Table 1: mean and standard error over the test tasks of one run of the return and of its improvement
    over the evaluation before any online data (the paper's statistic, one run); a second seed is further rows,
    in the table and in its drawing, never pooled with the first."""
    rows = pd.DataFrame([{"method": "macaw-ft", "seed": seed, "task_id": task, "trajectories": t, "steps": 200 * t,
                          "return": -300 + 10 * task + (5 * t + seed + task * (seed == 1)) * (t > 0)}
                         for seed in (0, 1) for task in range(3) for t in (0, 10)])
    table = macaw.online_finetuning_table(rows, 95, 100)
    assert set(table.kind) == {"seed"} and len(table) == 4 and (table.n_tasks == 3).all()
    by = table.set_index(["seed", "trajectories"])
    assert by.loc[(0, 0), "return"] == pytest.approx(-290) and by.loc[(0, 0), "return_se"] == pytest.approx(10 / np.sqrt(3))
    assert by.loc[(0, 10), "improvement"] == pytest.approx(50) and by.loc[(0, 10), "improvement_se"] == pytest.approx(0)
    assert by.loc[(1, 10), "improvement"] == pytest.approx(52) and by.loc[(1, 10), "improvement_se"] == pytest.approx(1 / np.sqrt(3))
    assert by.loc[(1, 10), "return"] == pytest.approx(-290 + 52) and by.loc[(0, 10), "steps"] == 2000
    fig = macaw.online_finetuning(table, {"dpi": 50, "context": "paper", "palette": "colorblind"}, "t")
    assert len(fig.axes) == 2
    cells = fig.axes[0].tables[0].get_celld()
    body = [[cells[r, c].get_text().get_text() for c in range(4)] for r in range(1, 5)]
    assert [row[:2] for row in body] == [["0", "0"], ["0", "2,000"], ["1", "0"], ["1", "2,000"]]
    assert body[1][3] == "50.0 (0.0)" and body[3][3] == f"52.0 ({1 / np.sqrt(3):.1f})" and body[0][3] == "—"

import pandas as pd

from paper_repro import plots

STYLE = {"dpi": 100, "context": "paper", "palette": "colorblind", "ci": 95, "bootstrap": 100}


def test_offline_policy_curves_has_one_panel_per_family_and_one_line_per_task():
    rows = [
        {"family": fam, "algo": algo, "seed": 0, "task_id": t, "env_steps": s, "eval_return": s * (t + 1)}
        for fam, algo, tasks in (("cheetah-vel", "td3", 3), ("ant-dir", "sac", 2))
        for t in range(tasks)
        for s in (0, 100, 200)
    ]
    fig = plots.offline_policy_curves(pd.DataFrame(rows), STYLE, "Fig 8")
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["Cheetah-Velocity (TD3)", "Ant-Direction (SAC)"]
    assert [len(ax.get_lines()) for ax in axes] == [3, 2]
    assert axes[0].get_xlabel() == "Environment steps"


def test_offline_policy_curves_draws_test_tasks_dashed():
    rows = [
        {"family": "cheetah-vel", "algo": "td3", "seed": 0, "task_id": t, "split": split, "env_steps": s,
         "eval_return": s * (t + 1)}
        for t, split in ((0, "train"), (1, "train+test"), (2, "test"))
        for s in (0, 100, 200)
    ]
    fig = plots.offline_policy_curves(pd.DataFrame(rows), STYLE, "Fig 8")
    ax = fig.axes[0]
    styles = sorted(str(line.get_linestyle()) for line in ax.get_lines()[:3])
    assert styles == ["-", "-", "--"]  # only the test-only task is dashed
    assert ax.get_legend() is None  # the keys sit below the panels, off the curves
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["training tasks", "test tasks"]


def test_offline_policy_curves_marks_the_random_policy_mean_over_tasks():
    rows = [
        {"family": "cheetah-vel", "algo": "td3", "seed": 0, "task_id": t, "env_steps": s, "eval_return": s,
         "random_return": -100.0 * (t + 1)}
        for t in range(3)
        for s in (0, 100, 200)
    ]
    fig = plots.offline_policy_curves(pd.DataFrame(rows), STYLE, "Fig 8")
    ax = fig.axes[0]
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"] == [-200.0]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["random policy (task mean)"]

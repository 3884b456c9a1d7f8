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

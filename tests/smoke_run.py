"""One smoke-scale run of the workflow, shared by the tests that only inspect its results.

The run happens once per pytest session, in a git repository of its own (a copy of the
workflow committed once), so that the provenance's ``git_describe`` is a real commit.
``FIGURES`` lists the figures built on top of ``rule all``: adding a figure is one line there.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import copy_workflow, snakemake

SMOKE = ("--config", "scale=smoke")

# Figures built (and checked in the report) beyond `rule all`. A figure goes here with its rules.
FIGURES = [
    "fig2_sample_efficiency",
    "fig3_reward_extrapolation",
    "fig4_dynamics_extrapolation",
    "fig3_offline_meta_rl",
    "fig4_macaw_ablations",
    "fig5_weight_transform_ablation",
    "fig8_offline_policy_curves",
    "fig3_worst_case_gap",
    "fig4_adversarial_tasks",
    "fig5_ood_gap",
    "fig6_model_error",
    "fig1_pearl_gap_heatmap",
    "fig2_adaptation_returns",
    "fig6_weight_transform_omniglot",
    "table1_online_finetuning",
    "fig7_metaworld_ml45",
]

_built: dict[str, tuple[Path, list[str]]] = {}


def figure_target(name: str) -> str:
    return f"results/figures/{name}.pdf"


def git_commit_copy(workdir: Path) -> None:
    """Make the copy a git repository with one commit, as a user's checkout would be."""
    git = ["git", "-c", "user.name=paper-repro tests", "-c", "user.email=tests@localhost", "-c", "init.defaultBranch=main"]
    (workdir / ".gitignore").write_text("results/\n.snakemake/\n__pycache__/\n*.egg-info/\nreport.html\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "smoke"]):
        subprocess.run([*git, *args], cwd=workdir, check=True, capture_output=True)


def smoke_results(tmp_path_factory) -> tuple[Path, list[str]]:
    """(workdir, figures built): `rule all` plus FIGURES, at the smoke scale."""
    if "wf" not in _built:
        workdir = copy_workflow(tmp_path_factory.mktemp("smoke") / "wf")
        git_commit_copy(workdir)
        snakemake(workdir, "--cores", "2", *SMOKE, "--", "all", *map(figure_target, FIGURES), timeout=1800)
        _built["wf"] = (workdir, FIGURES)
    return _built["wf"]

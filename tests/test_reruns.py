"""Rerun only what changed: each change to a copy of the workflow reruns exactly the jobs it should."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import snakemake

SMOKE = ("--config", "scale=smoke")
MAML_EVAL = "results/eval/mier-negated-joints/maml/seed0.csv"
MAML_RUN = ["results/runs/mier-negated-joints/maml/seed0/metrics.csv", "results/runs/mier-negated-joints/maml/seed0/model.pt"]
TABLES = [
    "results/tasks/ant-2d/admrl/test.csv",
    "results/tasks/ant-dir/macaw/test.csv",
    "results/tasks/cheetah-vel/macaw/test.csv",
    "results/tasks/walker-params/macaw/test.csv",
]


def planned(workdir: Path, targets: list[str], *config: str) -> list[str]:
    """The outputs a dry run would (re)build."""
    proc = snakemake(workdir, "-n", "--cores", "1", *targets, *(config or SMOKE))
    outputs = set()
    for match in re.finditer(r"^\s+output: (.+)$", proc.stdout, flags=re.M):
        outputs.update(p.strip() for p in match.group(1).split(","))
    return sorted(outputs)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    from conftest import copy_workflow

    wf = copy_workflow(tmp_path_factory.mktemp("reruns") / "wf")
    snakemake(wf, "--cores", "2", *TABLES, MAML_EVAL, *SMOKE)
    assert planned(wf, [*TABLES, MAML_EVAL]) == []
    return wf


def test_touch_alone_reruns_nothing(built):
    for path in ["src/paper_repro/envs/ant.py", "src/paper_repro/envs/tasks.py", "config/config.yaml",
                 "src/paper_repro/algos/maml.py", "src/paper_repro/envs/cheetah.py"]:
        (built / path).touch()
    assert planned(built, [*TABLES, MAML_EVAL]) == []


def test_algorithm_hyperparameter_change_reruns_that_algorithm_only(built):
    (built / "override.yaml").write_text("scale: smoke\nmaml: {meta_iterations: 3}\n")
    rebuilt = planned(built, [*TABLES, MAML_EVAL], "--configfile", "override.yaml")
    assert rebuilt == sorted([MAML_EVAL, *MAML_RUN])


def test_algorithm_source_change_reruns_that_algorithm_only(built):
    source = built / "src/paper_repro/algos/maml.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# a change to MAML\n")
        assert planned(built, [*TABLES, MAML_EVAL]) == sorted([MAML_EVAL, *MAML_RUN])
    finally:
        source.write_text(original)


def test_evaluation_protocol_change_reruns_evaluation_only(built):
    (built / "override.yaml").write_text("scale: smoke\nevaluate: {adapt_trajectories: 2, episodes: 2}\n")
    rebuilt = planned(built, [*TABLES, MAML_EVAL], "--configfile", "override.yaml")
    assert rebuilt == [MAML_EVAL]


def test_family_definition_change_reruns_that_family_only(built):
    source = built / "src/paper_repro/envs/ant.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# a change to the ant families\n")
        assert planned(built, [*TABLES, MAML_EVAL]) == [
            "results/tasks/ant-2d/admrl/test.csv",
            "results/tasks/ant-dir/macaw/test.csv",
            "results/tasks/ant-dir/macaw/train.csv",
        ]
    finally:
        source.write_text(original)
    source = built / "src/paper_repro/envs/cheetah.py"  # the negated-joint family: its tables, MAML's run
    original = source.read_text()
    try:
        source.write_text(original + "\n# a change to the cheetah families\n")
        assert planned(built, [*TABLES, MAML_EVAL]) == sorted([
            "results/tasks/cheetah-negated-joints/mier/test.csv", "results/tasks/cheetah-negated-joints/mier/train.csv",
            "results/tasks/cheetah-vel/macaw/test.csv", "results/tasks/cheetah-vel/macaw/train.csv", MAML_EVAL, *MAML_RUN])
    finally:
        source.write_text(original)


def test_task_seed_change_reruns_every_table(built):
    rebuilt = planned(built, TABLES, "--config", "scale=smoke", "task_seed=1")
    assert set(TABLES) <= set(rebuilt)


def test_plot_option_change_reruns_the_plot_only(tmp_path_factory):
    from smoke_run import smoke_results

    workdir, _ = smoke_results(tmp_path_factory)
    target = ["results/figures/fig8_offline_policy_curves.pdf"]
    assert planned(workdir, target) == []
    (workdir / "restyle.yaml").write_text("scale: smoke\nplot: {dpi: 300, context: talk, palette: colorblind, ci: 95}\n")
    assert planned(workdir, target, "--configfile", "restyle.yaml") == [
        "results/figures/fig8_offline_policy_curves.pdf", "results/figures/fig8_offline_policy_curves.png"]

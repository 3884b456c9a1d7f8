"""Rerun only what changed: each change to a copy of the workflow reruns exactly the jobs it should."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import snakemake

SMOKE = ("--config", "scale=smoke")
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
    snakemake(wf, "--cores", "2", *TABLES, *SMOKE)
    assert planned(wf, TABLES) == []
    return wf


def test_touch_alone_reruns_nothing(built):
    for path in ["src/paper_repro/envs/ant.py", "src/paper_repro/envs/tasks.py", "config/config.yaml"]:
        (built / path).touch()
    assert planned(built, TABLES) == []


def test_family_definition_change_reruns_that_family_only(built):
    source = built / "src/paper_repro/envs/ant.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# a change to the ant families\n")
        assert planned(built, TABLES) == [
            "results/tasks/ant-2d/admrl/test.csv",
            "results/tasks/ant-dir/macaw/test.csv",
            "results/tasks/ant-dir/macaw/train.csv",
        ]
    finally:
        source.write_text(original)


def test_task_seed_change_reruns_every_table(built):
    rebuilt = planned(built, TABLES, "--config", "scale=smoke", "task_seed=1")
    assert set(TABLES) <= set(rebuilt)

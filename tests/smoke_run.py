"""One smoke-scale run of the workflow, shared by the tests that only inspect its results.

The run happens once per pytest session, in a git repository of its own (a copy of the
workflow committed once), so that the provenance's ``git_describe`` is a real commit.
``FIGURES`` lists the figures built on top of ``rule all``: every figure in ``config/config.yaml``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import ROOT, copy_workflow, snakemake

from paper_repro import config as prconfig

SMOKE = ("--config", "scale=smoke")

# Figures built (and checked in the report) beyond `rule all`: every figure of the config.
FIGURES = list(prconfig.load_yaml(ROOT / "config" / "config.yaml")["figures"])

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

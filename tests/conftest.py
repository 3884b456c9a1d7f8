"""Shared fixtures: a private copy of the workflow to run snakemake in; the ``workflow`` marker; in CI
(``CI=true``) a skipped test fails unless it is marked ``gpu``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
WORKFLOW_PARTS = ("Snakefile", "config", "workflow", "src")
NO_SLURM = ROOT / "tests" / "no_slurm"  # a scontrol that fails at once (snakemake_env)


def copy_workflow(dest: Path) -> Path:
    """Copy what the workflow reads (not results/ or .snakemake/) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def snakemake_env(slurm: bool = False) -> dict[str, str]:
    """The environment of a snakemake process that a test starts.

    The Slurm executor plugin (2.8.0) runs ``scontrol show config`` when snakemake imports it, for an
    option's help text, whatever the executor; where Slurm's client is installed but no controller
    answers (here, outside the Slurm tests), that call waits 9 s. Unless the test uses Slurm, its
    snakemake finds a ``scontrol`` that fails at once, which the plugin reads as "no Slurm"."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not slurm:
        env["PATH"] = f"{NO_SLURM}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 900,
              slurm: bool = False) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` (``slurm``: with the real Slurm client, see :func:`snakemake_env`); on
    failure the assertion shows its output."""
    env = snakemake_env(slurm)
    proc = subprocess.run([SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def workflow_dir(tmp_path: Path) -> Path:
    """A fresh copy of the workflow in a temporary directory."""
    return copy_workflow(tmp_path / "wf")


# What a test module imports to run snakemake: this file's helper, or smoke_run's shared smoke run.
RUNS_SNAKEMAKE = ("snakemake", "smoke_results")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``workflow`` every test of a module that runs snakemake, so that ``make test-fast`` can leave it out."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and any(callable(getattr(module, name, None)) for name in RUNS_SNAKEMAKE):
            item.add_marker(pytest.mark.workflow)


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI (``CI=true``) a skip is a failure, whatever skipped it (a missing tool, platform or package, a
    stale condition): CI must run every test. Only tests marked ``gpu`` may skip there (CI has no GPU)."""
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("gpu") is None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), where only tests marked gpu may skip: {reason}"

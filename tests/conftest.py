"""Shared fixtures: a private copy of the workflow to run snakemake in; the ``workflow`` marker; in CI
(``CI=true``) a skipped test fails unless it is marked ``gpu``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from paper_repro import evidence

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
NO_SLURM = ROOT / "tests" / "no_slurm"  # a scontrol that fails at once (snakemake_env)


def copy_workflow(dest: Path) -> Path:
    """Copy what the workflow reads (not results/ or .snakemake/) into ``dest``."""
    return evidence.copy_workflow(dest, ROOT)


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


HANG_GUARD_S = 1800.0
"""How long :func:`wait_until` waits before it calls a child hung: far beyond any loaded machine's pace."""


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str, hang_guard_s: float = HANG_GUARD_S) -> None:
    """Poll until ``ready()`` (a state a running child ``proc`` reaches: a file, a count of files). Fails
    if the child ends first, or, as a guard against a hang only, after ``hang_guard_s``: a loaded machine
    may be slow, and no test asserts a speed (DESIGN.md, Tests)."""
    start = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            if ready():
                return
            raise AssertionError(f"the child ended (exit status {proc.returncode}) before {what}")
        if time.monotonic() - start > hang_guard_s:
            raise AssertionError(f"the child hung: still no {what} after {hang_guard_s:.0f} s (a hang guard, "
                                 "not a speed test)")
        time.sleep(0.05)


# What a test module imports to run snakemake: this file's helper, or smoke_run's shared smoke run.
RUNS_SNAKEMAKE = ("snakemake", "smoke_results")


LEARNING_TIMEOUT_S = 1800
"""pytest-timeout's limit on each test marked ``slow`` (the learning tests) without its own ``timeout`` mark:
several times the slowest one's time on a shared 2-core machine, so it stops only a hung test."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``workflow`` every test of a module that runs snakemake, so that ``make test-fast`` can leave it out;
    give every ``slow`` test the learning tests' timeout."""
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LEARNING_TIMEOUT_S))
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

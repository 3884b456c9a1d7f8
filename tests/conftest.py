"""Shared fixtures: a private copy of the workflow to run snakemake in; the ``workflow`` marker; in CI
(``CI=true``) a skipped test fails unless it is marked ``gpu``."""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# What a test calls, itself or through its fixtures and its module's helpers, to run Snakemake: this file's
# helper, the shared smoke run, Snakemake's DAG built in process (plan.dag_jobs, through evidence too), or a
# fresh copy of the workflow (the workflow_dir fixture).
RUNS_SNAKEMAKE = {"snakemake", "smoke_results", "dag_jobs", "rules_markdown", "figure_params", "render", "publish",
                  "copy_workflow"}


def _names(func: Any) -> set[str]:
    """The global and attribute names ``func``'s code (nested functions included) refers to."""
    names, todo = set(), [func.__code__] if hasattr(func, "__code__") else []
    while todo:
        code = todo.pop()
        names |= set(code.co_names)
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return names


def calls(func: Any, module: Any, names: set[str], seen: set | None = None) -> bool:
    """Whether ``func`` names one of ``names`` or calls a function of ``module`` that does (followed through)."""
    seen = set() if seen is None else seen
    if func in seen:
        return False
    seen.add(func)
    found = _names(func)
    return bool(found & names) or any(
        calls(helper, module, names, seen) for name in found
        if inspect.isfunction(helper := getattr(module, name, None)) and helper.__module__ == module.__name__)


def runs_snakemake(func: Any, module: Any) -> bool:
    """Whether ``func`` runs Snakemake: it names one of RUNS_SNAKEMAKE, or calls a function of ``module`` that does."""
    return calls(func, module, RUNS_SNAKEMAKE)


def uses(item: pytest.Item, names: set[str]) -> bool:
    """Whether the test, its fixtures or its module's helpers they call name one of ``names``."""
    module = getattr(item, "module", None)
    if module is None or not hasattr(item, "function"):
        return False
    fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
    return any(calls(f, module, names) for f in (item.function, *fixtures))


@functools.cache
def reads_smoke_run(item: pytest.Item) -> bool:
    """Whether the test reads the shared smoke run (tests/smoke_run.py)."""
    return uses(item, {"smoke_results"})


LEARNING_TIMEOUT_S = 1800
"""pytest-timeout's limit on each test marked ``slow`` (the learning tests) without its own ``timeout`` mark:
several times the slowest one's time on a shared 2-core machine, so it stops only a hung test."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``workflow`` each test that runs Snakemake (:func:`runs_snakemake`: per test, so that the unit
    tests of a module that also runs the workflow stay in ``make test-fast``); give every ``slow`` test the
    learning tests' timeout; put the smoke run's readers last, so that the others run while it builds."""
    for item in items:
        if item.get_closest_marker("slow") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LEARNING_TIMEOUT_S))
        if item.get_closest_marker("workflow") is None and uses(item, RUNS_SNAKEMAKE):
            item.add_marker(pytest.mark.workflow)
    items.sort(key=reads_smoke_run)  # stable: each group keeps its order


TORCH_THREADS = 1
"""Torch's threads in the test session: the tests' networks are small, and a second thread gains them little
while it takes the core the background smoke build would use (tests/smoke_run.py)."""


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(TORCH_THREADS)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the smoke run in the background where a selected test reads it (tests/smoke_run.py)."""
    if not session.config.option.collectonly and any(map(reads_smoke_run, session.items)):
        import smoke_run

        smoke_run.start(session.config._tmp_path_factory)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if "smoke_run" in sys.modules:
        sys.modules["smoke_run"].stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The smoke run's wall time, beside the slowest tests (its first reader's duration is only its wait)."""
    run = getattr(sys.modules.get("smoke_run"), "RUN", None)
    if run is not None and run.seconds is not None:
        how = "in the background, from the end of collection" if run.log is not None else "in its first reader"
        terminalreporter.write_line(f"smoke run (tests/smoke_run.py): {run.seconds:.0f} s, {how}")


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

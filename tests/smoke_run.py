"""One smoke-scale run of the workflow, shared by the tests that only inspect its results.

The run happens once per pytest session, in a git repository of its own (a copy of the workflow
committed once), so that the provenance's ``git_describe`` is a real commit. ``FIGURES`` lists the
figures built on top of ``rule all``: every figure in ``config/config.yaml``.

Where the session will read it, the run starts in the background as soon as the tests are collected
(:func:`start`, from ``conftest.pytest_collection_finish``), at the lowest CPU priority, and its readers
run last (``conftest.pytest_collection_modifyitems``): it takes the CPU the other tests (and Slurm's jobs)
leave idle instead of running after them.
:func:`smoke_results` waits for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from conftest import ROOT, SNAKEMAKE, copy_workflow, snakemake, snakemake_env

from paper_repro import config as prconfig

SMOKE = ("--config", "scale=smoke")
TIMEOUT_S = 1800
NICE = 19  # the background run yields the CPU to the tests in the foreground

# Figures built (and checked in the report) beyond `rule all`: every figure of the config.
FIGURES = list(prconfig.load_yaml(ROOT / "config" / "config.yaml")["figures"])


def figure_target(name: str) -> str:
    return f"results/figures/{name}.pdf"


ARGS = ("--cores", "2", *SMOKE, "--", "all", *map(figure_target, FIGURES))


class _Run:
    """This session's smoke run: where, since when, and (once done) how long it took."""
    workdir: Path | None = None
    proc: subprocess.Popen | None = None  # while it runs in the background
    log: Path | None = None
    started = 0.0
    ended: float | None = None  # when the background run ended, noted by a watching thread
    seconds: float | None = None  # once it has finished
    error: str | None = None  # why it failed: every reader fails with it


RUN = _Run()


def git_commit_copy(workdir: Path) -> None:
    """Make the copy a git repository with one commit, as a user's checkout would be."""
    git = ["git", "-c", "user.name=paper-repro tests", "-c", "user.email=tests@localhost", "-c", "init.defaultBranch=main"]
    (workdir / ".gitignore").write_text("results/\n.snakemake/\n__pycache__/\n*.egg-info/\nreport.html\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "smoke"]):
        subprocess.run([*git, *args], cwd=workdir, check=True, capture_output=True)


def _workdir(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke") / "wf")
    git_commit_copy(workdir)
    return workdir


def start(tmp_path_factory) -> None:
    """Start the smoke run in the background, at the lowest CPU priority (``NICE``); its output goes to a log."""
    if RUN.workdir is not None:
        return
    RUN.workdir = _workdir(tmp_path_factory)
    RUN.log = RUN.workdir.parent / "smoke.log"
    with open(RUN.log, "w") as out:
        # A session of its own (stop() ends its process group whole). Linux's autogroup scheduling shares the CPU
        # equally between sessions whatever their processes' nice values, so the session's own nice value is set
        # too (lowest_priority): it then yields to this session's tests and to Slurm's jobs (under slurmd) alike.
        RUN.proc = subprocess.Popen(["nice", "-n", str(NICE), SNAKEMAKE, *ARGS], cwd=RUN.workdir, stdout=out,
                                    stderr=subprocess.STDOUT, env=snakemake_env(), start_new_session=True)
    lowest_priority(RUN.proc.pid)
    RUN.started = time.monotonic()

    def watch(proc: subprocess.Popen) -> None:
        proc.wait()
        RUN.ended = time.monotonic()

    threading.Thread(target=watch, args=(RUN.proc,), daemon=True).start()


def lowest_priority(pid: int) -> None:
    """Give the autogroup (session) of ``pid`` the nice value ``NICE``, where the kernel schedules by autogroup
    (``/proc/<pid>/autogroup``; without it, each process's own nice value already counts)."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(NICE))
    except OSError:
        pass  # no autogroup scheduling here (or no /proc): the processes' own nice value applies


def stop() -> None:
    """End a background run that no test waited for (the session stopped early)."""
    if RUN.proc is not None and RUN.proc.poll() is None:
        os.killpg(RUN.proc.pid, signal.SIGTERM)
        RUN.proc.wait()


def _wait() -> None:
    proc, log = RUN.proc, RUN.log
    try:
        proc.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - RUN.started)))
    except subprocess.TimeoutExpired:
        stop()
        RUN.proc = None
        raise AssertionError(f"the smoke run hung: not done after {TIMEOUT_S} s (log: {log})") from None
    RUN.proc = None  # not on an interrupt (Ctrl-C) during the wait: the session's end stops the run
    if proc.returncode != 0:
        RUN.error = f"the smoke run failed ({proc.returncode}):\n{log.read_text()[-6000:]}"


def smoke_results(tmp_path_factory) -> tuple[Path, list[str]]:
    """(workdir, figures built): `rule all` plus FIGURES, at the smoke scale. Waits for the background run,
    or runs it here where none was started (a reader run on its own)."""
    if RUN.seconds is None:
        if RUN.error is not None:
            raise AssertionError(RUN.error)
        if RUN.proc is not None:
            _wait()
            if RUN.error is not None:
                raise AssertionError(RUN.error)
        else:
            RUN.workdir, RUN.started = _workdir(tmp_path_factory), time.monotonic()
            snakemake(RUN.workdir, *ARGS, timeout=TIMEOUT_S)
        RUN.seconds = (RUN.ended or time.monotonic()) - RUN.started
    return RUN.workdir, FIGURES

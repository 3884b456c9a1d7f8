"""A killed snakemake run, run again, finishes the DAG without redoing finished jobs or leaving half-written files."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import HANG_GUARD_S, SNAKEMAKE, snakemake, snakemake_env, wait_until

TARGETS = [f"results/tasks/{f}/{p}/test.csv" for f, p in [
    ("cheetah-vel", "macaw"), ("cheetah-vel", "macaw-ood"), ("cheetah-dir", "macaw"), ("ant-dir", "macaw"),
    ("ant-2d", "admrl"), ("ant-3d", "admrl"), ("walker-params", "macaw"), ("hopper-2d", "admrl")]]
ARGS = ("--cores", "1", *TARGETS, "--config", "scale=smoke")


def finished_tables(wf: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime_ns for p in (wf / "results" / "tasks").glob("*/*/[!.]*.csv")}


def temporaries(wf: Path) -> list[Path]:
    return list((wf / "results").rglob(".*.tmp*"))


def start_and_kill(wf: Path, sig: int, after_tables: int) -> dict[Path, float]:
    proc = subprocess.Popen([SNAKEMAKE, *ARGS], cwd=wf, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=snakemake_env())
    wait_until(lambda: len(finished_tables(wf)) >= after_tables, proc, f"{after_tables} finished tables (snakemake "
               "must still be running to be interrupted)")
    if sig == signal.SIGKILL:  # the node died: snakemake and its jobs go at once
        os.killpg(proc.pid, signal.SIGKILL)
    else:  # the user interrupts snakemake itself
        proc.send_signal(sig)
    try:
        proc.wait(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"snakemake hung: still running {HANG_GUARD_S:.0f} s after {sig!r} (a hang guard, "
                             "not a speed test)") from None
    time.sleep(0.5)
    return finished_tables(wf)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_interrupted_run_finishes_on_rerun(workflow_dir, sig):
    before = start_and_kill(workflow_dir, sig, after_tables=4)
    assert before, "nothing finished before the interruption"
    if sig == signal.SIGKILL:
        snakemake(workflow_dir, "--unlock", *ARGS)  # a killed snakemake leaves its lock behind
    snakemake(workflow_dir, "--rerun-incomplete", *ARGS)
    after = finished_tables(workflow_dir)
    # every table is there and readable; none was left half-written
    assert len(after) > len(before)
    for path in after:
        assert not pd.read_csv(path).empty, path
    assert not temporaries(workflow_dir), "a killed writer's temporary file outlived the rerun"
    # finished jobs were not redone: only the one job in flight (--cores 1) may be, as snakemake
    # cannot know whether a job it did not see end wrote everything
    redone_jobs = {p.parent for p, mtime in before.items() if after[p] != mtime}
    assert len(redone_jobs) <= 1, redone_jobs
    assert "Nothing to be done" in snakemake(workflow_dir, "-n", *ARGS).stdout

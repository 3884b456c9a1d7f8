"""The Slurm profile against a real single-node Slurm (started by tests/slurm/start_slurm.sh).

Run with ``pytest -m slurm`` as root. Outside CI a Slurm that cannot be started here makes the
tests skip (with the script's output as the reason); in CI (``CI=true``) it makes them fail.

Both tests go through ``workflow/profiles/slurm`` unchanged, plus a few command-line options
that only make the test fast and checkable (quicker status polling, kept Slurm logs), and check
that the jobs really went through sbatch: squeue lists them, under the run's Slurm job name,
as COMPLETED, and their logs are in ``.snakemake/slurm_logs/``.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, copy_workflow, snakemake

pytestmark = pytest.mark.slurm

START_SLURM = ROOT / "tests" / "slurm" / "start_slurm.sh"
PROFILE = Path("workflow/profiles/slurm")

# What the project test builds: one complete figure, at the smoke scale. Its compute jobs (the
# per-family SAC/TD3 collection) go through sbatch; task tables and plots are `localrule`s and run
# on the submitting host, as they would on a cluster's login node.
TARGET = "results/figures/fig8_offline_policy_curves.pdf"
SUBMITTED_RULES = ("collect_cheetah-vel", "collect_cheetah-dir", "collect_walker-params", "collect_ant-dir")
SCALE = "smoke"

# Test-only options: poll Slurm every second instead of after 40 s, and keep the Slurm logs
# of successful jobs (deleted by default) so the test can look at them.
FAST = (
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
    "--slurm-keep-successful-logs",
)


@pytest.fixture(scope="module")
def slurm() -> str:
    """Start (or find) the local Slurm; return the script's output."""
    if os.geteuid() != 0:
        ok, output = False, "starting a local Slurm needs root (tests/slurm/start_slurm.sh)"
    else:
        try:
            proc = subprocess.run(
                ["bash", str(START_SLURM)], capture_output=True, text=True, timeout=900
            )
            ok, output = proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stdout}{proc.stderr}"
        except subprocess.TimeoutExpired as exc:
            ok, output = False, f"timed out after {exc.timeout} s\n{exc.stdout or ''}{exc.stderr or ''}"
    if ok and not all(shutil.which(cmd) for cmd in ("sbatch", "squeue", "sinfo")):
        ok, output = False, f"sbatch/squeue/sinfo not on PATH after start_slurm.sh\n{output}"
    if not ok:
        message = f"local Slurm not available: {output}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return output


def run_through_slurm(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` through the Slurm workflow profile."""
    return snakemake(workdir, "--workflow-profile", str(PROFILE), *FAST, *args, timeout=600, slurm=True)


def slurm_jobs(proc: subprocess.CompletedProcess) -> dict[str, tuple[str, str]]:
    """Slurm job id -> (comment, state) of every job submitted by this snakemake run.

    The executor names every job after the run's id ("SLURM run ID: ..." in its output).
    """
    found = re.search(r"SLURM run ID: (\S+)", proc.stdout + proc.stderr)
    assert found, f"no SLURM run ID in snakemake's output:\n{proc.stdout}\n{proc.stderr}"
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--name", found.group(1), "--format=%i|%k|%T"],
        capture_output=True, text=True, check=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        jobid, comment, state = line.strip().split("|")
        jobs[jobid] = (comment, state)
    return jobs


def assert_went_through_sbatch(workdir: Path, proc: subprocess.CompletedProcess, rule: str) -> set[str]:
    """Every job of the run is COMPLETED in Slurm, one is ``rule``'s, all have a Slurm log."""
    jobs = slurm_jobs(proc)
    assert jobs, f"squeue knows no job of this run:\n{proc.stderr}"
    assert {state for _, state in jobs.values()} == {"COMPLETED"}, jobs
    assert any(rule in comment for comment, _ in jobs.values()), jobs
    logs = {p.stem: p for p in (workdir / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert set(jobs) <= set(logs), f"Slurm logs {sorted(logs)} miss jobs {sorted(jobs)}"
    return set(jobs)


def test_plugin_submits_through_sbatch(slurm: str, tmp_path: Path) -> None:
    """The profile and the executor plugin, on a one-rule workflow (no project code)."""
    workdir = tmp_path / "wf"
    (workdir / PROFILE).parent.mkdir(parents=True)
    shutil.copytree(ROOT / PROFILE, workdir / PROFILE)
    (workdir / "Snakefile").write_text(
        'rule a:\n    output: "x.txt"\n    shell: "hostname > {output}; echo $SLURM_JOB_ID >> {output}"\n'
    )
    proc = run_through_slurm(workdir, "x.txt")
    jobids = assert_went_through_sbatch(workdir, proc, "rule_a")
    host, jobid = (workdir / "x.txt").read_text().split()
    assert jobid in jobids, f"x.txt was written by Slurm job {jobid}, not one of {jobids}"


def test_workflow_target_through_slurm(slurm: str, tmp_path: Path) -> None:
    """A target of the project's DAG, built by jobs submitted through the Slurm profile."""
    workdir = copy_workflow(tmp_path / "wf")
    # `--config` takes several values: `--` ends it before the target.
    proc = run_through_slurm(workdir, "--config", f"scale={SCALE}", "--", TARGET)
    for rule in SUBMITTED_RULES:
        assert_went_through_sbatch(workdir, proc, rule)
    assert (workdir / TARGET).stat().st_size > 0, f"{TARGET} is empty"
    with (workdir / "results/tables/fig8_offline_policy_curves.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["family"] for r in rows} == {"cheetah-vel", "cheetah-dir", "walker-params", "ant-dir"}
    # the buffers were written by Slurm jobs: their provenance names the job
    from paper_repro import io

    prov = io.load_json(workdir / f"results/{SCALE}/data/ant-dir/sac/seed0/task0.npz.provenance.json")
    assert prov["slurm_job_id"] in slurm_jobs(proc), prov["slurm_job_id"]

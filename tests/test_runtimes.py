"""Runtime requests (``resources: runtime``, the time limit a cluster grants a job) cover the measured wall
time with a margin: against the Snakemake benchmark TSVs of every unit published under evidence/, and of the
shared smoke run. A job past its limit is killed; on the retry (the Slurm profile's ``retries``) it asks for
twice as much and resumes from its checkpoint."""

from __future__ import annotations

import pytest

import pandas as pd

from conftest import ROOT

from paper_repro import evidence, plan

pytestmark = pytest.mark.workflow  # Snakemake's DAG, built in-process for each scale

MARGIN = 1.1  # a request is at least the measured wall time plus 10%


def uncovered(jobs: list[plan.Job], measured: dict[str, float]) -> list[str]:
    """The jobs whose request is below MARGIN x the measured seconds, and measurements no job has."""
    by_benchmark = {j.benchmark: j for j in jobs if j.benchmark}
    problems = [f"{rel}: no job of today's workflow writes it" for rel in measured if rel not in by_benchmark]
    for rel, seconds in measured.items():
        job = by_benchmark.get(rel)
        if job is not None and job.runtime_min * 60 < MARGIN * seconds:
            problems.append(f"{job.rule} {job.wildcards}: requests {job.runtime_min:g} min, measured "
                            f"{seconds / 60:.1f} min ({rel})")
    return problems


def test_requests_cover_the_published_runs():
    units = [u for scale in ("quick", "paper") for u in evidence.load_units(ROOT / "evidence", scale)]
    assert units, "evidence/ holds no unit"
    problems = []
    for unit in units:
        jobs = evidence.figure_jobs(ROOT, unit["figure"], unit["scale"], unit["seed"] + 1)
        measured = {rel: float(pd.read_csv(unit["path"] / rel, sep="\t")["s"].max())
                    for rel in unit["files"] if rel.endswith(".tsv")}
        problems += uncovered(jobs, measured)
    assert not problems, "\n".join(problems)


def test_requests_cover_the_smoke_run(tmp_path_factory):
    from smoke_run import FIGURES, figure_target, smoke_results

    workdir, _ = smoke_results(tmp_path_factory)
    jobs = plan.dag_jobs(["all", *map(figure_target, FIGURES)], workdir=workdir, config={"scale": "smoke"},
                         forceall=True)
    measured = {j.benchmark: float(pd.read_csv(workdir / j.benchmark, sep="\t")["s"].max())
                for j in jobs if j.benchmark and (workdir / j.benchmark).is_file()}
    assert len(measured) > 100, "the smoke run wrote too few benchmark files"
    assert not uncovered(jobs, measured)

"""Runtime requests (``resources: runtime``, the time limit a cluster grants a job) cover the measured wall
time with a margin: against the Snakemake benchmark TSVs of every unit published under evidence/, and of the
shared smoke run. A job past its limit is killed; on the retry (the Slurm profile's ``retries``) it asks for
twice as much and resumes from its checkpoint."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from conftest import ROOT

from paper_repro import config as prconfig
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
    """One DAG per scale holds every published figure, with as many seeds of each paper as its units pool."""
    units = [u for scale in ("quick", "paper") for u in evidence.load_units(ROOT / "evidence", scale)]
    assert units, "evidence/ holds no unit"
    figures = prconfig.load_yaml(ROOT / "config" / "config.yaml")["figures"]
    problems = []
    for scale in sorted({u["scale"] for u in units}):
        mine = [u for u in units if u["scale"] == scale]
        seeds: dict[str, int] = {}
        for u in mine:
            paper = figures[u["figure"]]["paper"]
            seeds[paper] = max(seeds.get(paper, 0), u["seed"] + 1)
        jobs = plan.dag_jobs(sorted({f"results/figures/{u['figure']}.pdf" for u in mine}), forceall=True,
                             config={"scale": scale, "seeds": seeds, "finetune": {"seeds": max(seeds.values())}})
        measured: dict[str, float] = {}
        for unit in mine:
            for rel in (r for r in unit["files"] if r.endswith(".tsv")):
                seconds = float(pd.read_csv(unit["path"] / rel, sep="\t")["s"].max())
                measured[rel] = max(measured.get(rel, 0.0), seconds)
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


def test_offline_requests_are_meta_steps_times_the_measured_cost_per_network():
    """At the paper scale (1e6 meta-steps), an offline job asks for its meta-steps times config/costs.yaml's seconds
    per meta-step of its network, times the margin: MACAW without weight transform at equal parameters (720 wide
    on cheetah) its own measured rate; Offline PEARL at Meta-World's width 512, unmeasured, its slowest measured
    rate scaled by the square of the widths."""
    costs = yaml.safe_load((ROOT / "config" / "costs.yaml").read_text())["metatrain"]
    jobs = plan.dag_jobs(["results/figures/fig4_macaw_ablations.pdf", "results/figures/fig7_metaworld_ml45.pdf"],
                         config={"scale": "paper"}, forceall=True)
    request = {(j.rule, j.wildcards["experiment"]): j.runtime_min for j in jobs if "experiment" in j.wildcards}
    steps = 1_000_000

    def minutes(seconds_per_step):
        return math.ceil(1.5 * steps * seconds_per_step / 60)

    assert request["metatrain_macaw_wide", "macaw-cheetah-vel"] == minutes(costs["macaw"]["bias720"])
    slurm = (ROOT / "docs" / "slurm.md").read_text()  # the requests docs/slurm.md quotes are today's
    for key in [("metatrain_macaw", "macaw-cheetah-vel"), ("metatrain_macaw_wide", "macaw-cheetah-vel"),
                ("metatrain_offline_pearl", "macaw-cheetah-vel")]:
        assert f"{request[key]:,.0f} min" in slurm, key
    assert request["metatrain_macaw", "macaw-cheetah-vel"] == minutes(costs["macaw"]["wt100"])
    pearl = max(costs["offline_pearl"].items(), key=lambda kv: kv[1])
    assert request["metatrain_offline_pearl", "macaw-metaworld"] == minutes(pearl[1] * (512 / int(pearl[0][3:])) ** 2)


def test_online_requests_are_the_papers_work_times_the_measured_cost_per_unit():
    """At the paper scale, an online job asks for its work (PEARL 500 iterations x 2,000 gradient steps; MIER 400
    epochs x 1,000 meta-steps, 200 on humanoid-dir; MAML 500 x 40 tasks x 20 trajectories x 2) times config/
    costs.yaml's seconds per unit of its family, scaled from the quick batches and widths where they were
    measured (PEARL 16 x 256 transitions at width 300 against 8 x 128 at 200; MIER 10 x 256 against 5 x 128),
    times the margin; a family not measured (MAML on humanoid-dir) takes the slowest family's rate. MIER's
    evaluation asks for its last relabelling step count (20,000) times the test tasks times the measured
    seconds per update."""
    costs = yaml.safe_load((ROOT / "config" / "costs.yaml").read_text())
    jobs = plan.dag_jobs(["results/figures/fig4_dynamics_extrapolation.pdf", "results/figures/fig2_sample_efficiency.pdf"],
                         config={"scale": "paper"}, forceall=True)
    request = {(j.rule, j.wildcards["experiment"]): j.runtime_min for j in jobs if "experiment" in j.wildcards}
    online, per_update = costs["online"], costs["evaluate"]

    def minutes(seconds):
        return max(10, math.ceil(1.5 * seconds / 60))

    pearl = online["pearl"]["cheetah-negated-joints"] * (16 * 256 / 1024) * (300 / 200) ** 2
    assert request["metatrain_pearl", "mier-negated-joints"] == minutes(500 * 2000 * pearl)
    mier = 10 * 256 / 640
    assert request["metatrain_mier", "mier-cheetah-vel"] == minutes(400 * 1000 * online["mier"]["cheetah-vel"] * mier)
    assert request["metatrain_mier", "mier-humanoid-dir"] == minutes(200 * 1000 * online["mier"]["humanoid-dir"] * mier)
    assert request["metatrain_maml", "mier-cheetah-vel"] == minutes(500 * 40 * 20 * 2 * online["maml"]["cheetah-vel"])
    assert "humanoid-dir" not in online["maml"]
    slowest = max(v for k, v in online["maml"].items() if k != "at")
    assert request["metatrain_maml", "mier-humanoid-dir"] == minutes(500 * 40 * 20 * 2 * slowest)
    slurm = (ROOT / "docs" / "slurm.md").read_text()  # the requests docs/slurm.md quotes are today's
    for key in [("metatrain_mier", "mier-cheetah-vel"), ("metatrain_pearl", "mier-negated-joints"),
                ("metatrain_maml", "mier-cheetah-vel")]:
        assert f"{request[key]:,.0f} min" in slurm, key
    # the 10 negated-joint test tasks (TASKS.md: the masks that negate joint 6 and exactly 2 of joints 1-5)
    evaluate = [j for j in jobs if j.rule == "evaluate_mier" and j.wildcards["experiment"] == "mier-negated-joints"]
    assert evaluate and all(j.runtime_min == minutes(20000 * 10 * per_update["mier"]["cheetah-negated-joints"])
                            for j in evaluate)


def test_admrl_requests_are_iterations_times_the_measured_cost_per_iteration():
    """At the paper scale, AdMRL's jobs ask for their iterations of virtual training (AdMRL App. C: 40 zero-shot
    and 3 x 20 inner iterations per later task, 20 SLBO stages of 20 on the ants' first task, 10 on hopper's;
    the test protocol's 40 + 3 x 20 per test task) times config/costs.yaml's seconds per iteration at the
    paper's 1000-1000 model, times the margin; Fig. 6's model errors keep the scale's estimate."""
    costs = yaml.safe_load((ROOT / "config" / "costs.yaml").read_text())["admrl"]
    paper = {kind: next(e["s"] for e in entries if e["width"] == 1000) for kind, entries in costs.items()}
    jobs = plan.dag_jobs(["results/figures/fig3_worst_case_gap.pdf", "results/figures/fig6_model_error.pdf"],
                         config={"scale": "paper", "seeds": {"AdMRL": 1}}, forceall=True)
    request = {(j.rule, *j.wildcards.get("family", j.wildcards.get("experiment", "")).split()): j.runtime_min for j in jobs}

    def minutes(seconds):
        return max(10, math.ceil(1.5 * seconds / 60))

    assert request["metatrain_admrl", "ant-2d"] == minutes(19 * (40 + 3 * 20) * paper["train"])
    assert request["metatrain_mb_unif", "hopper-2d"] == minutes(19 * (40 + 3 * 20) * paper["train"])
    assert request["metatrain_admrl_init", "ant-2d"] == minutes(20 * 20 * paper["train"])
    assert request["metatrain_admrl_init", "hopper-2d"] == minutes(10 * 20 * paper["train"])
    assert request["evaluate_admrl", "admrl-ant-2d"] == minutes(36 * (40 + 3 * 20) * paper["evaluate"])
    model_error = [j for j in jobs if j.rule.startswith("model_error")]
    assert model_error and all(j.runtime_min == 720 for j in model_error)
    slurm = (ROOT / "docs" / "slurm.md").read_text()  # the requests docs/slurm.md quotes are today's
    for key in [("metatrain_admrl", "ant-2d"), ("metatrain_admrl_init", "ant-2d"), ("evaluate_admrl", "admrl-ant-2d")]:
        assert f"{request[key]:,.0f} min" in slurm, key


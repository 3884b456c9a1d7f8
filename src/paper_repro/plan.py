"""What a target costs before it runs: the jobs Snakemake would run for it, each job's runtime request (the
estimate a cluster is given, ``resources: runtime``), and the wall time on N cores if the scheduler starts
the longest chains first.

    python -m paper_repro.plan results/figures/fig4_dynamics_extrapolation.pdf --cores 2 [--config scale=quick]
    make plan TARGET=results/figures/fig4_dynamics_extrapolation.pdf CORES=2

The DAG is Snakemake's own, built in-process from its API; nothing runs. Building it goes through two of
Snakemake's internal methods (``Workflow._prepare_dag`` and ``_build_dag``, as its ``--dag`` printing does),
which ``requirements.lock`` pins; ``tests/test_plan.py`` checks them against a dry run's job list.

The same DAG gives each job's *params* (its slice of the config, the code map aside): ``evidence`` compares
them with what a published unit ran with, to tell evidence of an older config from current evidence.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import heapq
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: dict[str, str]
    outputs: tuple[str, ...]
    runtime_min: float  # the job's runtime request
    threads: int
    priority: int
    params: str  # its params other than the code map, as canonical JSON
    needs: tuple[int, ...]  # the jobs (indices) it waits for
    needrun: bool
    benchmark: str | None = None  # its Snakemake benchmark file, the measured wall time (column s)
    logs: tuple[str, ...] = ()  # its declared log files

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """(rule, wildcards but the seed): the same job of another seed has the same key."""
        return self.rule, tuple(sorted((k, str(v)) for k, v in self.wildcards.items() if k != "seed"))


def params_digest(params: str) -> str:
    return hashlib.sha256(params.encode()).hexdigest()


def _canonical(params: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in params.items() if k != "code"}, sort_keys=True, default=repr)


@contextlib.contextmanager
def _quiet_cwd():
    """Snakemake's API changes the working directory and logs to stderr: both come back afterwards."""
    cwd = os.getcwd()
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            yield
    finally:
        os.chdir(cwd)


@contextlib.contextmanager
def _workflow(targets: Iterable[str], workdir: Path, config: Mapping[str, Any] | None, configfiles: Sequence[Path],
              forceall: bool, cores: int):
    """Snakemake's parsed workflow at ``workdir`` (its ``Workflow`` object), set up for a DAG of ``targets``."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, OutputSettings, Quietness,
                                          ResourceSettings, StorageSettings)

    workdir = Path(workdir).resolve()
    with _quiet_cwd(), SnakemakeApi(OutputSettings(quiet={Quietness.ALL}, dryrun=True)) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=cores),
            config_settings=ConfigSettings(config=dict(config or {}), configfiles=[Path(f).resolve() for f in configfiles]),
            storage_settings=StorageSettings(), snakefile=workdir / "Snakefile", workdir=workdir)
        workflow_api.dag(dag_settings=DAGSettings(targets=set(targets), forceall=forceall))
        yield workflow_api._workflow


def dag_jobs(targets: Iterable[str], *, workdir: Path = ROOT, config: Mapping[str, Any] | None = None,
             configfiles: Sequence[Path] = (), forceall: bool = False, cores: int = 2) -> list[Job]:
    """The jobs of ``targets`` in the workflow at ``workdir`` (every job if ``forceall``, else those Snakemake
    would run and what they wait for), in dependency order."""
    with _workflow(targets, workdir, config, configfiles, forceall, cores) as workflow:
        workflow._prepare_dag(forceall=forceall, ignore_incomplete=True, lock_warn_only=True, nolock=True)
        workflow._build_dag()
        dag = workflow.dag
        order = [job for level in dag.toposorted() for job in level]
        index = {job: i for i, job in enumerate(order)}
        return [Job(rule=job.rule.name, wildcards={k: str(v) for k, v in job.wildcards_dict.items()},
                    outputs=tuple(map(str, job.output)), runtime_min=float(job.resources.get("runtime", 0) or 0),
                    threads=min(int(job.threads), cores),
                    priority=int(job.rule.expand_priority(job.wildcards_dict, job.input, job.attempt)),
                    params=_canonical(dict(job.params.items())),
                    needs=tuple(sorted(index[d] for d in dag.dependencies[job] if d in index)),
                    needrun=bool(dag.needrun(job)), benchmark=str(job.benchmark) if job.benchmark else None,
                    logs=tuple(map(str, job.log)))
                for job in order]


def rules_markdown(workdir: Path = ROOT) -> str:
    """docs/rules.md: every rule of the workflow (many are generated in loops, one per method or family, so
    their names appear nowhere as written), where it is defined and the script it runs."""
    with _workflow(["all"], workdir, {"scale": "smoke"}, (), False, 1) as workflow:
        source_line = {path: lines for path, lines in workflow.linemaps.items()}  # compiled line -> the file's line
        rows = sorted((r.name, Path(r.snakefile).resolve().relative_to(Path(workdir).resolve()).as_posix(),
                       source_line.get(r.snakefile, {}).get(r.lineno, r.lineno), Path(r.script).name if r.script else "")
                      for r in workflow.rules)
    lines = ["# Rules", "", "Generated by `python -m paper_repro.plan --rules` (never edit by hand; `tests/test_plan.py`",
             "checks it is current). Rules defined in a loop (one per method, family or figure) share the line of",
             "their `rule:` statement.", "", "| rule | defined at | script |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | `{path}:{line}` | {f'`{script}`' if script else ''} |" for name, path, line, script in rows]
    return "\n".join(lines) + "\n"


def _subset(jobs: list[Job], keep: list[int]) -> list[Job]:
    """The jobs at indices ``keep`` (in order), each waiting only for others kept."""
    new = {old: i for i, old in enumerate(keep)}
    return [Job(**{**jobs[i].__dict__, "needs": tuple(new[d] for d in jobs[i].needs if d in new)}) for i in keep]


def to_run(jobs: list[Job]) -> list[Job]:
    """The jobs that would run, each waiting only for others that would run."""
    return _subset(jobs, [i for i, job in enumerate(jobs) if job.needrun])


def upstream(jobs: list[Job], output: str) -> list[Job]:
    """The job that writes ``output`` and every job it waits for, from a bigger DAG's ``jobs``: the DAG of that
    one target."""
    wanted = {i for i, job in enumerate(jobs) if output in job.outputs}
    stack = list(wanted)
    while stack:
        for d in jobs[stack.pop()].needs:
            if d not in wanted:
                wanted.add(d)
                stack.append(d)
    return _subset(jobs, sorted(wanted))


def dependents(jobs: list[Job]) -> dict[int, list[int]]:
    """Each job (index) -> the jobs that wait for it."""
    after: dict[int, list[int]] = {i: [] for i in range(len(jobs))}
    for i, job in enumerate(jobs):
        for d in job.needs:
            after[d].append(i)
    return after


def tails(jobs: list[Job]) -> list[float]:
    """Each job's longest chain to the end, itself included (minutes): what the scheduler should start first."""
    after = dependents(jobs)
    tail = [0.0] * len(jobs)
    for i in reversed(range(len(jobs))):  # jobs are in dependency order
        tail[i] = jobs[i].runtime_min + max((tail[j] for j in after[i]), default=0.0)
    return tail


def critical_path(jobs: list[Job]) -> tuple[float, list[Job]]:
    """The longest chain of runtime requests (minutes) and its jobs, first to last."""
    if not jobs:
        return 0.0, []
    tail, after = tails(jobs), dependents(jobs)
    i = max((k for k, job in enumerate(jobs) if not job.needs), key=lambda k: tail[k])
    path = [i]
    while after[path[-1]]:
        path.append(max(after[path[-1]], key=lambda k: tail[k]))
    return tail[path[0]], [jobs[k] for k in path]


def wall_time(jobs: list[Job], cores: int) -> float:
    """Minutes to run ``jobs`` on ``cores`` if each job takes its runtime request and, whenever cores are free,
    the ready job with the highest priority, then the longest chain, starts (list scheduling)."""
    tail, left = tails(jobs), [len(job.needs) for job in jobs]
    after = dependents(jobs)
    ready = [(-jobs[i].priority, -tail[i], i) for i in range(len(jobs)) if not left[i]]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    now, free = 0.0, cores
    while ready or running:
        waiting = []
        while ready:
            item = heapq.heappop(ready)
            i = item[2]
            if jobs[i].threads <= free:
                free -= jobs[i].threads
                heapq.heappush(running, (now + jobs[i].runtime_min, i))
            else:
                waiting.append(item)
        for item in waiting:
            heapq.heappush(ready, item)
        now, i = heapq.heappop(running)
        free += jobs[i].threads
        for j in after[i]:
            left[j] -= 1
            if not left[j]:
                heapq.heappush(ready, (-jobs[j].priority, -tail[j], j))
    return now


def _minutes(m: float) -> str:
    return f"{m:.0f} min" if m < 90 else f"{int(m // 60)} h {m % 60:02.0f} min"


def margin() -> float:
    """The factor a runtime request adds to the measured cost (config/costs.yaml ``margin``)."""
    from paper_repro.config import load_yaml

    return float(load_yaml(ROOT / "config" / "costs.yaml")["margin"])


def expected(jobs: list[Job], factor: float) -> list[Job]:
    """The jobs at their measured costs: each request divided by the margin ``factor``."""
    return [dataclasses.replace(job, runtime_min=job.runtime_min / factor) for job in jobs]


def report(jobs: list[Job], cores: int, factor: float | None = None) -> str:
    """The plan in words: jobs per rule with their requests, core-hours, critical path and wall time, at the
    requests and at the measured costs (the requests divided by the ``factor``, default the costs' margin)."""
    factor = margin() if factor is None else factor
    run = to_run(jobs)
    if not run:
        return "Nothing to run: every target is up to date."
    rules: dict[str, list[Job]] = {}
    for job in run:
        rules.setdefault(job.rule, []).append(job)
    length, path = critical_path(run)
    lines = [f"{len(run)} jobs; requested {sum(j.runtime_min * j.threads for j in run) / 60:.1f} core-hours",
             f"critical path {_minutes(length)}: {' -> '.join(j.rule for j in path)}",
             f"estimated wall time on {cores} cores: {_minutes(wall_time(run, cores))} "
             "(each job at its runtime request, a cluster's time limit; longest chains first)",
             f"expected wall time on {cores} cores: about {_minutes(wall_time(expected(run, factor), cores))} "
             f"(each request divided by its margin of {factor:g}: the measured costs; looser where a request is "
             "a scale's estimate or the 10-min floor)", "",
             f"{'rule':<40} {'jobs':>5} {'request each (min)':>20}"]
    for rule, js in sorted(rules.items(), key=lambda kv: -max(j.runtime_min for j in kv[1])):
        each = sorted({j.runtime_min for j in js})
        lines.append(f"{rule:<40} {len(js):>5} {', '.join(f'{r:g}' for r in each):>20}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paper_repro.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", default=["all"])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="as snakemake --config")
    parser.add_argument("--configfile", nargs="*", default=[], type=Path)
    parser.add_argument("--workdir", type=Path, default=ROOT)
    parser.add_argument("--forceall", action="store_true", help="every job, built or not")
    parser.add_argument("--rules", action="store_true", help="write docs/rules.md: every rule and where it is defined")
    args, _ = parser.parse_known_args(argv)  # other snakemake options (make run's SNAKEMAKE_ARGS) do not matter here
    if args.rules:
        (ROOT / "docs" / "rules.md").write_text(rules_markdown(args.workdir))
        return
    from snakemake.cli import parse_config

    config = parse_config(args.config) if args.config else {}
    jobs = dag_jobs(args.targets, workdir=args.workdir, config=config, configfiles=args.configfile,
                    forceall=args.forceall, cores=args.cores)
    print(report(jobs, args.cores))


if __name__ == "__main__":
    sys.exit(main())

"""Evidence: the small outputs of finished runs, committed under ``evidence/<scale>/``, one figure and seed at
a time, from any machine; and the claims table rendered from them alone.

A *unit* is ``evidence/<scale>/<figure>/seed<s>/``: the files the figure's table read for that seed
(evaluation CSVs, learning curves), the small files beside what those jobs read (the runs' ``metrics.csv``
and curves, the collections' curves: never models or buffers), the task tables, each with its provenance
sidecar, and the jobs' Snakemake benchmark TSVs, under their paths in ``results/``. Its ``unit.json`` says
where it came from: commit, CPU, wall time, and per file its SHA-256, rule, wildcards and *digest*.

A job's digest is two hashes: ``code``, of the library modules it read (its rule's code param, recorded in
its provenance; ``paper_repro.digests``), each parsed and dumped without comments or docstrings, so a
comment edit changes nothing; and ``config``, of the
config slice it ran with (its provenance's ``config``), its rule and wildcards other than the seed. Seeds
pool only where every job they share has the same digest; a unit whose code digest differs from what the
current checkout gives is *stale*: listed, never pooled.

Rendering runs the workflow's own table, claims and plot rules (``--allowed-rules``) on a copy of the
workflow whose ``results/`` holds the pooled units, so the tables are the workflow's by construction.

    python -m paper_repro.evidence publish --figure fig4_dynamics_extrapolation --seed 0 [--results DIR]
    python -m paper_repro.evidence render            # evidence/ -> docs/results.md, docs/results/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from paper_repro import claims as prclaims
from paper_repro import config as prconfig
from paper_repro import io, plan
from paper_repro.digests import code_map, digest_of_map, source_digest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_PARTS = ("Snakefile", "config", "workflow", "src")
LARGE = (".pt", ".npz", ".zip", ".h5")  # models, buffers, data: never published
UNIT_KEYS = {"figure", "scale", "seed", "commit", "cpu", "published", "wall_time_s", "files"}


class EvidenceError(ValueError):
    """A unit that cannot be published or read as it is (names the file and what is wrong)."""


# --- digests ----------------------------------------------------------------------------------------------

def code_digest(paths: Iterable[str], root: Path = ROOT) -> str:
    """The digest of the library files ``paths`` (as a job lists them, relative to the repository) under ``root``."""
    return digest_of_map({rel: source_digest(root / rel) for rel in sorted(set(paths))})


def library_inputs(side: Mapping[str, Any]) -> list[str]:
    """The library files a job ran: its provenance's ``code`` map (the rule's code param); for files made
    before there was one, the library files among its ``inputs``."""
    if "code" in side:
        return sorted(side["code"])
    return sorted(p[p.index("src/paper_repro/"):] for p in side.get("inputs", {}) if "src/paper_repro/" in p)


def _own_config(value: Any, seed: str, inputs: frozenset[str]) -> Any:
    """``value`` without the entries ``seed: <the job's seed>`` (a run's config records its own seed) and without
    those whose value is the digest of one of the job's inputs (an AdMRL run names its seed's shared first task
    by its digest): an input is the job's data, checked through its own provenance, not its config."""
    if isinstance(value, dict):
        return {k: _own_config(v, seed, inputs) for k, v in value.items()
                if not (k == "seed" and str(v) == seed) and not (isinstance(v, str) and v in inputs)}
    if isinstance(value, list):
        return [_own_config(v, seed, inputs) for v in value]
    return value


def config_digest(side: Mapping[str, Any]) -> str:
    """The digest of what a job ran with, its seed aside: config slice (without the job's own seed and its inputs'
    digests), rule, other wildcards, scale."""
    wildcards = {k: v for k, v in (side.get("wildcards") or {}).items() if k != "seed"}
    seed = str((side.get("wildcards") or {}).get("seed"))
    inputs = frozenset(v for v in (side.get("inputs") or {}).values() if isinstance(v, str))
    key = {"config": _own_config(side.get("config"), seed, inputs), "rule": side.get("rule"), "wildcards": wildcards,
           "scale": side.get("scale")}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def job_digest(side: Mapping[str, Any], root: Path = ROOT) -> dict[str, str]:
    """A job's code digest (from the code map it ran with, else from the library under ``root``) and config digest."""
    code = digest_of_map(side["code"]) if "code" in side else code_digest(library_inputs(side), root)
    return {"code": code, "config": config_digest(side)}


# --- publish -----------------------------------------------------------------------------------------------

def _seed_of(path: str) -> int | None:
    m = re.search(r"(?:^|/)seed(\d+)(?:[./]|$)", path)
    return int(m.group(1)) if m else None


def _sidecar(workdir: Path, rel: str) -> dict[str, Any] | None:
    side = io.provenance_path(workdir / rel)
    return json.loads(side.read_text()) if side.exists() else None


def unit_files(workdir: Path, figure: str, seed: int) -> list[str]:
    """The files of a unit, relative to ``workdir`` (a workflow's directory, with ``results/``): what the
    figure's table read for ``seed`` (its provenance's inputs), the task tables, and the small files beside
    every large file those jobs read (a run's metrics and curves beside its model)."""
    table = _sidecar(workdir, f"results/tables/{figure}.csv")
    if table is None:
        raise EvidenceError(f"results/tables/{figure}.csv: no provenance sidecar (is the figure built in {workdir}?)")
    direct = [p for p in table.get("inputs", {}) if p.startswith("results/") and not p.startswith("results/tables/")
              and _seed_of(p) in (seed, None)]
    if not [p for p in direct if _seed_of(p) == seed]:
        raise EvidenceError(f"results/tables/{figure}.csv read nothing of seed {seed}")
    files = set(direct)
    for rel in direct:
        side = _sidecar(workdir, rel) or {}
        for upstream in side.get("inputs", {}):
            if upstream.startswith("results/") and upstream.endswith(LARGE) and _seed_of(upstream) in (seed, None):
                folder = (workdir / upstream).parent
                files |= {str(p.relative_to(workdir)) for p in folder.iterdir()
                          if p.is_file() and p.suffix in (".csv", ".tsv")}
    return sorted(files)


def _benchmarks(workdir: Path, jobs: Iterable[plan.Job], sides: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The benchmark TSVs (as the DAG ``jobs`` name them) of the jobs that wrote ``sides``' files, where they exist:
    a run's and, for the small files published beside its data, the collection's."""
    wrote = {job_key(s.get("rule"), s.get("wildcards")) for s in sides.values()}
    return sorted(j.benchmark for j in jobs if j.benchmark and job_key(j.rule, j.wildcards) in wrote
                  and (Path(workdir) / j.benchmark).is_file())


def git_commit(root: Path) -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def publish(workdir: Path, figure: str, seed: int, evidence: Path, *, scale: str | None = None,
            wall_time_s: float | None = None, code_root: Path | None = None,
            configfiles: list[Path] | tuple = ()) -> Path:
    """Copy the unit (``figure``, ``seed``) of the built ``workdir`` into ``evidence/<scale>/<figure>/seed<s>/``
    with its ``unit.json``; digests from the library under ``code_root`` (default: ``workdir``), which must be
    the code that ran: a file whose provenance names another commit is refused unless its job's code map (the
    digest of every file it ran) is the same at ``code_root``. Each job's params digest is
    the workflow's at ``workdir`` (with the run's extra ``configfiles``, if any changed a job's config)."""
    workdir, code_root = Path(workdir), Path(code_root or workdir)
    files = unit_files(workdir, figure, seed)
    sides = {rel: _sidecar(workdir, rel) for rel in files}
    missing = [rel for rel, side in sides.items() if side is None and not rel.endswith(".tsv")]
    if missing:
        raise EvidenceError(f"no provenance sidecar for {missing}")
    sides = {k: v for k, v in sides.items() if v is not None}
    scales = {s.get("scale") for s in sides.values()} - {None}
    scale = scale or (scales.pop() if len(scales) == 1 else None)
    if scale is None:
        raise EvidenceError(f"{figure} seed {seed}: the files' scales are {sorted(map(str, scales))}; pass --scale")
    commit = git_commit(code_root)
    stale = {s["git_describe"] for s in sides.values() if s.get("git_describe") and not _same_commit(s["git_describe"], commit)
             and not _same_code(s, code_root)}
    if stale:
        raise EvidenceError(f"{figure} seed {seed}: files were made at {sorted(stale)} by code that differs from "
                            f"{code_root}'s ({commit[:12]}): publish from a checkout of the commit that ran them")
    jobs = figure_jobs(workdir, figure, scale, seed + 1, configfiles)
    files += _benchmarks(workdir, jobs, sides)
    params = {job_key(j.rule, j.wildcards): plan.params_digest(j.params) for j in jobs}
    dest = Path(evidence) / scale / figure / f"seed{seed}"
    if dest.exists():
        shutil.rmtree(dest)
    record = {}
    for rel in sorted(set(files)):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workdir / rel, target)
        entry = {"sha256": io.file_sha256(workdir / rel)}
        if rel in sides:
            shutil.copy2(io.provenance_path(workdir / rel), io.provenance_path(target))
            side = sides[rel]
            entry.update(rule=side.get("rule"), wildcards=side.get("wildcards"), digest=job_digest(side, code_root),
                         params=params.get(job_key(side.get("rule"), side.get("wildcards"))),
                         library=library_inputs(side),
                         sources=side.get("code") or {lib: source_digest(code_root / lib) for lib in library_inputs(side)})
        record[rel] = entry
    bench = [pd.read_csv(workdir / rel, sep="\t") for rel in files if rel.endswith(".tsv")]
    unit = {"figure": figure, "scale": scale, "seed": seed, "commit": commit, "cpu": prconfig.cpu_model(),
            "published": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": wall_time_s, "job_time_s": float(sum(b["s"].sum() for b in bench)) if bench else None,
            "files": record}
    io.save_json(dest / "unit.json", unit)
    return dest


def _same_code(side: dict[str, Any], code_root: Path) -> bool:
    """A file's job ran the code at ``code_root``: every file of its recorded code map has the same digest there
    (a file made at an earlier commit whose job's closure has not changed since; DESIGN.md's rule for reruns)."""
    code = side.get("code")
    try:
        return bool(code) and code_map(code, code_root) == code
    except FileNotFoundError:
        return False


def _same_commit(describe: str, commit: str) -> bool:
    """``git describe --always --dirty`` output (a tag-g<hash> or a bare hash, maybe -dirty) names ``commit``."""
    m = re.search(r"(?:^|-g)([0-9a-f]{7,40})(?:-dirty)?$", describe)
    return bool(m) and commit.startswith(m.group(1))


# --- read, check, pool -----------------------------------------------------------------------------------------

def load_units(evidence: Path, scale: str) -> list[dict[str, Any]]:
    units = []
    for path in sorted((Path(evidence) / scale).glob("*/seed*/unit.json")):
        unit = json.loads(path.read_text())
        unit["path"] = path.parent
        units.append(unit)
    return units


def check_unit(unit: Mapping[str, Any]) -> list[str]:
    """What is wrong with a unit: keys missing, a file absent, changed or without its sidecar, a digest that its
    sidecar does not give."""
    problems = [f"{unit['path']}: unit.json lacks {sorted(UNIT_KEYS - set(unit))}"] if UNIT_KEYS - set(unit) else []
    for rel, entry in unit.get("files", {}).items():
        path = Path(unit["path"]) / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        if io.file_sha256(path) != entry["sha256"]:
            problems.append(f"{path}: changed since it was published")
        if "digest" in entry:
            side_path = io.provenance_path(path)
            if not side_path.is_file():
                problems.append(f"{path}: no provenance sidecar")
                continue
            side = json.loads(side_path.read_text())
            if config_digest(side) != entry["digest"]["config"] or library_inputs(side) != entry["library"]:
                problems.append(f"{path}: its digest does not match its provenance")
            if digest_of_map(entry["sources"]) != entry["digest"]["code"] or sorted(entry["sources"]) != entry["library"]:
                problems.append(f"{path}: its code digest does not match its sources")
        elif not rel.endswith(".tsv"):
            problems.append(f"{path}: no digest")
    return problems


def job_key(rule: str, wildcards: Mapping[str, Any] | None) -> tuple[str, tuple[tuple[str, str], ...]]:
    return rule, tuple(sorted((k, str(v)) for k, v in (wildcards or {}).items()))


def seeds_config(paper: str, seeds: int) -> dict[str, Any]:
    """The config of ``seeds`` pooled seeds of ``paper``: seeds 0..n-1 meta-trained and, where a figure fine-tunes
    (MACAW Table 1; ``finetune.seeds``, 1 at the quick scale), every one of them fine-tuned."""
    return {"seeds": {paper: seeds}, "finetune": {"seeds": seeds}}


def figure_jobs(workdir: Path, figure: str, scale: str, seeds: int,
                configfiles: list[Path] | tuple = ()) -> list[plan.Job]:
    """Every job of ``figure`` with ``seeds`` seeds, as the workflow at ``workdir`` defines them (Snakemake's
    DAG, nothing runs)."""
    paper = prconfig.load_yaml(Path(workdir) / "config" / "config.yaml")["figures"][figure]["paper"]
    return plan.dag_jobs([f"results/figures/{figure}.pdf"], workdir=workdir, forceall=True, configfiles=configfiles,
                         config={"scale": scale, **seeds_config(paper, seeds)})


def figure_params(workdir: Path, figure: str, scale: str, seeds: int,
                  configfiles: list[Path] | tuple = ()) -> dict[tuple, str]:
    """(rule, wildcards) -> digest of the job's params (its config slice, the code map aside) for every job of
    ``figure`` with ``seeds`` seeds (:func:`figure_jobs`)."""
    return {job_key(j.rule, j.wildcards): plan.params_digest(j.params)
            for j in figure_jobs(workdir, figure, scale, seeds, configfiles)}


def changed_config(unit: Mapping[str, Any], current: Mapping[tuple, str] | None) -> list[str]:
    """The rules of the unit's jobs whose params (config slice) differ from ``current``'s (figure_params of
    today's workflow): the unit is stale where this is not empty. Jobs published without params, or that the
    workflow no longer has, are not compared."""
    if not current:
        return []
    return sorted({entry["rule"] for entry in unit["files"].values() if entry.get("params")
                   and current.get(job_key(entry["rule"], entry.get("wildcards"))) not in (None, entry["params"])})


def stale_reasons(unit: Mapping[str, Any], root: Path = ROOT, current: Mapping[tuple, str] | None = None) -> list[str]:
    """What changed since the unit ran: library files, and the config of its jobs' rules."""
    return changed_library(unit, root) + [f"the config of {rule}" for rule in changed_config(unit, current)]


def changed_library(unit: Mapping[str, Any], root: Path = ROOT) -> list[str]:
    """The library files whose code (comments and docstrings aside) differs between the unit's jobs and ``root``:
    the unit is stale where this is not empty."""
    now = {}
    for entry in unit["files"].values():
        for lib in entry.get("sources", {}):
            if lib not in now:
                now[lib] = source_digest(root / lib) if (root / lib).is_file() else None
    return sorted({lib.removeprefix("src/paper_repro/") for entry in unit["files"].values()
                   for lib, digest in entry.get("sources", {}).items() if now[lib] != digest})


def _kinds(unit: Mapping[str, Any]) -> dict[tuple, dict[str, str]]:
    """A unit's jobs, seed aside: (rule, other wildcards) -> digest."""
    out = {}
    for entry in unit["files"].values():
        if "digest" in entry:
            wildcards = tuple(sorted((k, str(v)) for k, v in (entry.get("wildcards") or {}).items() if k != "seed"))
            out[(entry["rule"], wildcards)] = entry["digest"]
    return out


def _consistent(units: list[dict[str, Any]], why: str = "") -> tuple[list[dict], list[tuple[dict, str]]]:
    """Seeds 0..n-1 whose shared jobs ran with the same digests, and the others with the reason."""
    pooled, left = [], []
    for unit in sorted(units, key=lambda u: u["seed"]):
        if pooled:
            ref, mine = _kinds(pooled[0]), _kinds(unit)
            differ = [k for k in set(ref) & set(mine) if ref[k] != mine[k]]
            if differ:
                left.append((unit, f"{why}its {differ[0][0]} job ran with other code or config than seed "
                                   f"{pooled[0]['seed']}'s"))
                continue
        if unit["seed"] != len(pooled):
            left.append((unit, f"{why}seed {len(pooled)} is not published yet"))
            continue
        pooled.append(unit)
    return pooled, left


def pool(units: list[dict[str, Any]], root: Path = ROOT,
         current: Mapping[tuple, str] | None = None) -> tuple[list[dict], list[tuple[dict, str]], bool]:
    """The units of one figure drawn together, the others with the reason, and whether the drawn ones are
    stale. Units of the current code and config (their code digests equal ``root``'s, their jobs' params
    ``current``'s) pool where their shared jobs ran alike, seeds 0..n-1; where there are none, the stale units
    do the same, and the figure is marked stale: a verdict from older code or config is shown as such, never
    mixed with the current one's."""
    changed = [stale_reasons(u, root, current) for u in units]
    fresh = [u for u, c in zip(units, changed) if not c]
    stale = [(u, c) for u, c in zip(units, changed) if c]
    pooled, left = _consistent(fresh)
    if pooled:
        return pooled, left + [(u, f"stale: {', '.join(c)} changed since commit {u['commit'][:12]}")
                               for u, c in stale], False
    stale = [u for u, _ in stale]
    pooled, more = _consistent(stale, "stale, and ")
    return pooled, left + more, bool(pooled)


# --- render --------------------------------------------------------------------------------------------------

def copy_workflow(dest: Path, root: Path = ROOT) -> Path:
    """Copy what the workflow reads (not results/ or .snakemake/) from ``root`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        src = root / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def _snakemake(workdir: Path, *args: str) -> None:
    cmd = [os.path.abspath(sys.executable), "-m", "snakemake", "--cores", "1", "--quiet", "rules", *args]
    out = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if out.returncode:
        raise EvidenceError(f"rendering failed in {workdir}: {' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


def render_figure(units: list[dict[str, Any]], figure: str, scale: str, out: Path, root: Path = ROOT) -> pd.DataFrame:
    """Rebuild ``figure``'s table, claims and PNG from ``units`` (pooled seeds 0..n-1) with the workflow's own
    rules, into ``out``/{tables,claims,figures}; returns the claims."""
    paper = prconfig.load_yaml(root / "config" / "config.yaml")["figures"][figure]["paper"]
    with tempfile.TemporaryDirectory(prefix="paper-repro-render-") as tmp:
        work = copy_workflow(Path(tmp), root)
        for unit in units:
            for rel in unit["files"]:
                target = work / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(unit["path"]) / rel, target)
                side = io.provenance_path(Path(unit["path"]) / rel)
                if side.exists():
                    shutil.copy2(side, io.provenance_path(target))
        (work / "render.yaml").write_text(json.dumps({"scale": scale, **seeds_config(paper, len(units))}))
        targets = [f"results/tables/{figure}.csv", f"results/claims/{figure}.csv", f"results/figures/{figure}.png"]
        _snakemake(work, "--configfile", "config/config.yaml", "render.yaml", "--allowed-rules",
                   f"table_{figure}", f"claims_{figure}", f"plot_{figure}", "--", *targets)
        for kind, rel in zip(("tables", "claims", "figures"), targets):
            (out / kind).mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / rel, out / kind / Path(rel).name)
        return pd.read_csv(work / targets[1])


FINDING_KEYS = {"seeds", "commit", "text"}


def load_findings(evidence: Path, scale: str, registry: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``evidence/<scale>/findings.yaml``: what a look at the diagnostics found behind a claim's verdict (a
    budget, a departure, a bug), claim id -> {seeds, commit, text}, written for the units it names (their
    seeds and commit); ``render`` puts each beside its claim and says when the units pooled now differ."""
    path = Path(evidence) / scale / "findings.yaml"
    found = prconfig.load_yaml(path) if path.is_file() else {}
    for cid, entry in (found or {}).items():
        if cid not in registry:
            raise EvidenceError(f"{path}: {cid!r} is not a claim of config/claims.yaml")
        if not isinstance(entry, dict) or set(entry) != FINDING_KEYS:
            raise EvidenceError(f"{path}: {cid} needs exactly the keys {sorted(FINDING_KEYS)}")
    return found or {}


def render(evidence: Path = ROOT / "evidence", docs: Path = ROOT / "docs", scale: str = "quick",
           root: Path = ROOT, costs: bool = True) -> pd.DataFrame:
    """``docs/results.md`` and ``docs/results/`` (tables, claims, PNG figures, ``claims.csv``) from
    ``evidence/<scale>/`` alone: every claim of the registry with its verdict, or "not run yet"; and the
    README's figures table (``costs``: with the runtime requests' estimates, from Snakemake's DAG)."""
    registry = prclaims.load_registry(root / "config" / "claims.yaml")
    units = load_units(evidence, scale)
    problems = [p for u in units for p in check_unit(u)]
    if problems:
        raise EvidenceError("evidence does not check:\n" + "\n".join(problems))
    # Built aside and swapped in at the end: a render that fails half-way leaves the published results as they were
    final, out = docs / "results", docs / ".results.partial"
    if out.exists():
        shutil.rmtree(out)
    rows, notes = [], []
    for figure in sorted({u["figure"] for u in units}):
        mine = [u for u in units if u["figure"] == figure]
        try:
            current = figure_params(root, figure, scale, max(u["seed"] for u in mine) + 1)
        except Exception as e:  # a figure whose DAG needs what this machine lacks (Omniglot's sets)
            current = None
            notes.append(f"- `{figure}`: its config was not compared with today's ({type(e).__name__}: {e})")
        pooled, left, stale = pool(mine, root, current)
        notes += [f"- `{figure}` seed {u['seed']} (commit {u['commit'][:12]}): not pooled, {why}" for u, why in left]
        if not pooled:
            continue
        table = render_figure(pooled, figure, scale, out, root)
        commits = ", ".join(sorted({u["commit"][:12] for u in pooled}))
        changed = sorted({f for u in pooled for f in stale_reasons(u, root, current)}) if stale else []
        rows.append(table.assign(commit=commits, seeds=",".join(str(u["seed"]) for u in pooled),
                                 stale=", ".join(changed)))
    claims = (pd.concat(rows, ignore_index=True) if rows
              else pd.DataFrame(columns=[*prclaims.COLUMNS, "commit", "seeds", "stale"]))
    missing = [{"claim": cid, "paper": s["paper"], "figure": s["figure"], "scale": scale,
                "verdict": "not run yet", "reason": s.get("requires", "")}
               for cid, s in registry.items() if cid not in set(claims["claim"])]
    claims = pd.concat([claims, pd.DataFrame(missing)], ignore_index=True)
    order = {cid: i for i, cid in enumerate(registry)}
    claims = claims.sort_values("claim", key=lambda c: c.map(order), kind="stable")
    out.mkdir(parents=True, exist_ok=True)
    claims.to_csv(out / "claims.csv", index=False)
    text = results_markdown(claims, registry, units, notes, scale, load_findings(evidence, scale, registry))
    readme = docs.parent / "README.md"
    figures = figures_markdown(claims, units, root, costs) if readme.is_file() else None
    if final.exists():
        shutil.rmtree(final)
    out.rename(final)
    io.write_text(docs / "results.md", text)
    if figures is not None:
        replace_between(readme, FIGURES_START, FIGURES_END, figures)
    return claims


FIGURES_START, FIGURES_END = "<!-- figures table: generated by make results -->", "<!-- end of figures table -->"


def replace_between(path: Path, start: str, end: str, body: str) -> None:
    """Rewrite the part of ``path`` between the markers ``start`` and ``end`` (where it has both)."""
    text = path.read_text()
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    path.write_text(f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}")


def _duration(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def figure_dags(figures: list[str], config: Mapping[str, Any], root: Path = ROOT) -> dict[str, Any]:
    """Each figure's jobs (forceall) at ``config``, from one DAG of them all; a figure whose DAG cannot be built
    here (Omniglot's sets) -> the exception. Where the whole DAG fails, each half is tried (a few DAGs, not one
    per figure)."""
    try:
        jobs = plan.dag_jobs([f"results/figures/{f}.pdf" for f in figures], workdir=root, forceall=True, config=config)
    except Exception as e:  # noqa: BLE001 - reported in the table
        if len(figures) == 1:
            return {figures[0]: e}
        half = len(figures) // 2
        return {**figure_dags(figures[:half], config, root), **figure_dags(figures[half:], config, root)}
    return {f: plan.upstream(jobs, f"results/figures/{f}.pdf") for f in figures}


def figure_costs(figures: Mapping[str, Mapping[str, Any]], root: Path = ROOT) -> dict[str, dict[str, str]]:
    """From the runtime requests (plan), per figure: the quick scale's wall time for one seed on 2 and on 16
    cores, and the paper scale's requested core-hours; why not, where the DAG cannot be built here."""
    names = list(figures)
    quick = figure_dags(names, {"scale": "quick", "seeds": {f["paper"]: 1 for f in figures.values()}}, root)
    full = figure_dags(names, {"scale": "paper"}, root)
    out = {}
    for name in names:
        failed = next((d for d in (quick[name], full[name]) if isinstance(d, Exception)), None)
        if failed is not None:
            out[name] = {"quick": f"not planned here ({type(failed).__name__})", "paper": ""}
            continue
        hours = sum(j.runtime_min * j.threads for j in full[name]) / 60
        out[name] = {"quick": f"{_duration(plan.wall_time(quick[name], 2))} / "
                              f"{_duration(plan.wall_time(quick[name], 16))}", "paper": f"{hours:,.0f}"}
    return out


def figures_markdown(claims: pd.DataFrame, units: list[dict], root: Path = ROOT, costs: bool = True) -> str:
    """The README's figures at a glance: each figure's claims with their verdicts, its measured quick wall time
    for one seed (the longest of the latest commit's published units: the first seed's is from an empty
    results/), and the runtime requests' estimates."""
    figures = prconfig.load_yaml(root / "config" / "config.yaml")["figures"]
    lines = ["| paper | figure (`results/figures/<name>.pdf`) | claims: verdict ([docs/results.md](docs/results.md)) | "
             "quick, 1 seed, 2 cores: measured | quick, 1 seed, by runtime requests (upper bound): 2 / 16 cores | "
             "paper: core-hours requested |",
             "| --- | --- | --- | --- | --- | --- |"]
    estimates = figure_costs(figures, root) if costs else {name: {"quick": "", "paper": ""} for name in figures}
    for name, fig in figures.items():
        verdicts = []
        for cid, g in claims[claims["figure"] == name].groupby("claim", sort=False):
            stale = isinstance(g["stale"].iloc[0], str) and bool(g["stale"].iloc[0]) if "stale" in g else False
            verdict = prclaims.claim_verdict(list(g["verdict"])) if list(g["verdict"]) != ["not run yet"] else "not run yet"
            verdicts.append(f"{cid} **{verdict}**{' (stale)' if stale else ''}" if verdict != "not run yet"
                            else f"{cid} not run yet")
        timed = [u for u in units if u["figure"] == name and u.get("wall_time_s")]
        commit = max(timed, key=lambda u: u["published"])["commit"] if timed else None  # the latest code's units
        longest = max((u for u in timed if u["commit"] == commit), key=lambda u: u["wall_time_s"], default=None)
        measured = (f"{_duration(longest['wall_time_s'] / 60)} ({longest['cpu']}, `{longest['commit'][:7]}`)"
                    if longest else "")
        cost = estimates[name]
        lines.append(f"| {fig['paper']} | `{name}` | {', '.join(verdicts) or '—'} | {measured} | {cost['quick']} | "
                     f"{cost['paper']} |")
    return "\n".join(lines)


def finding_markdown(finding: Mapping[str, Any], rows: pd.DataFrame) -> str:
    """A claim's finding, from the units it names; flagged where those pooled now (``rows``' seeds and
    commit) differ."""
    seeds = ",".join(str(s) for s in finding["seeds"])
    text = " ".join(str(finding["text"]).split())
    line = f"**Finding** (seeds {seeds.replace(',', ', ')} at `{finding['commit']}`): {text}"
    now_seeds, now_commit = str(rows["seeds"].iloc[0]), str(rows["commit"].iloc[0])
    if now_seeds != seeds or not now_commit.startswith(str(finding["commit"])):
        line += (f" *Written for other units than the ones pooled now (seeds {now_seeds.replace(',', ', ')} at "
                 f"`{now_commit}`): to be checked again.*")
    return line


def _fmt(x: Any) -> str:
    return "" if pd.isna(x) else f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def results_markdown(claims: pd.DataFrame, registry: Mapping[str, dict], units: list[dict], notes: list[str],
                     scale: str, findings: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The generated page: one line per claim, then its contrasts and the finding behind its verdict (where one
    was written, flagged where the units pooled now are not those it was written for), the units behind them
    and what was left out."""
    lines = [
        "# Results: the papers' claims at the %s scale" % scale, "",
        "Generated by `python -m paper_repro.evidence render` from `evidence/` alone (never edit by hand).",
        "Each claim of `config/claims.yaml` is tested by contrasts on its figure's rows: the estimate, its 95%",
        "interval (a bootstrap over seeds and test tasks; Student's t over the seeds where only the seeds vary:",
        "a worst case over tasks, or one task) and the verdict (`paper_repro.claims`).", "",
        "| claim | paper | figure | verdict | contrasts holding | seeds × tasks | commit |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cid, g in claims.groupby("claim", sort=False):
        spec = registry[cid]
        verdicts = list(g["verdict"])
        if verdicts == ["not run yet"]:
            why = f" ({g['reason'].iloc[0]})" if isinstance(g["reason"].iloc[0], str) and g["reason"].iloc[0] else ""
            lines.append(f"| {cid} | {spec['paper']} | {spec['figure']} | not run yet{why} | | | |")
            continue
        size = f"{int(g['n_seeds'].max())} × {int(g['n_tasks'].max())}" if g["n_seeds"].notna().any() else ""
        stale = g["stale"].iloc[0] if isinstance(g["stale"].iloc[0], str) and g["stale"].iloc[0] else ""
        flag = f" (stale: {stale} changed since)" if stale else ""
        lines.append(f"| {cid} | {spec['paper']} | {spec['figure']} | **{prclaims.claim_verdict(verdicts)}**{flag} | "
                     f"{verdicts.count('holds')}/{len(verdicts)} | {size} | {g['commit'].iloc[0]} |")
    lines += ["", "## Contrasts", ""]
    for cid, g in claims.groupby("claim", sort=False):
        if list(g["verdict"]) == ["not run yet"]:
            continue
        lines += [f"### {cid}: {registry[cid]['claim']}", "",
                  f"Paper: {registry[cid].get('paper_value') or '—'}. Figure: `docs/results/figures/{registry[cid]['figure']}.png`.", "",
                  "| contrast | estimate [95% interval] | seeds × tasks | verdict |", "| --- | --- | --- | --- |"]
        for r in g.itertuples():
            est = f"{_fmt(r.estimate)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if pd.notna(r.estimate) else ""
            size = f"{int(r.n_seeds)} × {int(r.n_tasks)}" if pd.notna(r.n_seeds) else ""
            why = f" ({r.reason})" if isinstance(r.reason, str) and r.reason else ""
            lines.append(f"| {r.part} | {est} | {size} | {r.verdict}{why} |")
        lines.append("")
        if cid in (findings or {}):
            lines += [finding_markdown(findings[cid], g), ""]
    lines += ["## Units", "", "| figure | seed | commit | CPU | wall time | jobs' time |", "| --- | --- | --- | --- | --- | --- |"]
    for u in sorted(units, key=lambda u: (u["figure"], u["seed"])):
        wall = f"{u['wall_time_s'] / 60:.0f} min" if u.get("wall_time_s") else ""
        jobs = f"{u['job_time_s'] / 60:.0f} min" if u.get("job_time_s") else ""
        lines.append(f"| {u['figure']} | {u['seed']} | {u['commit'][:12]} | {u['cpu']} | {wall} | {jobs} |")
    if notes:
        lines += ["", "## Not pooled", "", *notes]
    return "\n".join(lines) + "\n"


# --- command line -------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m paper_repro.evidence", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="copy a built figure's unit (one seed) into evidence/")
    pub.add_argument("--figure", required=True)
    pub.add_argument("--seed", type=int, required=True)
    pub.add_argument("--workdir", type=Path, default=Path.cwd(), help="the workflow directory that built it")
    pub.add_argument("--evidence", type=Path, default=ROOT / "evidence")
    pub.add_argument("--scale")
    pub.add_argument("--wall-time-s", type=float, help="the build's wall time from an empty results/, if measured")
    pub.add_argument("--configfile", nargs="*", default=[], type=Path, help="extra config files the run was given")
    ren = sub.add_parser("render", help="docs/results.md and docs/results/ from evidence/ alone")
    ren.add_argument("--evidence", type=Path, default=ROOT / "evidence")
    ren.add_argument("--docs", type=Path, default=ROOT / "docs")
    ren.add_argument("--scale", default="quick")
    args = parser.parse_args(argv)
    if args.command == "publish":
        print(publish(args.workdir, args.figure, args.seed, args.evidence, scale=args.scale, wall_time_s=args.wall_time_s,
                      configfiles=args.configfile))
    else:
        claims = render(args.evidence, args.docs, args.scale)
        print(prclaims.summary(claims[claims["verdict"] != "not run yet"]).to_string(index=False))


if __name__ == "__main__":
    main()

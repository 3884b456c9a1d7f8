"""Every result file of a smoke run carries its provenance, and a figure's table names its runs.

Walks ``results/`` after one smoke-scale run (``smoke_run``) of everything that exists, so a
stage added to the workflow is checked here without a change to this file.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from paper_repro import io

from smoke_run import smoke_results

# What every sidecar must say: the code (git describe), the software (Python, key packages),
# the resolved config slice and its hash, the seeds, the host and the device.
REQUIRED = ("git_describe", "python", "packages", "config", "config_hash", "seeds", "host", "device")
KEY_PACKAGES = ("torch", "numpy", "snakemake")
# Bookkeeping of the workflow itself, not results (results/logs/, results/<scale>/logs/, ...).
NOT_RESULTS = {"logs", "benchmarks"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    return smoke_results(tmp_path_factory)[0]


def result_files(workdir: Path) -> list[Path]:
    results = workdir / "results"
    files = []
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(results)
        if not path.is_file() or NOT_RESULTS & set(rel.parts[:2]):
            continue
        if path.name.endswith(".provenance.json") or path.name.startswith("."):
            continue
        files.append(path)
    return files


def test_no_temporary_files_left(smoke):
    """atomic_path renames every output into place: no `.<name>.*.tmp*` survives a run."""
    leftovers = [p for p in (smoke / "results").rglob(".*") if ".tmp" in p.name]
    assert leftovers == []


def test_every_result_has_a_complete_sidecar(smoke):
    files = result_files(smoke)
    assert files, "the smoke run wrote no results"
    head = subprocess.run(
        ["git", "describe", "--always", "--dirty", "--tags"], cwd=smoke, capture_output=True, text=True, check=True
    ).stdout.strip()
    problems = []
    for path in files:
        rel = path.relative_to(smoke)
        side = io.provenance_path(path)
        if not side.exists():
            problems.append(f"{rel}: no {side.name}")
            continue
        prov = io.load_json(side)
        missing = [k for k in REQUIRED if k not in prov or prov[k] in (None, "", [])]
        if missing:
            problems.append(f"{rel}: sidecar lacks {missing}")
            continue
        if prov["config_hash"] != io.config_hash(prov["config"]):
            problems.append(f"{rel}: config_hash {prov['config_hash']} is not the hash of its config")
        if prov["git_describe"] != head:
            problems.append(f"{rel}: git_describe {prov['git_describe']!r}, the checkout is at {head!r}")
        absent = [p for p in KEY_PACKAGES if prov["packages"].get(p, "not installed") == "not installed"]
        if absent:
            problems.append(f"{rel}: package versions missing for {absent}")
    assert not problems, "results without full provenance:\n" + "\n".join(problems)


def test_figure_tables_name_the_runs_they_aggregate(smoke):
    tables = sorted((smoke / "results" / "tables").glob("*.csv"))
    assert tables, "the smoke run wrote no figure table (results/tables/*.csv)"
    problems = []
    for table in tables:
        prov = io.load_json(io.provenance_path(table)) if io.provenance_path(table).exists() else {}
        runs = prov.get("runs") or prov.get("inputs")
        if not runs:
            problems.append(f"{table.name}: provenance has no 'runs' (the result files it aggregated)")
            continue
        missing = [r for r in runs if not (smoke / r).exists()]
        if missing:
            problems.append(f"{table.name}: aggregated runs that do not exist: {missing[:5]}")
    assert not problems, "\n".join(problems)


def test_atomic_path_clears_a_killed_writers_temporary(tmp_path):
    """A SIGKILLed writer leaves its temporary behind; the next write of the same file removes it."""
    target = tmp_path / "train.csv"
    stale = tmp_path / ".train.csv.abc123.tmp.csv"
    other = tmp_path / ".test.csv.abc123.tmp.csv"  # another file's temporary is not ours to remove
    stale.write_text("")
    other.write_text("")
    io.write_text(target, "a,b\n1,2\n")
    assert target.read_text() == "a,b\n1,2\n"
    assert not stale.exists()
    assert other.exists()

"""evidence/: digests that ignore comments, pooling only what ran alike, the committed folder's checks, and
rendering from evidence alone giving the workflow's own tables."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from paper_repro import claims as prclaims
from paper_repro import evidence
from paper_repro import config as prconfig

ROOT = Path(__file__).resolve().parents[1]


def test_source_digest_ignores_comments_and_docstrings(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Module."""\n\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n')
    b.write_text('"""Another text."""\n# a comment\n\ndef f(x):\n    return x + 1\n')
    c.write_text('def f(x):\n    return x + 2\n')
    assert evidence.source_digest(a) == evidence.source_digest(b) != evidence.source_digest(c)


def _unit(seed, code="c", config="k", path=Path("."), commit="abc", params="p"):
    entry = {"sha256": "0", "rule": "evaluate_mier", "wildcards": {"experiment": "e", "seed": str(seed)},
             "digest": {"code": code, "config": config}, "params": params, "library": ["src/paper_repro/evaluate.py"],
             "sources": {"src/paper_repro/evaluate.py": code}}
    return {"figure": "f", "scale": "quick", "seed": seed, "commit": commit, "path": path,
            "files": {f"results/quick/eval/e/mier/seed{seed}.csv": entry}}


def test_seeds_pool_only_where_their_jobs_ran_alike(monkeypatch):
    monkeypatch.setattr(evidence, "source_digest", lambda path: "c")  # nothing is stale
    pooled, left, stale = evidence.pool([_unit(0), _unit(1), _unit(2, config="other")])
    assert [u["seed"] for u in pooled] == [0, 1] and not stale
    assert left[0][0]["seed"] == 2 and "other code or config" in left[0][1]
    pooled, left, _ = evidence.pool([_unit(1)])  # the workflow draws seeds 0..n-1
    assert not pooled and "seed 0 is not published yet" in left[0][1]


def test_a_unit_of_older_code_is_stale(monkeypatch):
    """Stale units are never pooled with the current code's; alone, they are drawn and marked stale."""
    monkeypatch.setattr(evidence, "source_digest", lambda path: "new")
    pooled, left, stale = evidence.pool([_unit(0, code="new"), _unit(1, code="old")])
    assert [u["seed"] for u in pooled] == [0] and not stale and left[0][1].startswith("stale: evaluate.py changed")
    pooled, left, stale = evidence.pool([_unit(0, code="old"), _unit(1, code="old")])
    assert [u["seed"] for u in pooled] == [0, 1] and stale and not left


def test_a_unit_of_an_older_config_is_stale(monkeypatch):
    """A unit whose job's params differ from what today's workflow gives that job is stale, naming the rule;
    a job the workflow no longer has, or one published without params, is not compared."""
    monkeypatch.setattr(evidence, "source_digest", lambda path: "c")
    current = {evidence.job_key("evaluate_mier", {"experiment": "e", "seed": str(s)}): "p" for s in (0, 1)}
    pooled, left, stale = evidence.pool([_unit(0), _unit(1, params="older")], current=current)
    assert [u["seed"] for u in pooled] == [0] and not stale
    assert left[0][1].startswith("stale: the config of evaluate_mier changed")
    pooled, left, stale = evidence.pool([_unit(0, params="older")], current=current)
    assert stale and evidence.stale_reasons(pooled[0], current=current) == ["the config of evaluate_mier"]
    assert not evidence.changed_config(_unit(0, params=None), current)
    assert not evidence.changed_config(_unit(0, params="older"), {})


def test_committed_evidence_checks():
    """Every published unit: its keys, every file present and unchanged with its provenance, digests that its
    provenance gives, a figure of the config."""
    figures = prconfig.load_yaml(ROOT / "config" / "config.yaml")["figures"]
    units = [u for scale in ("smoke", "quick", "paper") for u in evidence.load_units(ROOT / "evidence", scale)]
    assert units, "evidence/ holds no unit"
    for unit in units:
        assert not evidence.check_unit(unit), evidence.check_unit(unit)
        assert unit["figure"] in figures and unit["path"].name == f"seed{unit['seed']}"
        assert any(rel.endswith(".tsv") for rel in unit["files"]), f"{unit['path']}: no benchmark"
        assert not [rel for rel in unit["files"] if rel.endswith(evidence.LARGE)], f"{unit['path']}: a model or buffer"


def test_a_changed_file_fails_the_check(tmp_path):
    units = evidence.load_units(ROOT / "evidence", "quick")
    if not units:
        pytest.fail("evidence/quick holds no unit")
    copy = tmp_path / "u"
    shutil.copytree(units[0]["path"], copy)
    unit = {**json.loads((copy / "unit.json").read_text()), "path": copy}
    rel = next(r for r in unit["files"] if r.endswith(".csv"))
    with open(copy / rel, "a") as f:
        f.write("\n")
    assert any("changed since it was published" in p for p in evidence.check_unit(unit))


@pytest.mark.workflow
def test_render_from_evidence_gives_the_workflows_own_table(tmp_path_factory, tmp_path):
    """Publish MIER Fig. 4's seed 0 from the smoke run, render from that evidence alone: the table and the
    claims equal the smoke run's own."""
    from smoke_run import smoke_results

    workdir, _ = smoke_results(tmp_path_factory)
    figure = "fig4_dynamics_extrapolation"
    unit = evidence.publish(workdir, figure, 0, tmp_path / "evidence", code_root=workdir)
    record = json.loads((unit / "unit.json").read_text())
    assert record["scale"] == "smoke" and any(r.endswith("metrics.csv") for r in record["files"])
    # every published job's benchmark, the task tables' (under results/benchmarks/, not the scale's) included
    tsvs = {r for r in record["files"] if r.endswith(".tsv")}
    assert any(r.startswith("results/benchmarks/task_tables/") for r in tsvs)
    assert any("/benchmarks/metatrain_mier/" in r for r in tsvs) and any("/benchmarks/evaluate_mier/" in r for r in tsvs)
    claims = evidence.render(tmp_path / "evidence", tmp_path / "docs", "smoke", root=workdir)
    ours = pd.read_csv(tmp_path / "docs" / "results" / "tables" / f"{figure}.csv")
    pd.testing.assert_frame_equal(ours, pd.read_csv(workdir / "results" / "tables" / f"{figure}.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "docs" / "results" / "claims" / f"{figure}.csv"),
                                  pd.read_csv(workdir / "results" / "claims" / f"{figure}.csv"))
    assert set(claims.loc[claims.figure == figure, "claim"]) == {"M1", "M2"}
    assert (claims.loc[claims.figure != figure, "verdict"] == "not run yet").all()
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "| M1 | MIER | fig4_dynamics_extrapolation |" in text and "not run yet" in text
    assert (tmp_path / "docs" / "results" / "figures" / f"{figure}.png").stat().st_size > 0


def test_the_figures_table_gives_each_figure_its_verdicts_and_measured_time():
    figures = prconfig.load_yaml(ROOT / "config" / "config.yaml")["figures"]
    claims = pd.DataFrame([
        {"claim": "M1", "figure": "fig4_dynamics_extrapolation", "verdict": "holds", "stale": ""},
        {"claim": "M1", "figure": "fig4_dynamics_extrapolation", "verdict": "holds", "stale": ""},
        {"claim": "M2", "figure": "fig4_dynamics_extrapolation", "verdict": "not shown", "stale": "evaluate.py"},
        {"claim": "M3", "figure": "fig3_reward_extrapolation", "verdict": "not run yet", "stale": None}])
    units = [{"figure": "fig4_dynamics_extrapolation", "wall_time_s": 2746.0, "cpu": "AMD EPYC",
              "commit": "1d15bb41034009d55acce20429b193f5526f2c23", "published": "2026-12-07T02:55:00+00:00"}]
    lines = evidence.figures_markdown(claims, units, costs=False).splitlines()
    assert len(lines) == 2 + len(figures)
    fig4 = next(line for line in lines if "`fig4_dynamics_extrapolation`" in line)
    assert "M1 **holds**, M2 **not shown** (stale)" in fig4 and "46 min (AMD EPYC, `1d15bb4`)" in fig4
    assert "M3 not run yet" in next(line for line in lines if "`fig3_reward_extrapolation`" in line)


def test_a_runs_own_seed_is_not_part_of_its_config_digest():
    """Seeds pool: the config a run records holds its own seed, which the digest leaves out (other seeds stay)."""
    def side(seed, task_seed=0):
        return {"rule": "metatrain_mier", "wildcards": {"experiment": "e", "seed": str(seed)}, "scale": "quick",
                "config": {"experiment": {"seed": seed, "task_seed": task_seed}, "epochs": 3}}

    assert evidence.config_digest(side(0)) == evidence.config_digest(side(1))
    assert evidence.config_digest(side(0)) != evidence.config_digest(side(0, task_seed=1))


def test_an_inputs_digest_in_a_runs_config_is_not_part_of_its_config_digest():
    """An AdMRL run names its seed's shared first task by the file's digest: the input, not the config."""
    def side(seed, init, epochs=3):
        return {"rule": "metatrain_admrl", "wildcards": {"family": "ant-2d", "seed": str(seed)}, "scale": "quick",
                "inputs": {f"results/init/seed{seed}/run.pt": init}, "config": {"init": init, "epochs": epochs}}

    assert evidence.config_digest(side(0, "aa11")) == evidence.config_digest(side(1, "bb22"))
    assert evidence.config_digest(side(0, "aa11")) != evidence.config_digest(side(1, "bb22", epochs=4))


def test_a_finding_sits_beside_its_claim_and_is_flagged_when_other_units_are_pooled(tmp_path):
    registry = prclaims.load_registry(ROOT / "config" / "claims.yaml")
    claims = pd.DataFrame([{"claim": "M3", "part": "MIER - PEARL", "paper": "MIER", "figure": "fig3_reward_extrapolation",
                            "estimate": -48.0, "ci_low": -75.0, "ci_high": -17.0, "n_seeds": 1, "n_tasks": 3,
                            "verdict": "contradicted", "reason": "", "commit": "668dbd3abcde", "seeds": "0", "stale": ""}])
    finding = {"seeds": [0], "commit": "668dbd3", "text": "PEARL's\n  extrapolation is better."}
    text = evidence.results_markdown(claims, registry, [], [], "quick", {"M3": finding})
    assert "**Finding** (seeds 0 at `668dbd3`): PEARL's extrapolation is better." in text
    assert "to be checked again" not in text
    later = evidence.results_markdown(claims.assign(seeds="0,1"), registry, [], [], "quick", {"M3": finding})
    assert "Written for other units than the ones pooled now (seeds 0, 1 at `668dbd3abcde`)" in later

    (tmp_path / "quick").mkdir()
    (tmp_path / "quick" / "findings.yaml").write_text("M99: {seeds: [0], commit: abc, text: t}\n")
    with pytest.raises(evidence.EvidenceError, match="'M99' is not a claim"):
        evidence.load_findings(tmp_path, "quick", registry)
    (tmp_path / "quick" / "findings.yaml").write_text("M3: {seeds: [0], text: t}\n")
    with pytest.raises(evidence.EvidenceError, match="M3 needs exactly the keys"):
        evidence.load_findings(tmp_path, "quick", registry)


def test_a_file_of_another_commit_is_publishable_while_its_code_is_unchanged(tmp_path):
    """publish accepts a file made at an earlier commit when every file its job ran has the same digest now."""
    (tmp_path / "a.py").write_text("x = 1\n")
    side = {"git_describe": "abc1234", "code": {"a.py": evidence.source_digest(tmp_path / "a.py")}}
    assert evidence._same_code(side, tmp_path)
    (tmp_path / "a.py").write_text("x = 22\n")
    assert not evidence._same_code(side, tmp_path)
    assert not evidence._same_code({"code": {"gone.py": "d"}}, tmp_path) and not evidence._same_code({}, tmp_path)

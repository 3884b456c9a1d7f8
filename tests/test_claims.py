"""The claims registry and its statistics: synthetic rows that must give each verdict, the bootstrap of a
contrast against the per-seed-and-task bootstrap it extends, and the registry against the figures."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from paper_repro import claims, stats
from paper_repro import config as prconfig

ROOT = Path(__file__).resolve().parents[1]


def rows(effects: dict[str, float], seeds=3, tasks=8, noise=1.0, seed=2, **extra) -> pd.DataFrame:
    """Returns per method, seed and task: the method's effect + a task effect shared by every method + noise."""
    rng = np.random.default_rng(seed)
    task_effect = rng.normal(0, 5, tasks)
    out = [{"method": m, "seed": s, "task_id": t, "stage": "adapted", "return": e + task_effect[t] + rng.normal(0, noise),
            **extra} for m, e in effects.items() for s in range(seeds) for t in range(tasks)]
    return pd.DataFrame(out)


SPEC = {"paper": "P", "figure": "figX", "claim": "a beats b", "value": "return", "where": "stage == 'adapted'",
        "contrasts": [{"plus": ["method == 'a'"], "minus": ["method == 'b'"]}]}


@pytest.mark.parametrize("effects, expected", [
    ({"a": 3.0, "b": 0.0}, "holds"),
    ({"a": 0.0, "b": 3.0}, "contradicted"),
    ({"a": 0.0, "b": 0.0}, "not shown"),
])
def test_each_verdict_from_synthetic_rows(effects, expected):
    out = claims.evaluate(rows(effects), "X1", SPEC, "smoke")
    assert [r["verdict"] for r in out] == [expected]
    r = out[0]
    assert r["ci_low"] <= r["estimate"] <= r["ci_high"] and (r["n_seeds"], r["n_tasks"]) == (3, 8)
    assert r["estimate"] == pytest.approx(effects["a"] - effects["b"], abs=1.2)  # 4 standard errors


def test_direction_less_mirrors_greater():
    spec = {**SPEC, "direction": "less"}
    assert claims.evaluate(rows({"a": 0.0, "b": 3.0}), "X1", spec, "smoke")[0]["verdict"] == "holds"
    assert claims.evaluate(rows({"a": 3.0, "b": 0.0}), "X1", spec, "smoke")[0]["verdict"] == "contradicted"


def test_not_testable_with_the_reason():
    zeros = rows({"a": 0.0, "b": 0.0}, noise=0.0).assign(**{"return": 0.0})
    r = claims.evaluate(zeros, "X1", SPEC, "smoke")[0]
    assert r["verdict"] == "not testable" and "every value of return is 0" in r["reason"]
    r = claims.evaluate(rows({"a": 1.0, "c": 0.0}), "X1", SPEC, "smoke")[0]
    assert r["verdict"] == "not testable" and "method == 'b'" in r["reason"]


def test_paired_interval_is_the_bootstrap_of_the_differences():
    """Methods that share seeds and tasks: the contrast's interval is stats.bootstrap_ci of the per-seed, per-task
    differences (same resampling), far narrower than the task effect shared by both would allow unpaired."""
    df = rows({"a": 1.0, "b": 0.0}, noise=0.3)
    a = df[df.method == "a"].pivot(index="seed", columns="task_id", values="return")
    b = df[df.method == "b"].pivot(index="seed", columns="task_id", values="return")
    ci = claims.contrast_ci([a], [b], resamples=2000)
    expected = stats.bootstrap_ci((a - b).to_numpy(), 95, 2000, seed=0)
    assert (ci["estimate"], ci["ci_low"], ci["ci_high"]) == pytest.approx(expected)
    assert ci["ci_low"] > 0.5  # the task effect (sd 5) cancels in the pairing


def test_unpaired_terms_resample_their_tasks_independently():
    """Terms on different tasks (another protocol's test tasks): no pairing, so the shared task effect does not
    cancel and the interval is wider than the paired one on the same values."""
    df = rows({"a": 1.0, "b": 0.0}, noise=0.3)
    a = df[df.method == "a"].pivot(index="seed", columns="task_id", values="return")
    b = df[df.method == "b"].pivot(index="seed", columns="task_id", values="return")
    paired = claims.contrast_ci([a], [b])
    unpaired = claims.contrast_ci([a], [b.set_axis([f"other{t}" for t in b.columns], axis=1)])
    assert unpaired["estimate"] == pytest.approx(paired["estimate"])
    assert unpaired["ci_high"] - unpaired["ci_low"] > 3 * (paired["ci_high"] - paired["ci_low"])


def test_worst_case_over_tasks():
    """over_tasks: max takes each seed's largest value over the tasks, then the mean over seeds."""
    a = pd.DataFrame([[1.0, 5.0], [2.0, 3.0]], index=[0, 1], columns=[0, 1])
    b = pd.DataFrame([[4.0, 4.0], [4.0, 4.0]], index=[0, 1], columns=[0, 1])
    assert claims.contrast_ci([a], [b], "max")["estimate"] == pytest.approx((5 + 3) / 2 - 4)


def test_where_only_seeds_vary_the_interval_is_students_t_over_the_seeds():
    """A worst case (or one task) varies only with the seed: two seeds that agree in sign but not in size no
    longer make an interval that excludes 0 (a bootstrap of two values gives their range, [1, 3] here); the
    t interval with one degree of freedom is mean ± 12.71 × sem. Ten seeds of the same spread do."""
    a = pd.DataFrame([[1.0, 0.0], [3.0, 0.0]], index=[0, 1], columns=[0, 1])
    b = pd.DataFrame(0.0, index=[0, 1], columns=[0, 1])
    ci = claims.contrast_ci([a], [b], "max")
    assert ci["estimate"] == pytest.approx(2.0)
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((2 - 12.7062 * 1.0, 2 + 12.7062 * 1.0), abs=1e-3)
    assert claims.verdict(ci["ci_low"], ci["ci_high"], "greater") == "not shown"
    ten = pd.DataFrame([[v, 0.0] for v in [1.0, 3.0] * 5], index=range(10), columns=[0, 1])
    ci = claims.contrast_ci([ten], [pd.DataFrame(0.0, index=range(10), columns=[0, 1])], "max")
    assert ci["n_seeds"] == 10 and ci["ci_low"] > 1.0 and claims.verdict(ci["ci_low"], ci["ci_high"], "greater") == "holds"


def test_per_final_and_equivalence():
    """A contrast repeated per value of a column, the rows at the largest step, and a claim of equivalence."""
    df = pd.concat([rows({"a": 1.0, "b": 0.0}, noise=0.1).assign(steps=s, family=f) for s in (0, 10) for f in ("x", "y")])
    df.loc[(df.steps == 10) & (df.method == "a"), "return"] += 100.0
    spec = {**SPEC, "final": "steps",
            "contrasts": [{"per": "family", "plus": ["method == 'a' and family == {family}"],
                           "minus": ["method == 'b' and family == {family}"]}]}
    out = claims.evaluate(df, "X2", spec, "quick")
    assert [r["part"].split(" at ")[1] for r in out] == ["family = x", "family = y"]
    assert all(r["estimate"] == pytest.approx(101, abs=0.5) for r in out)  # the last step only
    eq = {**SPEC, "contrasts": [{"plus": ["method == 'a'"], "minus": ["method == 'b'"], "direction": "equivalent",
                                 "margin": 0.5}]}
    near = rows({"a": 10.2, "b": 10.0}, noise=0.1)
    assert claims.evaluate(near, "X3", eq, "quick")[0]["verdict"] == "holds"
    far = rows({"a": 30.0, "b": 10.0}, noise=0.1)
    assert claims.evaluate(far, "X3", eq, "quick")[0]["verdict"] == "contradicted"


def test_common_keeps_the_range_every_term_reaches():
    """A mean over a learning curve's evaluations compares methods over the same steps: b's evaluations past
    a's last one (in each family's contrast) are left out, so b's late rise does not count; a third method's
    shorter curve does not cut a contrast it is not in."""
    df = pd.concat([rows({"a": 1.0, "b": 1.0}, noise=0.1).assign(env_steps=s, family=f)
                    for s in (0, 100, 200) for f in ("x", "y")])
    df = df[~((df.method == "a") & (df.family == "x") & (df.env_steps == 200))]  # a reaches 100 on x, 200 on y
    df.loc[(df.method == "b") & (df.env_steps == 200), "return"] += 30.0
    df = pd.concat([df, rows({"c": 0.0}, noise=0.1).assign(env_steps=0, family="y")])  # c stops at 0 on y
    spec = {**SPEC, "contrasts": [{"per": "family", "plus": ["method == 'b' and family == {family}"],
                                   "minus": ["method == 'a' and family == {family}"]}]}
    assert [r["estimate"] for r in claims.evaluate(df, "X4", spec, "quick")] == pytest.approx([10, 10], abs=0.5)
    common = claims.evaluate(df, "X4", {**spec, "common": "env_steps"}, "quick")
    assert [r["estimate"] for r in common] == pytest.approx([0, 10], abs=0.5)  # x: steps 0 and 100 only
    with pytest.raises(claims.ClaimError, match="common"):
        claims.evaluate(df.drop(columns="env_steps"), "X4", {**spec, "common": "env_steps"}, "quick")


def test_claim_verdict_from_its_contrasts():
    assert claims.claim_verdict(["holds", "holds"]) == "holds"
    assert claims.claim_verdict(["holds", "not shown"]) == "not shown"
    assert claims.claim_verdict(["holds", "contradicted"]) == "contradicted"
    assert claims.claim_verdict(["not testable", "not testable"]) == "not testable"


def test_registry_names_real_figures_and_the_issue_claims():
    registry = claims.load_registry(ROOT / "config" / "claims.yaml")
    figures = prconfig.load_yaml(ROOT / "config" / "config.yaml")["figures"]
    assert {s["figure"] for s in registry.values()} <= set(figures)
    expected = {"M1", "M2", "M3", "M4", "A1", "A2", "A3", "A4", "A5", "A6", "A7", "C1", "C2", "C4", "C5", "C6", "C7"}
    assert expected <= set(registry) and {"C3a", "C3b"} <= set(registry)


def test_registry_refuses_unknown_keys(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text("X1: {paper: P, figure: f, claim: c, value: v, contrasts: [{plus: [a]}], diretion: less}\n")
    with pytest.raises(claims.ClaimError, match="claim X1: unknown key.*diretion"):
        claims.load_registry(bad)
    bad.write_text("X1: {paper: P, figure: f, claim: c, value: v, contrasts: [{plus: [a], minnus: [b]}]}\n")
    with pytest.raises(claims.ClaimError, match="minnus"):
        claims.load_registry(bad)


def test_a_bad_query_names_the_claim():
    spec = {**SPEC, "contrasts": [{"plus": ["methd == 'a'"], "minus": ["method == 'b'"]}]}
    with pytest.raises(claims.ClaimError, match="claim X1"):
        claims.evaluate(rows({"a": 1.0, "b": 0.0}), "X1", spec, "smoke")


def test_one_seed_worst_case_has_no_interval():
    """A worst case over tasks resamples seeds only: with one seed there is no interval, so it is not shown
    whatever the estimate, which is the difference of the maxima."""
    df = rows({"a": 30.0, "b": 0.0}, seeds=1, noise=0.1)
    out = claims.evaluate(df, "X4", {**SPEC, "over_tasks": "max"}, "quick")[0]
    assert out["verdict"] == "not shown" and "no interval" in out["reason"]
    by = df.groupby("method")["return"].max()
    assert out["estimate"] == pytest.approx(by["a"] - by["b"])


def test_per_where_picks_the_values_not_the_rows():
    """C5's form: the improvement at each later point uses the rows at point 0, which per_where leaves out of
    the points compared."""
    df = pd.concat([rows({"a": 0.0, "b": 0.0}, noise=0.1).assign(t=0),
                    rows({"a": 5.0, "b": 1.0}, noise=0.1).assign(t=10)])
    spec = {**SPEC, "contrasts": [{"per": "t", "per_where": "t > 0",
                                   "plus": ["method == 'a' and t == {t}", "method == 'b' and t == 0"],
                                   "minus": ["method == 'a' and t == 0", "method == 'b' and t == {t}"]}]}
    out = claims.evaluate(df, "X5", spec, "quick")
    assert len(out) == 1 and out[0]["verdict"] == "holds" and out[0]["estimate"] == pytest.approx(4.0, abs=0.3)

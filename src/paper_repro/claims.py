"""The papers' headline claims as statistics on the figures' rows, with intervals and verdicts.

``config/claims.yaml`` states each claim once: the figure whose rows test it, the value column, and one or
more *contrasts*. A contrast is a sum of terms minus a sum of terms; a term is the rows that a pandas query
selects (``"method == 'mier'"``), reduced to one number per seed and task (the mean over any other rows of
that seed and task, e.g. the evaluations of a learning curve), then over tasks (``over_tasks``: ``mean``, or
``max`` for a worst case), then averaged over seeds. Its interval is the bootstrap of
:func:`paper_repro.stats.bootstrap_ci` extended to contrasts: seeds are resampled once for every term
(methods share their seeds), test tasks once for every term where the terms share their tasks (a paired
difference) and independently per term where they do not (different protocols, or the corners against the
centre of a grid). Where only the seeds vary (a worst case, ``over_tasks: max``, as AdMRL's own statistic:
a resample of the tasks can only lower a maximum; or one task) the interval is Student's t over the seeds'
contrast values instead: a bootstrap of a few seeds is the range of their values (2 seeds: 3 distinct
resamples), which claims far more than two draws can say; t with n − 1 degrees of freedom widens it as
few seeds must (12.7 standard errors either side at 2 seeds, 4.3 at 3). Where nothing can be resampled
(one seed, and one task or a worst case) there is no interval, and the contrast is ``not shown`` with that
reason.

A contrast's verdict, for ``direction: greater`` (``less`` mirrors it):

- ``holds``: the interval excludes 0 on the claimed side;
- ``contradicted``: it excludes 0 on the other side;
- ``not shown``: it covers 0;
- ``not testable``: the data cannot say, with the reason (no rows for a term; every value identical, e.g.
  every method's success rate 0).

``common: <column>`` (a learning curve's ``env_steps``) keeps, in each contrast, only the rows at values of the
column that every term reaches (up to the smallest of the terms' largest): a mean over the evaluations of a
curve is then taken over the same range of the x-axis for every method compared, and a method trained longer
is not credited with returns the others never had the steps to reach.

``direction: equivalent`` (a claim that two methods are "about" equal) holds when the interval lies inside
±``margin`` times the magnitude of the last term, is contradicted when it lies outside, and is not shown
otherwise. A claim holds when every contrast holds; it is contradicted when any is; it is not testable when
every contrast is; otherwise it is not shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
import yaml

VERDICTS = ("holds", "contradicted", "not shown", "not testable")
DIRECTIONS = ("greater", "less", "equivalent")
CLAIM_KEYS = {"paper", "figure", "claim", "value", "where", "final", "common", "over_tasks", "contrasts",
              "direction", "margin", "paper_value", "requires", "note"}
CONTRAST_KEYS = {"label", "plus", "minus", "per", "per_where", "direction", "margin"}
COLUMNS = ["claim", "part", "paper", "figure", "scale", "estimate", "ci_low", "ci_high", "n_seeds", "n_tasks",
           "verdict", "reason", "direction", "paper_value"]


class ClaimError(ValueError):
    """A claim of the registry that cannot be evaluated as written (names the claim and the key)."""


def load_registry(path: str | Path) -> dict[str, dict]:
    """The registry, checked: every claim has a paper, figure, claim, value and contrasts, every key is known."""
    registry = yaml.safe_load(Path(path).read_text()) or {}
    for cid, spec in registry.items():
        unknown = sorted(set(spec) - CLAIM_KEYS)
        if unknown:
            raise ClaimError(f"{path}: claim {cid}: unknown key(s) {unknown}; valid keys: {sorted(CLAIM_KEYS)}")
        missing = sorted({"paper", "figure", "claim", "value", "contrasts"} - set(spec))
        if missing:
            raise ClaimError(f"{path}: claim {cid}: missing key(s) {missing}")
        for c in spec["contrasts"]:
            if c.get("direction", spec.get("direction", "greater")) not in DIRECTIONS:
                raise ClaimError(f"{path}: claim {cid}: direction of {c}; expected one of {DIRECTIONS}")
            bad = sorted(set(c) - CONTRAST_KEYS)
            if bad or "plus" not in c:
                raise ClaimError(f"{path}: claim {cid}: contrast {c}: unknown key(s) {bad} or no 'plus'; "
                                 f"valid keys: {sorted(CONTRAST_KEYS)}")
    return registry


def for_figure(registry: Mapping[str, dict], figure: str) -> dict[str, dict]:
    return {cid: spec for cid, spec in registry.items() if spec["figure"] == figure}


# --- one term: seeds x tasks --------------------------------------------------------------------------

def _select(rows: pd.DataFrame, query: str | None, where: str) -> pd.DataFrame:
    if not query:
        return rows
    try:
        return rows.query(query, engine="python")
    except Exception as err:  # a column the rows lack, or a malformed expression
        raise ClaimError(f"{where}: query {query!r} on columns {sorted(rows.columns)}: {err}") from err


def common_range(rows: pd.DataFrame, queries: Sequence[str], column: str, where: str) -> pd.DataFrame:
    """``rows`` at values of ``column`` that the rows of every term (query) reach: up to the smallest of the
    terms' largest values."""
    if column not in rows.columns:
        raise ClaimError(f"{where}: common: column {column!r} not among {sorted(rows.columns)}")
    reach = [_select(rows, q, where)[column].max() for q in queries]
    return rows[rows[column] <= np.nanmin(reach)] if not np.isnan(reach).all() else rows


def term_matrix(rows: pd.DataFrame, query: str, value: str, final: str | None, where: str) -> pd.DataFrame:
    """The seeds x tasks matrix of one term: its rows' ``value``, at the largest ``final`` of each seed and
    task when given (e.g. the last training step), averaged over whatever else repeats (evaluations)."""
    sel = _select(rows, query, where)
    if sel.empty:
        return pd.DataFrame()
    if value not in sel.columns:
        raise ClaimError(f"{where}: value column {value!r} not among {sorted(rows.columns)}")
    sel = sel.assign(_task=task_key(sel))
    if final:
        sel = sel[sel[final] == sel.groupby(["seed", "_task"])[final].transform("max")]
    return sel.pivot_table(index="seed", columns="_task", values=value, aggfunc="mean")


def task_key(rows: pd.DataFrame) -> pd.Series:
    """A test task: (experiment, task_id), as experiments number their tasks alike; one task for rows with no
    task (a supervised learning curve, a model's error on one dataset)."""
    if "task_id" not in rows.columns:
        return pd.Series("all", index=rows.index)
    task = rows["task_id"].astype(str)
    return rows["experiment"].astype(str) + "/" + task if "experiment" in rows.columns else task


# --- a contrast: estimate, interval ---------------------------------------------------------------------

def contrast_ci(plus: Sequence[pd.DataFrame], minus: Sequence[pd.DataFrame], over_tasks: str = "mean",
                level: float = 95.0, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Σ plus − Σ minus of the terms' means over seeds of their ``over_tasks`` over tasks, and its interval: the
    percentile bootstrap with seeds resampled jointly (the seeds every term has), tasks jointly where all
    terms have the same tasks and independently per term otherwise; where only the seeds vary (a worst case,
    or one task), Student's t over the seeds' contrast values (module docstring). Where nothing can be
    resampled (one seed, and one task or a worst case) the interval is NaN."""
    terms = [(1.0, m) for m in plus] + [(-1.0, m) for m in minus]
    seeds = sorted(set.intersection(*(set(m.index) for _, m in terms)))
    if not seeds:
        raise ClaimError("the terms share no seed")
    frames = [(w, m.loc[seeds].dropna(axis=1, how="any")) for w, m in terms]
    if any(m.shape[1] == 0 for _, m in frames):
        raise ClaimError("a term has no task with a value for every seed")
    paired = len({tuple(m.columns) for _, m in frames}) == 1
    mats = [(w, m.to_numpy(float)) for w, m in frames]
    reduce = {"mean": np.mean, "max": np.max}[over_tasks]
    estimate = float(sum(w * reduce(m, axis=1).mean() for w, m in mats))
    n_tasks = max(m.shape[1] for _, m in mats)
    out = {"estimate": estimate, "n_seeds": len(seeds), "n_tasks": n_tasks}
    if n_tasks == 1 or over_tasks == "max":  # only the seeds vary (a resample's max over tasks can only fall)
        if len(seeds) == 1:
            return {**out, "ci_low": float("nan"), "ci_high": float("nan")}
        per_seed = sum(w * reduce(m, axis=1) for w, m in mats)
        sem = float(np.std(per_seed, ddof=1) / np.sqrt(len(seeds)))
        if sem == 0:
            return {**out, "ci_low": estimate, "ci_high": estimate}
        low, high = scipy.stats.t.interval(level / 100, len(seeds) - 1, loc=estimate, scale=sem)
        return {**out, "ci_low": float(low), "ci_high": float(high)}
    rng = np.random.default_rng(seed)
    rows = rng.integers(len(seeds), size=(resamples, len(seeds), 1))
    if paired:
        shared = rng.integers(mats[0][1].shape[1], size=(resamples, 1, mats[0][1].shape[1]))
        cols = [shared] * len(mats)
    else:
        cols = [rng.integers(m.shape[1], size=(resamples, 1, m.shape[1])) for _, m in mats]
    values = sum(w * reduce(m[rows, c], axis=-1).mean(axis=-1) for (w, m), c in zip(mats, cols))
    tail = (100.0 - level) / 2
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return {**out, "ci_low": float(low), "ci_high": float(high)}


def verdict(ci_low: float, ci_high: float, direction: str, margin: float | None = None,
            scale: float | None = None) -> str:
    """The verdict of one contrast's interval (module docstring)."""
    if direction == "equivalent":
        bound = (margin or 0.0) * abs(scale or 0.0)
        if -bound <= ci_low and ci_high <= bound:
            return "holds"
        return "contradicted" if ci_low > bound or ci_high < -bound else "not shown"
    low, high = (ci_low, ci_high) if direction == "greater" else (-ci_high, -ci_low)
    return "holds" if low > 0 else "contradicted" if high < 0 else "not shown"


def claim_verdict(verdicts: Sequence[str]) -> str:
    """A claim's verdict from its contrasts' (module docstring)."""
    if not verdicts or all(v == "not testable" for v in verdicts):
        return "not testable"
    if "contradicted" in verdicts:
        return "contradicted"
    return "holds" if all(v == "holds" for v in verdicts) else "not shown"


# --- a claim on a figure's rows -----------------------------------------------------------------------------

def _parts(rows: pd.DataFrame, contrast: Mapping[str, Any], where: str) -> list[tuple[str, dict[str, str]]]:
    """A contrast, once, or once per value of its ``per`` column (``{per}`` in its queries and label)."""
    label = contrast.get("label") or " - ".join(filter(None, [" + ".join(contrast["plus"]),
                                                               " + ".join(contrast.get("minus", []))]))
    per = contrast.get("per")
    if not per:
        return [(label, {})]
    per = [per] if isinstance(per, str) else list(per)
    missing = sorted(set(per) - set(rows.columns))
    if missing:
        raise ClaimError(f"{where}: per column(s) {missing} not among {sorted(rows.columns)}")
    combos = rows[per].dropna().drop_duplicates().sort_values(per)
    parts = []
    for combo in combos.itertuples(index=False):
        values = [v.item() if hasattr(v, "item") else v for v in combo]
        at = ", ".join(f"{c} = {v:g}" if isinstance(v, (int, float)) else f"{c} = {v}" for c, v in zip(per, values))
        parts.append((f"{label} at {at}", {c: repr(v) for c, v in zip(per, values)}))
    return parts


def evaluate(rows: pd.DataFrame, cid: str, spec: Mapping[str, Any], scale: str, level: float = 95.0,
             resamples: int = 1000) -> list[dict[str, Any]]:
    """One row per contrast (and ``per`` value) of claim ``cid`` on a figure's rows: estimate, interval,
    seeds, tasks and verdict (columns ``COLUMNS``)."""
    base = {"claim": cid, "paper": spec["paper"], "figure": spec["figure"], "scale": scale,
            "paper_value": spec.get("paper_value")}
    rows = _select(rows, spec.get("where"), f"claim {cid}")
    out = []
    for contrast in spec["contrasts"]:
        for label, fill in _parts(_select(rows, contrast.get("per_where"), f"claim {cid}"), contrast, f"claim {cid}"):
            def fmt(q, fill=fill):
                return q.format(**fill) if fill else q
            where = f"claim {cid} ({label})"
            terms = rows
            if spec.get("common"):
                queries = [fmt(q) for q in [*contrast["plus"], *contrast.get("minus", [])]]
                terms = common_range(rows, queries, spec["common"], where)
            plus = [term_matrix(terms, fmt(q), spec["value"], spec.get("final"), where) for q in contrast["plus"]]
            minus = [term_matrix(terms, fmt(q), spec["value"], spec.get("final"), where)
                     for q in contrast.get("minus", [])]
            direction = contrast.get("direction", spec.get("direction", "greater"))
            row = {**base, "part": label, "direction": direction}
            empty = [q for q, m in zip([*contrast["plus"], *contrast.get("minus", [])], [*plus, *minus]) if m.empty]
            if empty:
                out.append({**row, "verdict": "not testable", "reason": f"no rows for {empty}"})
                continue
            values = np.concatenate([m.to_numpy(float).ravel() for m in [*plus, *minus]])
            values = values[~np.isnan(values)]
            if np.ptp(values) == 0:
                out.append({**row, "verdict": "not testable",
                            "reason": f"every value of {spec['value']} is {values[0]:g}"})
                continue
            try:
                ci = contrast_ci(plus, minus, spec.get("over_tasks", "mean"), level, resamples)
            except ClaimError as err:
                out.append({**row, "verdict": "not testable", "reason": str(err)})
                continue
            if np.isnan(ci["ci_low"]):
                out.append({**row, **ci, "verdict": "not shown",
                            "reason": "one seed and nothing else to resample: no interval"})
                continue
            reference = float(np.nanmean([*plus, *minus][-1].to_numpy(float)))
            out.append({**row, **ci, "reason": "",
                        "verdict": verdict(ci["ci_low"], ci["ci_high"], direction,
                                           contrast.get("margin", spec.get("margin")), reference)})
    return out


def evaluate_figure(rows: pd.DataFrame, registry: Mapping[str, dict], figure: str, scale: str, level: float = 95.0,
                    resamples: int = 1000) -> pd.DataFrame:
    """Every claim of ``figure`` on its rows: the table of ``results/claims/<figure>.csv``."""
    out = [r for cid, spec in for_figure(registry, figure).items()
           for r in evaluate(rows, cid, spec, scale, level, resamples)]
    return pd.DataFrame(out, columns=COLUMNS)


def summary(claims: pd.DataFrame) -> pd.DataFrame:
    """One line per claim: its verdict from its contrasts', the parts' verdicts in a few words."""
    out = []
    for cid, g in claims.groupby("claim", sort=False):
        out.append({"claim": cid, "verdict": claim_verdict(list(g["verdict"])), "parts": len(g),
                    "holds": int((g["verdict"] == "holds").sum())})
    return pd.DataFrame(out)


def caption_line(claims: pd.DataFrame) -> str:
    """The verdicts of a figure's claims in one line, for its caption: "M1 holds (2/2); M2 not shown (3/5)"."""
    if claims.empty:
        return "No paper claim rests on this figure."
    return "; ".join(f"{r.claim} {r.verdict} ({r.holds}/{r.parts} contrasts hold)"
                     for r in summary(claims).itertuples())

"""The table behind an AdMRL figure (its table in the registry, ``plots.figure("<figN>_<what>").table``, i.e.
``plots.admrl.<what>_table``): every evaluation (model-based, and the model-free baselines' on their
sample schedule) with its task's reference return A* and gap, the worst-case gap per seed and its mean
over seeds with an interval; for Fig. 4 also the training tasks each run visited; for Fig. 2 the mean
returns over test tasks instead of gaps.

A*_SAC of a test task is the final (deterministic) return of its reference SAC agent
(results/<scale>/best/<experiment>/sac/seed0/task<id>.curve.csv, last row).
"""

import logging
import re
from pathlib import Path

import pandas as pd

from paper_repro import io, plots

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
p = snakemake.params

evals = pd.concat([pd.read_csv(path) for path in snakemake.input.evals], ignore_index=True)
tests = pd.concat([pd.read_csv(path).assign(experiment=name) for path, name in zip(snakemake.input.tests, p.test_experiments)],
                  ignore_index=True)
evals = plots.admrl.adaptation_rows(evals, tests)  # the model-free baselines' rows (Figs 1-2) in the model-based form
best = []
for path in snakemake.input.best:
    experiment, task = re.search(r"best/([^/]+)/sac/seed\d+/task(\d+)\.curve\.csv$", path).groups()
    curve = pd.read_csv(path)
    if curve.empty:
        raise ValueError(f"{path}: the reference agent has no evaluation")
    best.append({"experiment": experiment, "task_id": int(task), "a_star_sac": float(curve["eval_return"].iloc[-1])})
a_star_sac = pd.DataFrame(best, columns=["experiment", "task_id", "a_star_sac"])  # none for Fig. 2 (returns)
out = snakemake.output[0]
# results/tables/fig3_worst_case_gap.csv -> plots.admrl.worst_case_gap_table
aggregate = plots.figure(Path(out).stem).table
stats = p.stats
extra = {}
if "visited" in snakemake.input.keys():
    extra["visited"] = pd.concat([pd.read_csv(path).assign(experiment=name)
                                  for path, name in zip(snakemake.input.visited, p.visited_experiments)], ignore_index=True)
table = aggregate(evals, a_star_sac, p.gap_reference, stats["ci"], stats["bootstrap"], **extra)
with io.atomic_path(out) as tmp:
    table.to_csv(tmp, index=False)
# The rows, for the figure's claims: every evaluation (with its gap where the figure draws gaps), and for
# Fig. 4 every visited training task with its distance to the box's boundary (x is the task parameter
# normalised to [-1, 1] per axis: 1 - max |x_i|), a task of its own per method (they visit different ones)
rows = (plots.admrl.gap_rows(evals, a_star_sac, p.gap_reference) if len(a_star_sac) else evals).assign(kind="evaluation")
if "visited" in extra:
    visited = extra["visited"]
    x = visited.filter(regex=r"^x_\d+$").abs().max(axis=1)
    rows = pd.concat([rows, visited.assign(kind="visited", boundary_distance=1.0 - x,
                                           task_id=visited["method"] + "/" + visited["task"].astype(str))],
                     ignore_index=True)
with io.atomic_path(snakemake.output[1]) as tmp:
    rows.to_csv(tmp, index=False)
io.write_job_provenance(snakemake, {"gap_reference": p.gap_reference, **stats},
                        seeds=sorted(evals.seed.unique().tolist()), device="cpu")
logging.info("%s: %d evaluation rows, seeds %s", snakemake.output[0], len(evals), sorted(evals.seed.unique().tolist()))

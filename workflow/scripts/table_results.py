"""The table behind a MIER or MACAW figure: the numbers it draws (its table in the registry,
``plots.figure("<figN>_<what>").table``, i.e. ``plots.<paper>.<what>_table``: each seed's mean over the test
tasks and the mean over seeds with its bootstrap interval), from the result files with each test task's
parameters (e.g. its target velocity) joined on.

The files are evaluations after adaptation (results/<scale>/eval/<experiment>/<method>/seed<s>.csv: Figs 3
and 4) or evaluations during meta-training (results/<scale>/runs/<experiment>/<algo>/seed<s>/curve.csv:
Fig. 2); both have one row per method, seed, test task, stage and step count. MACAW Fig. 6's are the
Omniglot runs' curves (results/<scale>/runs/omniglot/<method>/seed<s>/curve.csv), with no task table.
"""

import logging
from pathlib import Path

import pandas as pd

from paper_repro import io, plots

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")

frames = []
for path in snakemake.input.results:
    frame = pd.read_csv(path)
    if frame.empty:
        raise ValueError(f"{path}: no evaluation rows")
    frames.append(frame.assign(source=path))
table = pd.concat(frames, ignore_index=True)
if snakemake.params.test_tables:  # none for a supervised experiment (MACAW Fig. 6's Omniglot)
    tasks = pd.concat([pd.read_csv(path).assign(experiment=name) for name, path in snakemake.params.test_tables.items()],
                      ignore_index=True)
    table = table.merge(tasks, on=["experiment", "task_id"], how="left", validate="many_to_one")

out = snakemake.output[0]
# results/tables/fig4_dynamics_extrapolation.csv -> plots.mier.dynamics_extrapolation_table
aggregate = plots.figure(Path(out).stem).table
stats = snakemake.params.stats
with io.atomic_path(out) as tmp:
    aggregate(table, stats["ci"], stats["bootstrap"]).to_csv(tmp, index=False)
with io.atomic_path(snakemake.output[1]) as tmp:  # the rows, for the figure's claims
    table.drop(columns="source").to_csv(tmp, index=False)
io.write_job_provenance(snakemake, {"results": len(snakemake.input.results), **stats},
                        seeds=sorted(table.seed.unique().tolist()), device="cpu", runs=list(snakemake.input.results))
logging.info("%s: %d rows from %d result files, seeds %s", out, len(table), len(snakemake.input.results),
             sorted(table.seed.unique().tolist()))

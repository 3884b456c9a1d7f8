"""The table behind a MIER figure: every row of the result files it aggregates, with each test task's
parameters (e.g. its target velocity) joined on.

The files are evaluations after adaptation (results/eval/<experiment>/<method>/seed<s>.csv: Figs 3
and 4) or evaluations during meta-training (results/runs/<experiment>/<algo>/seed<s>/curve.csv:
Fig. 2); both have one row per method, seed, test task, stage and step count.
"""

import pandas as pd

from paper_repro import io

snakemake = globals()["snakemake"]

frames = []
for path in snakemake.input.results:
    frame = pd.read_csv(path)
    if frame.empty:
        raise ValueError(f"{path}: no evaluation rows")
    frames.append(frame.assign(source=path))
table = pd.concat(frames, ignore_index=True)
tasks = pd.concat([pd.read_csv(path).assign(experiment=name) for name, path in snakemake.params.test_tables.items()],
                  ignore_index=True)
table = table.merge(tasks, on=["experiment", "task_id"], how="left", validate="many_to_one")

out = snakemake.output[0]
with io.atomic_path(out) as tmp:
    table.to_csv(tmp, index=False)
io.write_provenance(out, {"results": len(snakemake.input.results)}, seeds=sorted(table.seed.unique().tolist()),
                    device="cpu", runs=list(snakemake.input.results))

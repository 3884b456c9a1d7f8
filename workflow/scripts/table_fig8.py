"""The table behind fig8: every task's learning curve, one row per evaluation."""

import re

import pandas as pd

from paper_repro import io

snakemake = globals()["snakemake"]

frames = []
for path in snakemake.input.curves:
    family, algo, seed, task = re.search(r"data/([^/]+)/([^/]+)/seed(\d+)/task(\d+)\.curve\.csv$", path).groups()
    curve = pd.read_csv(path)
    if curve.empty:
        raise ValueError(f"{path}: no evaluations (is collect.agent.eval_episodes 0?)")
    frames.append(curve.assign(family=family, algo=algo, seed=int(seed), task_id=int(task), source=path))
table = pd.concat(frames)[["family", "algo", "seed", "task_id", "env_steps", "eval_return", "source"]]

out = snakemake.output[0]
with io.atomic_path(out) as tmp:
    table.to_csv(tmp, index=False)
io.write_provenance(out, {"collect_algo": snakemake.params.collect_algo}, seeds=sorted(table.seed.unique().tolist()),
                    device="cpu", runs=list(snakemake.input.curves))

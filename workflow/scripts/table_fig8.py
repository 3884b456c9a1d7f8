"""The table behind fig8: the numbers it draws (``plots.macaw.offline_policy_curves_table``): every task's
learning curve per seed and as the mean over seeds with its bootstrap interval, with the task's split,
and the random policy's return per family.

``split`` says whether the task is one of the family's training tasks, test tasks or both
(results/tasks/<family>/macaw/{train,test}.csv, params.task_tables).
``random_return`` is the task's uniform random policy: the mean return of the episodes of its
buffer's random warm-up (NaN when the warm-up is shorter than an episode).
"""

import logging
import re
from pathlib import Path

import pandas as pd

from paper_repro import buffers, io, plots

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")


def task_splits(family: str) -> dict[int, str]:
    """task id -> "train", "test" or "train+test", from the family's MACAW task tables."""
    ids = {}
    for split in ("train", "test"):
        path = Path(snakemake.params.task_tables[family][split])
        if not path.exists():
            raise FileNotFoundError(f"{path}: task table missing (needed to tell {family}'s test tasks apart)")
        ids[split] = set(pd.read_csv(path)["task_id"].astype(int))
    return {t: "+".join(s for s in ("train", "test") if t in ids[s]) for t in ids["train"] | ids["test"]}


frames, splits = [], {}
for path, buffer in zip(snakemake.input.curves, snakemake.input.buffers, strict=True):
    if buffer.removesuffix(".npz") != path.removesuffix(".curve.csv"):
        raise ValueError(f"{buffer}: expected the buffer of {path}")
    warmup = buffers.warmup_returns(buffer)
    m = re.search(r"^(.*?)data/([^/]+)/([^/]+)/seed(\d+)/task(\d+)\.curve\.csv$", path)
    if m is None:
        raise ValueError(f"{path}: expected .../data/<family>/<algo>/seed<s>/task<id>.curve.csv")
    _, family, algo, seed, task = m.groups()
    if family not in splits:
        splits[family] = task_splits(family)
    if int(task) not in splits[family]:
        raise ValueError(f"{path}: task {task} is in neither the train nor the test table of {family}")
    curve = pd.read_csv(path)
    if curve.empty:
        raise ValueError(f"{path}: no evaluations (is collect.agent.eval_episodes 0?)")
    frames.append(curve.assign(family=family, algo=algo, seed=int(seed), task_id=int(task),
                               split=splits[family][int(task)],
                               random_return=warmup.mean() if len(warmup) else float("nan"), source=path))
curves = pd.concat(frames)
stats = snakemake.params.stats

out = snakemake.output[0]
with io.atomic_path(out) as tmp:
    plots.macaw.offline_policy_curves_table(curves, stats["ci"], stats["bootstrap"]).to_csv(tmp, index=False)
with io.atomic_path(snakemake.output[1]) as tmp:  # the rows, for the figure's claims
    curves.drop(columns="source").to_csv(tmp, index=False)
io.write_job_provenance(snakemake, {"collect_algo": snakemake.params.collect_algo, **stats},
                        seeds=sorted(curves.seed.unique().tolist()), device="cpu", runs=list(snakemake.input.curves))
logging.info("%s: %d curve rows from %d collections", out, len(curves), len(snakemake.input.curves))

"""The table behind fig8: every task's learning curve, one row per evaluation, with its split.

``split`` says whether the task is one of the family's training tasks, test tasks or both
(results/tasks/<family>/macaw/{train,test}.csv, next to the curves' results/data/).
``random_return`` is the task's uniform random policy: the mean return of the episodes of its
buffer's random warm-up (NaN when the warm-up is shorter than an episode).
"""

import re
from pathlib import Path

import pandas as pd

from paper_repro import buffers, io

snakemake = globals()["snakemake"]


def task_splits(root: Path, family: str) -> dict[int, str]:
    """task id -> "train", "test" or "train+test", from the family's MACAW task tables."""
    ids = {}
    for split in ("train", "test"):
        path = root / "tasks" / family / "macaw" / f"{split}.csv"
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
    root, family, algo, seed, task = m.groups()
    if family not in splits:
        splits[family] = task_splits(Path(root or "."), family)
    if int(task) not in splits[family]:
        raise ValueError(f"{path}: task {task} is in neither the train nor the test table of {family}")
    curve = pd.read_csv(path)
    if curve.empty:
        raise ValueError(f"{path}: no evaluations (is collect.agent.eval_episodes 0?)")
    frames.append(curve.assign(family=family, algo=algo, seed=int(seed), task_id=int(task),
                               split=splits[family][int(task)],
                               random_return=warmup.mean() if len(warmup) else float("nan"), source=path))
table = pd.concat(frames)[["family", "algo", "seed", "task_id", "split", "env_steps", "eval_return", "random_return",
                           "source"]]

out = snakemake.output[0]
with io.atomic_path(out) as tmp:
    table.to_csv(tmp, index=False)
io.write_provenance(out, {"collect_algo": snakemake.params.collect_algo}, seeds=sorted(table.seed.unique().tolist()),
                    device="cpu", runs=list(snakemake.input.curves))

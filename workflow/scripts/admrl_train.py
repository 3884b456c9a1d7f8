"""AdMRL's model-based meta-training on a family's task box: the shared first task of a seed
(``params.method == "init"``: task 0 only), or a whole run of AdMRL, MB-Unif or MB-Gauss resumed
from it (``input.init``).

Writes run.pt (the run's state: a snapshot after every training task, and the real data D),
tasks.csv (one row per training task: x, ψ, the real returns of θ̂ and θ*, the training-time gap
estimate and the task gradient's parts; empty for the first task's job) and metrics.csv (every
logged row), each with provenance. A killed job resumes from checkpoint.pt after its last finished task,
dropping the rows logged since.
"""

import dataclasses
import logging
import time
from pathlib import Path

import pandas as pd
import torch

from paper_repro import config as prconfig
from paper_repro import io
from paper_repro.algos import admrl

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(snakemake.threads)

p = snakemake.params
family, seed, method = p.family, int(snakemake.wildcards.seed), p.method
cfg = prconfig.from_dict(admrl.Config, {**p.learner, "task_sampler": p.sampler}, f"admrl.learner ({method})")
out_dir = Path(snakemake.output.run).parent
run = {"config": dataclasses.asdict(cfg), "family": family, "seed": seed, "method": method}
if method != "init":  # a checkpoint of a run started from another first task is not resumed
    run["init"] = io.file_sha256(snakemake.input.init)
checkpoint, progress = io.start_or_resume(out_dir, run)
if checkpoint.exists():  # the task the kill interrupted is trained, and its rows logged, again from its start
    finished = io.load_checkpoint(checkpoint)["j"]
    io.keep_rows(progress, lambda row: row["task"] < finished)
device = prconfig.resolve_device(p.device)
logging.info("%s: %s (%s sampler), seed %d, %s, on %s", family, method, cfg.task_sampler, seed, cfg, device)
start = time.time()


def scalar(v):
    return v[0] if isinstance(v, list) and len(v) == 1 else v


def log(m):
    row = {k: scalar(v) for k, v in m.items()}
    row["time/elapsed_s"] = time.time() - start
    io.append_rows(progress, [row])
    logging.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


start_from = io.load_checkpoint(snakemake.input.init) if method != "init" else None
state = admrl.train(family, cfg, seed=seed, device=device, log=log, checkpoint=str(checkpoint), start_from=start_from,
                    stop_after=1 if method == "init" else None)

rows = io.read_rows(progress)
metrics = pd.DataFrame(rows)
per_task = []
for snap in state["snapshots"]:  # every training task, the shared first one included (its stats travel in run.pt)
    st = snap.get("stats", {})
    real = st.get("real_returns", [])
    per_task.append({"method": method, "seed": seed, "task": snap["task"],
                     **{f"x_{i}": v for i, v in enumerate(snap["x"])},
                     **admrl.task_row(family, torch.tensor(snap["psi"])), "real_samples": snap["offset"],
                     "first_stage_return": real[0] if real else float("nan"),
                     "last_stage_return": real[-1] if real else float("nan"),
                     **({"gap_estimate": st["gap_estimate"]} if "gap_estimate" in st else {}),
                     **{f"{k}_{i}": v for k in ("grad", "g_star", "g_hat", "implicit", "cg_residual")
                        for i, v in enumerate(st.get(k, []))}})
if method == "init":
    per_task = []  # the shared first task is recorded in every method's own tasks.csv
with io.atomic_path(snakemake.output.tasks) as tmp:
    pd.DataFrame(per_task).to_csv(tmp, index=False)
with io.atomic_path(snakemake.output.metrics) as tmp:
    metrics.to_csv(tmp, index=False)
io.save_checkpoint(snakemake.output.run, state)
io.write_job_provenance(snakemake, {**run, "config": cfg}, seeds={"run": seed}, device=device)
# finished: the outputs hold everything; a later rerun (changed code or inputs) starts afresh
io.finish_run(out_dir)

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
from pathlib import Path

import pandas as pd
import torch

from paper_repro import config as prconfig
from paper_repro import io
from paper_repro.algos import admrl
from paper_repro.job import Job

snakemake = globals()["snakemake"]
p = snakemake.params
family, seed, method = p.family, int(snakemake.wildcards.seed), p.method
cfg = prconfig.from_dict(admrl.Config, {**p.learner, "task_sampler": p.sampler}, f"admrl.learner ({method})")
run = {"config": dataclasses.asdict(cfg), "family": family, "seed": seed, "method": method}
if method != "init":  # a checkpoint of a run started from another first task is not resumed
    run["init"] = io.file_sha256(snakemake.input.init)
job = Job(snakemake, Path(snakemake.output.run).parent, run)
if job.checkpoint.exists():  # the task the kill interrupted is trained, and its rows logged, again from its start
    finished = io.load_checkpoint(job.checkpoint)["j"]
    io.keep_rows(job.progress, lambda row: row["task"] < finished)
device = job.device
logging.info("%s: %s (%s sampler), seed %d, %s, on %s", family, method, cfg.task_sampler, seed, cfg, device)


def scalar(v):
    return v[0] if isinstance(v, list) and len(v) == 1 else v


start_from = io.load_checkpoint(snakemake.input.init) if method != "init" else None
n_tasks = 1 if method == "init" else cfg.n_tasks
log = job.logger(n_tasks, kind=None, unit="training task", count=lambda m: m.get("task", 0),
                 shape=lambda m: {k: scalar(v) for k, v in m.items()})
state = admrl.train(family, cfg, seed=seed, device=device, log=log, checkpoint=str(job.checkpoint),
                    start_from=start_from, stop_after=1 if method == "init" else None)

metrics = pd.DataFrame(job.rows())
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
job.finish({snakemake.output.tasks: pd.DataFrame(per_task), snakemake.output.metrics: metrics},
           {**run, "config": cfg}, seeds={"run": seed}, model=(snakemake.output.run, state))

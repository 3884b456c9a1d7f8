"""MAML with one of MACAW App. C.1's three MLPs on Omniglot (MACAW Fig 6): algos/maml_classifier.py.

Writes model.pt, metrics.csv (every meta-step's meta-batch: query loss and accuracy after adaptation) and
curve.csv (rows of split ``train``, every meta-step's meta-batch accuracy, and ``val``, each fixed validation
task's accuracy every metatrain.eval_every steps), with provenance. Rows go to progress.jsonl as they come,
so a job resumed from its checkpoint keeps those of its earlier life.
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from paper_repro import config as prconfig
from paper_repro import io
from paper_repro.algos import maml_classifier
from paper_repro.job import Job

snakemake = globals()["snakemake"]
p = snakemake.params
cfg = prconfig.from_dict(maml_classifier.Config, p.run["hyper"], "maml_classifier")
seed, method = p.run["seed"], p.run["method"]
with np.load(snakemake.input.data) as f:
    images = f["images"]
    split = {k: f[f"split_{k}"] for k in ("train", "val", "test")}
run = {"config": dataclasses.asdict(cfg), "eval_every": p.eval_every, "data": io.file_sha256(snakemake.input.data),
       "seed": seed}
job = Job(snakemake, Path(snakemake.output.model).parent, run)
logging.info("%s, seed %d: %s on %d training / %d validation characters, on %s", method, seed, cfg,
             len(split["train"]), len(split["val"]), job.device)


def on_eval(metrics, steps):
    job.record("val", [{"train_steps": steps, "task_id": t, **{k: float(v[t]) for k, v in metrics.items()}}
                       for t in range(len(metrics["accuracy"]))])
    logging.info("validation at %d steps: accuracy %.3f over %d tasks", steps, metrics["accuracy"].mean(),
                 len(metrics["accuracy"]))


state = maml_classifier.train(images, split, cfg, seed=seed, log=job.logger(cfg.train_steps, line_every=p.log_every),
                              checkpoint=str(job.checkpoint),
                              checkpoint_every=snakemake.config["metatrain"]["checkpoint_every"], on_eval=on_eval,
                              eval_every=p.eval_every, device=job.device)

metrics = job.table("metrics", ["iteration"])
val = job.table("val", ["train_steps", "task_id"])
train = metrics.rename(columns={"train/accuracy": "accuracy", "train/loss": "loss",
                                "train/prior_accuracy": "prior_accuracy"})
curve = pd.concat([train.assign(split="train", task_id=0)[["split", "train_steps", "task_id", "accuracy", "loss",
                                                          "prior_accuracy"]],
                   val.assign(split="val")[["split", "train_steps", "task_id", "accuracy", "loss", "prior_accuracy"]]],
                  ignore_index=True)
curve = curve.assign(experiment=p.experiment, method=method, seed=seed, ways=cfg.ways, width=maml_classifier.hidden_width(cfg),
                     parameters=sum(v.numel() for v in state["params"].values()))
job.finish({snakemake.output.metrics: metrics, snakemake.output.curve: curve},
           {"method": method, "maml_classifier": cfg, "eval_every": p.eval_every}, seeds={"train": seed},
           model=(snakemake.output.model, state))

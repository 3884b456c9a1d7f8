"""MAML with one of MACAW App. C.1's three MLPs on Omniglot (MACAW Fig 6): algos/maml_classifier.py.

Writes model.pt, metrics.csv (every meta-step's meta-batch: query loss and accuracy after adaptation) and
curve.csv (rows of split ``train``, every meta-step's meta-batch accuracy, and ``val``, each fixed validation
task's accuracy every metatrain.eval_every steps), with provenance. Rows go to progress.jsonl as they come,
so a job resumed from its checkpoint keeps those of its earlier life.
"""

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from paper_repro import config as prconfig
from paper_repro import io
from paper_repro.algos import maml_classifier

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(snakemake.threads)

p = snakemake.params
cfg = prconfig.from_dict(maml_classifier.Config, p.run["hyper"], "maml_classifier")
seed, method = p.run["seed"], p.run["method"]
with np.load(snakemake.input.data) as f:
    images = f["images"]
    split = {k: f[f"split_{k}"] for k in ("train", "val", "test")}
run_dir = Path(snakemake.output.model).parent
run = {"config": dataclasses.asdict(cfg), "eval_every": p.eval_every, "data": io.file_sha256(snakemake.input.data),
       "seed": seed}
checkpoint, progress = io.start_or_resume(run_dir, run)
device = prconfig.resolve_device(p.device)
logging.info("%s, seed %d: %s on %d training / %d validation characters, on %s", method, seed, cfg,
             len(split["train"]), len(split["val"]), device)
start = time.time()


def record(kind, rows):
    io.append_rows(progress, [{"kind": kind, **row} for row in rows])


def log(metrics):
    record("metrics", [{**metrics, "time/elapsed_s": time.time() - start}])
    if metrics["iteration"] % p.log_every == 0:
        logging.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


def on_eval(metrics, steps):
    record("val", [{"train_steps": steps, "task_id": t, **{k: float(v[t]) for k, v in metrics.items()}}
                   for t in range(len(metrics["accuracy"]))])
    logging.info("validation at %d steps: accuracy %.3f over %d tasks", steps, metrics["accuracy"].mean(),
                 len(metrics["accuracy"]))


state = maml_classifier.train(images, split, cfg, seed=seed, log=log, checkpoint=str(checkpoint),
                              checkpoint_every=snakemake.config["metatrain"]["checkpoint_every"], on_eval=on_eval,
                              eval_every=p.eval_every, device=device)

# Rows logged again after a resume replace the ones logged before the crash (they are equal).
rows = io.read_rows(progress)
metrics = pd.DataFrame([r for r in rows if r["kind"] == "metrics"]).drop_duplicates("iteration", keep="last")
val = pd.DataFrame([r for r in rows if r["kind"] == "val"]).drop_duplicates(["train_steps", "task_id"], keep="last")
train = metrics.rename(columns={"train/accuracy": "accuracy", "train/loss": "loss",
                                "train/prior_accuracy": "prior_accuracy"})
curve = pd.concat([train.assign(split="train", task_id=0)[["split", "train_steps", "task_id", "accuracy", "loss",
                                                          "prior_accuracy"]],
                   val.assign(split="val")[["split", "train_steps", "task_id", "accuracy", "loss", "prior_accuracy"]]],
                  ignore_index=True)
curve = curve.assign(experiment=p.experiment, method=method, seed=seed, ways=cfg.ways, width=maml_classifier.hidden_width(cfg),
                     parameters=sum(v.numel() for v in state["params"].values()))
for table, path in ((metrics.drop(columns="kind"), snakemake.output.metrics), (curve, snakemake.output.curve)):
    with io.atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
io.save_checkpoint(snakemake.output.model, state)
io.write_job_provenance(snakemake, {"method": method, "maml_classifier": cfg, "eval_every": p.eval_every},
                        seeds={"train": seed}, device=device)
io.finish_run(run_dir)

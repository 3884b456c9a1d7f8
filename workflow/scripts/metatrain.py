"""Meta-train one algorithm (maml, mier or pearl) on an experiment's training tasks.

Writes model.pt (what the algorithm's adapt_and_evaluate needs), metrics.csv (one row per
iteration) and curve.csv (test-task returns after adaptation, evaluated during meta-training:
MIER Fig. 2), each with provenance. Progress rows go to progress.jsonl as they come, so a job
resumed from its checkpoint keeps the rows of its earlier life.
"""

import dataclasses
import importlib
import json
import logging
import time
from pathlib import Path

import pandas as pd
import torch

from paper_repro import config as prconfig
from paper_repro import envs, evaluate, io

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(snakemake.threads)

p = snakemake.params
exp, name = p.experiment, p.algo
algo = importlib.import_module(f"paper_repro.algos.{name}")
cfg = prconfig.from_dict(algo.Config, p.hyper, name)
family, seed = exp["family"], exp["seed"]
horizon = envs.get_family(family).horizon
train_tasks = pd.read_csv(snakemake.input.train).head(exp["task_limit"]["train"]).to_dict("records")
test_tasks = pd.read_csv(snakemake.input.test).head(exp["task_limit"]["test"]).to_dict("records")
run_dir = Path(snakemake.output.model).parent
checkpoint, progress = run_dir / "checkpoint.pt", run_dir / "progress.jsonl"
# What the result depends on; a checkpoint written for anything else is refused, naming the key
# (run control, such as metatrain.checkpoint_every, is not part of it).
run = {"config": dataclasses.asdict(cfg), "experiment": exp, "eval_every": p.eval_every, "evaluate": p.evaluate}
run_file = run_dir / "checkpoint.run.json"
if checkpoint.exists() and run_file.exists():
    io.check_resumable(checkpoint, io.load_json(run_file), run)
elif not checkpoint.exists():
    progress.unlink(missing_ok=True)  # a fresh start: rows of an earlier run do not belong to this one
    io.save_json(run_file, run)
device = prconfig.resolve_device(p.device)
logging.info("%s: %s on %d %s tasks (%d test tasks), seed %d, %s, on %s", exp["name"], name, len(train_tasks),
             family, len(test_tasks), seed, cfg, device)
start = time.time()


def record(kind, row):
    with open(progress, "a") as f:
        f.write(json.dumps({"kind": kind, **row}) + "\n")


def log(metrics):
    metrics = {**metrics, "time/elapsed_s": time.time() - start}
    record("metrics", metrics)
    logging.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


def on_eval(state, env_steps):
    for row in evaluate.on_test_tasks(algo, state, family, test_tasks, horizon, p.evaluate["adapt_trajectories"],
                                      p.evaluate["episodes"], seed, device=device):
        record("curve", {"env_steps": env_steps, **row})
    logging.info("evaluated %d test tasks at %d environment steps", len(test_tasks), env_steps)


state = algo.train(lambda task: envs.make(family, task), train_tasks, horizon, cfg, seed=seed, log=log,
                   checkpoint=str(checkpoint), checkpoint_every=snakemake.config["metatrain"]["checkpoint_every"],
                   on_eval=on_eval, eval_every=p.eval_every, device=device)

# Rows logged again after a resume replace the ones logged before the crash (they are equal).
rows = [json.loads(line) for line in progress.read_text().splitlines()]
metrics = pd.DataFrame([r for r in rows if r["kind"] == "metrics"]).drop_duplicates("iteration", keep="last")
curve = pd.DataFrame([r for r in rows if r["kind"] == "curve"]).drop_duplicates(
    ["env_steps", "task_id", "stage", "steps"], keep="last")
curve = curve.assign(experiment=exp["name"], family=family, method=name, seed=seed)
for table, path in ((metrics, snakemake.output.metrics), (curve, snakemake.output.curve)):
    with io.atomic_path(path) as tmp:
        table.drop(columns="kind").to_csv(tmp, index=False)
io.save_checkpoint(snakemake.output.model, state)
io.write_job_provenance(snakemake, {"experiment": exp, name: cfg, "eval_every": p.eval_every, "evaluate": p.evaluate},
                        seeds={"train": seed}, device=device)
checkpoint.unlink(missing_ok=True)
run_file.unlink(missing_ok=True)
progress.unlink(missing_ok=True)

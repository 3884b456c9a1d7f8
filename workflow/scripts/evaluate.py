"""Out-of-distribution evaluation of one method: adapt on each test task, then evaluate.

One protocol for every method (config `evaluate`): evaluate.adapt_trajectories trajectories of the
test task to adapt on, then evaluate.episodes episodes. The method's own test-time options (MIER's
relabelling schedule, or the no-relabelling ablation; on AdMRL's experiments its sample schedule,
AdMRL spec 3, and whether the policy sees the task parameter) come in params.options. One row per
test task, stage and step count.
"""

import importlib
import logging

import pandas as pd
import torch

from paper_repro import config as prconfig
from paper_repro import envs, evaluate, io

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(snakemake.threads)

p = snakemake.params
exp, ev = p.experiment, p.evaluate
algo = importlib.import_module(f"paper_repro.algos.{p.algo}")
state = io.load_checkpoint(snakemake.input.model)
family, seed = exp["family"], exp["seed"]
horizon = envs.get_family(family).horizon
tasks = pd.read_csv(snakemake.input.tasks).head(exp["task_limit"]["test"])
device = prconfig.resolve_device(p.device)
logging.info("%s: %s (%s) on %d test tasks, seed %d, on %s", exp["name"], p.method, p.algo, len(tasks), seed, device)

options = dict(p.options)
multitask = options.pop("multitask", False)  # AdMRL's multi-task baselines see the task parameter
rows = [{"experiment": exp["name"], "family": family, "method": p.method, "seed": seed, "task_id": row["task_id"],
         "adapt_trajectories": ev["adapt_trajectories"], **row}
        for row in evaluate.on_test_tasks(algo, state, family, tasks.to_dict("records"), horizon,
                                          ev["adapt_trajectories"], ev["episodes"], seed, device=device,
                                          make_env=lambda task: envs.make(family, task, multitask=multitask), **options)]

out = snakemake.output[0]
with io.atomic_path(out) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)
io.write_job_provenance(snakemake, {"experiment": exp, "method": p.method, "options": p.options, "evaluate": ev,
                                   "model_config": state.get("config")},
                        seeds={"train": seed, "evaluate": seed * 10_000}, device=device)

"""Adapt MAML-TRPO on each test task (evaluate.adapt_trajectories trajectories), then evaluate it."""

import logging

import pandas as pd
import torch

from paper_repro import envs, io
from paper_repro.algos import maml

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(snakemake.threads)

exp, ev = snakemake.params.experiment, snakemake.params.evaluate
state = io.load_checkpoint(snakemake.input.model)
cfg = state["config"]
policy = maml.GaussianMLP(state["obs_dim"], state["act_dim"], cfg.hidden, cfg.init_log_std)
family, seed = exp["family"], exp["seed"]
horizon = envs.get_family(family).horizon
tasks = pd.read_csv(snakemake.input.tasks).head(exp["task_limit"]["test"])

rows = []
for i, task in enumerate(tasks.to_dict("records")):
    result = maml.adapt_and_evaluate(policy, state["params"], lambda: envs.make(family, task), horizon, cfg,
                                     adapt_trajectories=ev["adapt_trajectories"], eval_episodes=ev["episodes"],
                                     seed=seed * 10_000 + i)
    for stage in ("pre", "adapted"):
        rows.append({"experiment": exp["name"], "family": family, "algo": "maml", "seed": seed,
                     "task_id": task["task_id"], "adapt_trajectories": ev["adapt_trajectories"],
                     "stage": stage, "return": result[f"{stage}_return"]})
    logging.info("task %s: %s", task["task_id"], result)

out = snakemake.output[0]
with io.atomic_path(out) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)
io.write_provenance(out, {"experiment": exp, "maml": snakemake.params.maml, "evaluate": ev},
                    seeds={"train": seed, "evaluate": seed * 10_000}, device="cpu", inputs=[snakemake.input.model])

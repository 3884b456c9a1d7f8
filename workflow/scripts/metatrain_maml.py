"""Meta-train MAML-TRPO on an experiment's training tasks: model.pt and metrics.csv (+ provenance)."""

import logging
import time
from pathlib import Path

import pandas as pd
import torch

from paper_repro import config as prconfig
from paper_repro import envs, io
from paper_repro.algos import maml

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(snakemake.threads)

exp = snakemake.params.experiment
cfg = prconfig.from_dict(maml.Config, snakemake.params.maml, "maml")
tasks = pd.read_csv(snakemake.input.tasks).head(exp["task_limit"]["train"]).to_dict("records")
family, seed = exp["family"], exp["seed"]
horizon = envs.get_family(family).horizon
out = Path(snakemake.output.model)
logging.info("%s: MAML-TRPO on %d %s tasks, seed %d, %s", exp["name"], len(tasks), family, seed, cfg)

rows = []
start = time.time()


def log(metrics):
    metrics = {**metrics, "time/elapsed_s": time.time() - start}
    rows.append(metrics)
    logging.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


policy, params = maml.train(lambda task: envs.make(family, task), tasks, horizon, cfg, seed=seed, log=log,
                            checkpoint=str(out.with_name("checkpoint.pt")),
                            checkpoint_every=snakemake.params.checkpoint_every)

with io.atomic_path(snakemake.output.metrics) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)
io.save_checkpoint(out, {"params": params, "config": cfg, "obs_dim": policy.mean[0].in_features,
                         "act_dim": policy.log_std.numel()})
for path in snakemake.output:
    io.write_provenance(path, {"experiment": exp, "maml": snakemake.params.maml}, seeds={"train": seed}, device="cpu")
out.with_name("checkpoint.pt").unlink(missing_ok=True)

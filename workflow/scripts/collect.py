"""Train one SAC/TD3 agent per task of a family, batched; write each task's buffer, curve and policy.

Two uses: MACAW's offline data (every task of the family's collection protocol) and AdMRL's reference
agents (every test task of an experiment: their final returns are A*, the best return per task)."""

import importlib
import logging
from pathlib import Path

import pandas as pd
import torch

from paper_repro import collect, envs, io
from paper_repro import config as prconfig

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(snakemake.threads)

family, seed = snakemake.params.family, int(snakemake.wildcards.seed)
params = dict(snakemake.params.collect)
algo = importlib.import_module(f"paper_repro.algos.{params.pop('algo')}")
cfg = prconfig.from_dict(algo.Config, params, f"collect (family {family})")

# the family's train and test tables (AdMRL's reference agents: the test table alone)
table = pd.concat([pd.read_csv(snakemake.input[split]) for split in ("train", "test") if split in snakemake.input.keys()])
table = table.drop_duplicates("task_id").set_index("task_id", drop=False)
tasks = [table.loc[i].to_dict() for i in snakemake.params.task_ids]
# Task k's randomness depends on (seed, task id) only, never on which other tasks share the job.
seeds = [seed * 100_000 + int(t["task_id"]) for t in tasks]
device = prconfig.resolve_device(snakemake.params.device)
logging.info("%s: %s on %d tasks, seed %d, %s, on %s", family, algo.__name__, len(tasks), seed, cfg, device)

collect.train(
    env_fns=[lambda t=t: envs.make(family, t) for t in tasks],
    algo=algo,
    cfg=cfg,
    out_dir=Path(snakemake.output.metrics).parent,
    seeds=seeds,
    tasks=[{"family": family, **t} for t in tasks],
    names=[f"task{int(t['task_id'])}" for t in tasks],
    device=device,
    # run control comes from the config, not params: it does not change the result (see collect.schema.yaml)
    **snakemake.config["collect"]["run"],
)

io.write_job_provenance(snakemake, {"family": family, "algo": algo.__name__, "config": cfg},
                        seeds={"job": seed, "tasks": seeds}, device=device, tasks=tasks)

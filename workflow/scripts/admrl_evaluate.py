"""AdMRL's test protocol for one model-based method (AdMRL spec 2.5): every test task of an experiment
adapts at once from the run's last snapshot (or the one after params.after_tasks training tasks): zero-shot TRPO in the frozen model (n = 0), then stages of
real samples with model and policy updates (n = 2000, 4000, 6000 at the paper's scale). One row per test
task and n; ψ is set directly, so test tasks outside the training box (admrl-ant-2d-ood) work."""

import logging

import pandas as pd
import torch

from paper_repro import config as prconfig
from paper_repro import envs, io
from paper_repro.algos import admrl

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(snakemake.threads)

p = snakemake.params
exp = p.experiment
family, seed = exp["family"], exp["seed"]
run = io.load_checkpoint(snakemake.input.run)
cfg = prconfig.from_dict(admrl.Config, p.learner, "admrl.learner")  # the test protocol never reads the sampler
tasks = pd.read_csv(snakemake.input.tasks).head(exp["task_limit"]["test"])
keys = list(envs.get_family(family).task_box)
psis = torch.tensor(tasks[keys].to_numpy(), dtype=torch.float64)
# the last snapshot, or the one after params.after_tasks training tasks (Fig. 2: 10 on hopper and walker)
after = getattr(p, "after_tasks", None)
if after is not None and after > len(run["snapshots"]):
    raise ValueError(f"{snakemake.input.run}: {len(run['snapshots'])} snapshots, none after {after} training tasks")
snapshot = (after or len(run["snapshots"])) - 1
device = prconfig.resolve_device(p.device)
logging.info("%s: %s, seed %d, snapshot %d (after %d training tasks), %d test tasks, on %s",
             exp["name"], p.method, seed, snapshot, snapshot + 1, len(tasks), device)


def log(m):
    logging.info(" ".join(f"{k}={v}" for k, v in m.items()))


rows = admrl.adapt_and_evaluate(family, run, snapshot, psis, tasks["task_id"].tolist(), cfg, seed=seed, device=device,
                                log=log)
out = pd.DataFrame([{"experiment": exp["name"], "family": family, "method": p.method, "seed": seed,
                     "snapshot": snapshot, **r} for r in rows])
with io.atomic_path(snakemake.output[0]) as tmp:
    out.to_csv(tmp, index=False)
io.write_job_provenance(snakemake, {"experiment": exp, "method": p.method, "config": cfg, "snapshot": snapshot},
                        seeds={"train": seed, "evaluate": seed}, device=device)

"""AdMRL Fig. 6: the models of every model-based run of one seed (one snapshot per training task) scored on
one fixed out-of-distribution dataset: ``admrl.model_error_samples`` real transitions of each test task of
the experiment (ant-2d's boundary of [-5, 5]²) under its reference SAC agent, stochastic, fixed seeds (AdMRL
spec 4.2), the same for every seed. One row per method and snapshot."""

import logging

import pandas as pd
import torch

from paper_repro import io
from paper_repro.algos import admrl
from paper_repro import envs

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
torch.set_num_threads(snakemake.threads)

p = snakemake.params
family = p.family
tasks = pd.read_csv(snakemake.input.tasks).set_index("task_id")
ids = list(p.task_ids)
psis = torch.tensor(tasks.loc[ids, list(envs.get_family(family).task_box)].to_numpy(), dtype=torch.float64)
actors = [admrl.sac_actor(torch.load(path, weights_only=True)) for path in snakemake.input.policies]
data = admrl.ood_dataset(family, psis, actors, p.samples, [1_000_003 + i for i in ids])
logging.info("%s: %d transitions on each of %d test tasks", p.experiment, p.samples, len(ids))
rows = []
seed = int(snakemake.wildcards.seed)
for path, method in zip(snakemake.input.runs, p.methods):
    for r in admrl.model_errors(io.load_checkpoint(path), data):
        rows.append({"experiment": p.experiment, "family": family, "method": method, "seed": seed, **r})
        logging.info("%s seed %d snapshot %d: rms %.4f, normalised mse %.4f", method, seed, r["task"], r["model_rms"],
                     r["model_mse_normalised"])
with io.atomic_path(snakemake.output[0]) as tmp:
    pd.DataFrame(rows).to_csv(tmp, index=False)
io.write_job_provenance(snakemake, {"experiment": p.experiment, "samples": p.samples, "methods": p.methods},
                        seeds={"run": seed, "dataset": [1_000_003 + i for i in ids]}, device="cpu")

"""The table behind AdMRL Fig. 6 (``plots.admrl.model_error_table``): each model's error on the
out-of-distribution dataset per method, seed and snapshot, and the mean over seeds with its interval."""

import logging

import pandas as pd

from paper_repro import io, plots

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
errors = pd.concat([pd.read_csv(path) for path in snakemake.input.errors], ignore_index=True)
stats = snakemake.params.stats
with io.atomic_path(snakemake.output[0]) as tmp:
    plots.admrl.model_error_table(errors, stats["ci"], stats["bootstrap"]).to_csv(tmp, index=False)
with io.atomic_path(snakemake.output[1]) as tmp:  # the rows, for the figure's claims
    errors.to_csv(tmp, index=False)
io.write_job_provenance(snakemake, dict(stats), seeds=sorted(errors.seed.unique().tolist()), device="cpu")
logging.info("%s: %d model-error rows", snakemake.output[0], len(errors))

"""A figure's claims (config/claims.yaml): each contrast's estimate, interval and verdict, computed by
paper_repro.claims on the rows of the figure's table (results/tables/<figure>.rows.csv), into
results/claims/<figure>.csv. A figure with no claim gets the header alone."""

import logging

import pandas as pd

from paper_repro import claims, io

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
p = snakemake.params
registry = claims.load_registry(snakemake.input.registry)
rows = pd.read_csv(snakemake.input.rows)
table = claims.evaluate_figure(rows, registry, p.figure, p.scale, p.stats["ci"], p.stats["bootstrap"])
with io.atomic_path(snakemake.output[0]) as tmp:
    table.to_csv(tmp, index=False)
logging.info("%s: %s", p.figure, claims.caption_line(table))
io.write_job_provenance(snakemake, {"figure": p.figure, "claims": claims.for_figure(registry, p.figure), **p.stats},
                        seeds=sorted(rows.seed.dropna().astype(int).unique().tolist()) if "seed" in rows else [],
                        device="cpu")

"""Write every split of a family's task protocol: results/tasks/<family>/<protocol>/<split>.csv."""

import logging

from paper_repro import envs, io

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")

family, protocol, seed = snakemake.wildcards.family, snakemake.wildcards.protocol, snakemake.params.seed
tables = envs.task_table(family, protocol, seed=seed)
for split, path in snakemake.output.items():
    with io.atomic_path(path) as tmp:
        tables[split].to_csv(tmp, index=False)
    logging.info("%s/%s/%s: %d tasks, columns %s", family, protocol, split, len(tables[split]), list(tables[split].columns)[:8])
io.write_job_provenance(snakemake, {"family": family, "protocol": protocol, "task_seed": seed},
                        seeds={"task_seed": seed}, device="cpu", splits={s: len(t) for s, t in tables.items()})

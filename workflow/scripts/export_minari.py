"""Write every buffer of params.exports as a Minari dataset under output.root (paper_repro.datasets), with
an index, datasets.csv (id, family, task, algorithm, episodes, steps, source buffer and its SHA-256).

The datasets are written under a temporary name and renamed into place, so a killed job leaves none."""

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from paper_repro import buffers, datasets, io

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")

root = Path(snakemake.output.root)
tmp = root.with_name(root.name + ".tmp")
shutil.rmtree(tmp, ignore_errors=True)
tmp.mkdir(parents=True)
rows = []
for e in snakemake.params.exports:
    ident = datasets.export_buffer(e["buffer"], e["family"], e["algo"], tmp)
    b = buffers.load_buffer(e["buffer"], keys=("terminated", "truncated", "task"))
    task = {k: v for k, v in b["task"].items() if k not in ("family", "task_id")}
    rows.append({"dataset_id": ident, "family": e["family"], "task_id": e["task_id"], "task": json.dumps(task, sort_keys=True),
                 "algorithm": e["algo"], "episodes": len(buffers.episode_bounds(b["terminated"], b["truncated"])[0]),
                 "steps": len(b["terminated"]), "buffer": e["buffer"], "buffer_sha256": io.file_sha256(e["buffer"])})
    logging.info("%s: %d episodes, %d steps, from %s", ident, rows[-1]["episodes"], rows[-1]["steps"], e["buffer"])
pd.DataFrame(rows).to_csv(tmp / "datasets.csv", index=False)
shutil.rmtree(root, ignore_errors=True)
tmp.rename(root)
logging.info("%d datasets under %s", len(rows), root)
io.write_job_provenance(snakemake, {"exports": snakemake.params.exports}, datasets=len(rows))

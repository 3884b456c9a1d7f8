"""Draw a figure from its table (the numbers it draws, already aggregated): results/figures/<figN>_<what>.{pdf,png}
by its drawing in the registry (``plots.figure("<figN>_<what>").plot``, i.e. ``plots.<paper>.<what>``), with its
claims' verdicts (results/claims/<figure>.csv) as a caption line under it."""

import logging
import textwrap

import pandas as pd

from paper_repro import claims, io, plots

snakemake = globals()["snakemake"]
logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
p = snakemake.params[0]
fig_cfg = p["figure"]
draw = plots.figure(fig_cfg["name"]).plot
table = pd.read_csv(snakemake.input.table)
fig = draw(table, p["style"], f"{fig_cfg['paper']}: {fig_cfg['title']} ({p['scale']} scale)")
caption = "Claims: " + claims.caption_line(pd.read_csv(snakemake.input.claims))
fig.text(0.5, 0.0, textwrap.fill(caption, 140), ha="center", va="top", fontsize="x-small")
for path in (snakemake.output.pdf, snakemake.output.png):
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=p["style"]["dpi"], bbox_inches="tight")
io.write_job_provenance(snakemake, p, seeds=sorted(table.seed.dropna().astype(int).unique().tolist()), device="cpu")
logging.info("%s, %s: %s", snakemake.output.pdf, snakemake.output.png, caption)

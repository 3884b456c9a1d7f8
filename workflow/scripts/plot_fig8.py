"""Draw fig8 (MACAW Figs 8-9) from its table."""

import pandas as pd

from paper_repro import io, plots

snakemake = globals()["snakemake"]
p = snakemake.params[0]
fig_cfg = p["figure"]
table = pd.read_csv(snakemake.input.table)
fig = plots.offline_policy_curves(table, p["style"], f"{fig_cfg['title']} ({p['scale']} scale)")
for path in (snakemake.output.pdf, snakemake.output.png):
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=p["style"]["dpi"], bbox_inches="tight")
    io.write_provenance(path, p, seeds=sorted(table.seed.unique().tolist()), device="cpu", inputs=[snakemake.input.table])

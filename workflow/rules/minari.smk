# Minari export: every collected buffer the offline methods read (collection seed 0 of each collected family,
# MACAW's one dataset per task) as a Minari dataset, paper-repro/<family>/task<id>-v0, under
# results/<scale>/minari/ (set MINARI_DATASETS_PATH there and minari.load_dataset finds them; docs/datasets.md).
# Not part of `rule all`: build it by name, `snakemake export_minari`.


rule export_minari:
    output:
        root=directory(f"{SCALE_DIR}/minari"),
    input:
        buffers=[e["buffer"] for e in minari_exports()],
    params:
        code=code("export_minari.py", minari_sources()),
        exports=minari_exports(),
    log:
        f"{SCALE_DIR}/logs/export_minari.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/export_minari.tsv"
    resources:
        runtime=30,
        mem_mb=4000,
    conda:
        CONDA_ENV
    script:
        "../scripts/export_minari.py"

# Every figure in two steps: an aggregation rule writes the tidy table behind it
# (results/tables/<figure>.csv), a cheap plotting rule draws it (results/figures/<figure>.pdf/.png).


rule table_fig8_offline_policy_curves:
    output:
        figure_table("fig8_offline_policy_curves"),
    input:
        curves=collect_curves("fig8_offline_policy_curves"),
    params:
        collect_algo=config["collect"]["algo"],
    log:
        "results/logs/tables/fig8_offline_policy_curves.log",
    benchmark:
        "results/benchmarks/tables/fig8_offline_policy_curves.tsv"
    resources:
        runtime=5,
        mem_mb=2000,
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/table_fig8.py"


rule plot_fig8_offline_policy_curves:
    output:
        **figure_outputs("fig8_offline_policy_curves"),
    input:
        table=figure_table("fig8_offline_policy_curves"),
        code=lib("plots.py"),
    params:
        plot_params("fig8_offline_policy_curves"),
    log:
        "results/logs/plots/fig8_offline_policy_curves.log",
    benchmark:
        "results/benchmarks/plots/fig8_offline_policy_curves.tsv"
    resources:
        runtime=5,
        mem_mb=2000,
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_fig8.py"

# Every figure in two steps: an aggregation rule writes the tidy table behind it
# (results/tables/<figure>.csv), a cheap plotting rule draws it (results/figures/<figure>.pdf/.png).


rule table_fig8_offline_policy_curves:
    output:
        figure_table("fig8_offline_policy_curves"),
        figure_rows("fig8_offline_policy_curves"),
    input:
        curves=collect_files("fig8_offline_policy_curves", "curve.csv"),
        buffers=collect_files("fig8_offline_policy_curves", "npz"),
        tasks=[t for f in figure_collect_algos("fig8_offline_policy_curves") for t in collect_task_tables(f).values()],
    params:
        # buffers.warmup_returns: each task's random-policy return
        code=code("table_fig8.py"),
        collect_algo=figure_collect_algos("fig8_offline_policy_curves"),
        task_tables={f: collect_task_tables(f) for f in figure_collect_algos("fig8_offline_policy_curves")},
        stats=table_stats(),
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


# MIER's and MACAW's figures: evaluations after adaptation (results/<scale>/eval/, MIER Figs 3 and 4) or
# during meta-training (results/<scale>/runs/*/curve.csv, MIER Fig. 2, MACAW Figs 3-5), joined with the
# test tasks' parameters.
for _figure, _results in FIGURE_RESULTS.items():

    rule:
        name:
            f"table_{_figure}"
        output:
            figure_table(_figure),
            figure_rows(_figure),
        input:
            results=_results(_figure),
            tasks=list(figure_test_tables(_figure).values()),
        params:
            code=code("table_results.py"),
            test_tables=figure_test_tables(_figure),
            stats=table_stats(),
        log:
            f"results/logs/tables/{_figure}.log",
        benchmark:
            f"results/benchmarks/tables/{_figure}.tsv"
        resources:
            runtime=5,
            mem_mb=2000,
        localrule: True
        conda:
            CONDA_ENV
        script:
            "../scripts/table_results.py"


for _figure in FIGURES:

    rule:
        name:
            f"plot_{_figure}"
        output:
            **figure_outputs(_figure),
        input:
            table=figure_table(_figure),
            claims=f"results/claims/{_figure}.csv",
        params:
            plot_params(_figure),
            code=code("plot_figure.py"),
        log:
            f"results/logs/plots/{_figure}.log",
        benchmark:
            f"results/benchmarks/plots/{_figure}.tsv"
        resources:
            runtime=5,
            mem_mb=2000,
        localrule: True
        conda:
            CONDA_ENV
        script:
            "../scripts/plot_figure.py"


# AdMRL's figures: the evaluations (model-based, and the model-free baselines' on AdMRL's sample
# schedule), their test tasks, the reference agents' returns (A*; none for Fig. 2, which draws returns)
# and, for Fig. 4, the training tasks each run visited.
for _figure in ADMRL_FIGURES:

    rule:
        name:
            f"table_{_figure}"
        output:
            figure_table(_figure),
            figure_rows(_figure),
        input:
            evals=admrl_evals(_figure),
            best=admrl_best_curves(_figure),
            **({"visited": admrl_task_files(_figure)} if _figure == "fig4_adversarial_tasks" else {}),
            tests=[figure_test_tables(_figure)[n] for n in admrl_eval_experiments(_figure)],
        params:
            code=code("table_admrl.py"),
            test_experiments=admrl_eval_experiments(_figure),
            gap_reference=config["admrl"]["gap_reference"],
            visited_experiments=[f for f in admrl_task_experiments(_figure)],
            stats=table_stats(),
        log:
            f"results/logs/tables/{_figure}.log",
        benchmark:
            f"results/benchmarks/tables/{_figure}.tsv"
        resources:
            runtime=5,
            mem_mb=2000,
        localrule: True
        conda:
            CONDA_ENV
        script:
            "../scripts/table_admrl.py"


# Every figure's claims (config/claims.yaml): estimates, intervals and verdicts from the rows of its table
# (paper_repro.claims); a figure with no claim gets a file with the header only.
for _figure in FIGURES:

    rule:
        name:
            f"claims_{_figure}"
        output:
            figure_claims(_figure),
        input:
            rows=figure_rows(_figure),
            registry=CLAIMS_REGISTRY,
        params:
            code=code("claims.py"),
            figure=_figure,
            scale=SCALE,
            stats=table_stats(),
        log:
            f"results/logs/claims/{_figure}.log",
        benchmark:
            f"results/benchmarks/claims/{_figure}.tsv"
        resources:
            runtime=5,
            mem_mb=2000,
        localrule: True
        conda:
            CONDA_ENV
        script:
            "../scripts/claims.py"

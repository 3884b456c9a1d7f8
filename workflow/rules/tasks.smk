# Task tables: the tasks of every split of every family, sampled once from task_seed.
# One job per (family, protocol) writes all its splits. AdMRL's families have a test split only:
# their training tasks are chosen by the algorithm inside the family's task box.


rule task_tables:
    output:
        train="results/tasks/{family}/{protocol}/train.csv",
        test="results/tasks/{family}/{protocol}/test.csv",
    input:
        task_table_sources,
    params:
        seed=config["task_seed"],
    log:
        "results/logs/task_tables/{family}/{protocol}.log",
    benchmark:
        "results/benchmarks/task_tables/{family}/{protocol}.tsv"
    wildcard_constraints:
        family="|".join(FIXED_TASK_FAMILIES),
    resources:
        runtime=5,
        mem_mb=2000,
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/task_tables.py"


use rule task_tables as task_tables_test_only with:
    output:
        test="results/tasks/{family}/{protocol}/test.csv",
    log:
        "results/logs/task_tables/{family}/{protocol}.log",
    benchmark:
        "results/benchmarks/task_tables/{family}/{protocol}.tsv"
    wildcard_constraints:
        family="|".join(BOX_TASK_FAMILIES),

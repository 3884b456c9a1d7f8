# Task tables: the tasks of every split of every family, sampled once from task_seed.
# One job per (family, protocol) writes all its splits. On AdMRL's task-box families the model-based
# methods choose their own training tasks inside the box; the training split is the model-free
# baselines' pool of 150 uniform tasks (AdMRL Sec. 5), shared by the family's protocols.


rule task_tables:
    output:
        train="results/tasks/{family}/{protocol}/train.csv",
        test="results/tasks/{family}/{protocol}/test.csv",
    params:
        code=code("task_tables.py", job_family_sources),
        seed=config["task_seed"],
    log:
        "results/logs/task_tables/{family}/{protocol}.log",
    benchmark:
        "results/benchmarks/task_tables/{family}/{protocol}.tsv"
    resources:
        runtime=5,
        mem_mb=2000,
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/task_tables.py"

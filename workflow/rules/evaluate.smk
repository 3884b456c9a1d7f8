# Out-of-distribution evaluation, one protocol for every method: adapt on
# evaluate.adapt_trajectories trajectories of each test task, then evaluate.episodes episodes.
# results/eval/<experiment>/<algo>/seed<s>.csv: one row per test task and stage.


rule evaluate_maml:
    output:
        "results/eval/{experiment}/maml/seed{seed}.csv",
    input:
        model="results/runs/{experiment}/maml/seed{seed}/model.pt",
        tasks=experiment_test_table,
        code=algo_sources("maml"),
    params:
        experiment=experiment_params,
        maml=config["maml"],
        evaluate=config["evaluate"],
    log:
        "results/logs/evaluate_maml/{experiment}/seed{seed}.log",
    benchmark:
        "results/benchmarks/evaluate_maml/{experiment}/seed{seed}.tsv"
    threads: 1
    resources:
        runtime=60,
        mem_mb=2000,
        cpus_per_task=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate_maml.py"

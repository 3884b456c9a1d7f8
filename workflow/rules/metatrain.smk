# Meta-training, one rule per algorithm: results/runs/<experiment>/<algo>/seed<s>/.
# Each job checkpoints as it goes and resumes from its checkpoint when rerun.


rule metatrain_maml:
    output:
        model="results/runs/{experiment}/maml/seed{seed}/model.pt",
        metrics="results/runs/{experiment}/maml/seed{seed}/metrics.csv",
    input:
        tasks=experiment_train_table,
        code=algo_sources("maml"),
    params:
        experiment=experiment_params,
        maml=config["maml"],
        checkpoint_every=config["metatrain"]["checkpoint_every"],
    log:
        "results/logs/metatrain_maml/{experiment}/seed{seed}.log",
    benchmark:
        "results/benchmarks/metatrain_maml/{experiment}/seed{seed}.tsv"
    threads: 2
    resources:
        runtime=metatrain_runtime,
        mem_mb=4000,
        cpus_per_task=2,
    conda:
        CONDA_ENV
    script:
        "../scripts/metatrain_maml.py"

# Out-of-distribution evaluation, one protocol for every method: adapt on
# evaluate.adapt_trajectories trajectories of each test task, then evaluate.episodes episodes.
# results/<scale>/eval/<experiment>/<method>/seed<s>.csv: one row per test task, stage and step count.

for _method, (_algo, _) in EVAL_METHODS.items():

    rule:
        name:
            f"evaluate_{_method.replace('-', '_')}"
        output:
            f"{SCALE_DIR}/eval/{{experiment}}/{_method}/seed{{seed}}.csv",
        input:
            model=f"{SCALE_DIR}/runs/{{experiment}}/{_algo}/seed{{seed}}/model.pt",
            tasks=experiment_test_table,
            code=algo_sources(_algo),
            config_code=lib("config.py"),  # the script resolves the device with config.resolve_device
        params:
            algo=_algo,
            method=_method,
            options=eval_options(_method),
            experiment=experiment_params,
            evaluate=eval_protocol(),
            device=config["device"],
        log:
            f"{SCALE_DIR}/logs/evaluate_{_method}/{{experiment}}/seed{{seed}}.log",
        benchmark:
            f"{SCALE_DIR}/benchmarks/evaluate_{_method}/{{experiment}}/seed{{seed}}.tsv"
        threads: 1
        resources:
            runtime=evaluate_runtime(_method),
            mem_mb=4000,
            cpus_per_task=1,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            CONDA_ENV
        script:
            "../scripts/evaluate.py"

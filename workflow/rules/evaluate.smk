# Out-of-distribution evaluation, one protocol for every method: adapt on
# evaluate.adapt_trajectories trajectories of each test task, then evaluate.episodes episodes.
# results/<scale>/eval/<experiment>/<method>/seed<s>.csv: one row per test task, stage and step count.

for _method, (_run, _) in EVAL_METHODS.items():
    _algo = ONLINE_RUNS[_run][0]

    rule:
        name:
            f"evaluate_{_method.replace('-', '_')}"
        output:
            f"{SCALE_DIR}/eval/{{experiment}}/{_method}/seed{{seed}}.csv",
        input:
            model=f"{SCALE_DIR}/runs/{{experiment}}/{_run}/seed{{seed}}/model.pt",
            tasks=experiment_test_table,
        params:
            # the script resolves the device with config.resolve_device
            code=code("evaluate.py", algo_sources(_algo)),
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
        priority: evaluate_chain(_method)
        resources:
            runtime=evaluate_runtime(_method),
            mem_mb=4000,
            cpus_per_task=1,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            CONDA_ENV
        script:
            "../scripts/evaluate.py"


# AdMRL's test protocol for its model-based methods (AdMRL spec 2.5): from the run's last snapshot,
# every test task of the experiment at once: zero-shot in the model (n = 0), then stages of real
# samples (n = 2000, 4000, 6000 at the paper's and quick scales). One row per test task and n.
for _method in MB_METHODS:

    rule:
        name:
            f"evaluate_{_method.replace('-', '_')}"
        output:
            eval_path("{experiment}", _method, "{seed}"),
        input:
            run=admrl_eval_run(_method),
            tasks=experiment_test_table,
        params:
            code=code("admrl_evaluate.py", job_family_sources),
            method=_method,
            experiment=experiment_params,
            learner=admrl_learner(),
            device=config["device"],
        log:
            f"{SCALE_DIR}/logs/evaluate_{_method}/{{experiment}}/seed{{seed}}.log",
        benchmark:
            f"{SCALE_DIR}/benchmarks/evaluate_{_method}/{{experiment}}/seed{{seed}}.tsv"
        threads: 1
        priority: admrl_chain("evaluate")
        resources:
            runtime=admrl_runtime("evaluate"),
            mem_mb=4000,
            cpus_per_task=1,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            CONDA_ENV
        script:
            "../scripts/admrl_evaluate.py"


# AdMRL Fig. 2 evaluates AdMRL's snapshot after 10 training tasks on hopper and walker, as the paper
# counts its samples (AdMRL spec 2.3); where that is the run's last, the evaluation above serves.
rule evaluate_admrl_snapshot:
    output:
        f"{SCALE_DIR}/eval/{{experiment}}/admrl/seed{{seed}}.after{{tasks}}.csv",
    input:
        run=admrl_eval_run("admrl"),
        tasks=experiment_test_table,
    params:
        code=code("admrl_evaluate.py", job_family_sources),
        method="admrl",
        experiment=experiment_params,
        learner=admrl_learner(),
        after_tasks=lambda wildcards: int(wildcards.tasks),
        device=config["device"],
    log:
        f"{SCALE_DIR}/logs/evaluate_admrl/{{experiment}}/seed{{seed}}.after{{tasks}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/evaluate_admrl/{{experiment}}/seed{{seed}}.after{{tasks}}.tsv"
    wildcard_constraints:
        tasks=r"\d+",
    threads: 1
    priority: admrl_chain("evaluate")
    resources:
        runtime=admrl_runtime("evaluate"),
        mem_mb=4000,
        cpus_per_task=1,
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        CONDA_ENV
    script:
        "../scripts/admrl_evaluate.py"


# AdMRL Fig. 6: every snapshot of every model-based run of a seed scored on one out-of-distribution dataset
# (the experiment's test tasks under their reference agents; the same for every seed).
for _experiment in ADMRL_MODEL_ERROR:
    _family = config["experiments"][_experiment]["family"]

    rule:
        name:
            f"model_error_{_experiment.replace('-', '_')}"
        output:
            model_error_path(_experiment),
        input:
            runs=lambda wildcards, e=_experiment, f=_family: [f"{admrl_run_dir(f, m, wildcards.seed)}/run.pt"
                                                             for m in model_error_methods(e)],
            policies=[f"{best_dir(_experiment)}/task{i}.policy.pt" for i in experiment_task_ids(_experiment, "test")],
            tasks=task_table_path(_family, config["experiments"][_experiment]["protocol"], "test"),
        params:
            code=code("admrl_model_error.py", family_sources(_family)),
            experiment=_experiment,
            family=_family,
            task_ids=experiment_task_ids(_experiment, "test"),
            methods=model_error_methods(_experiment),
            samples=config["admrl"]["model_error_samples"],
        log:
            f"{SCALE_DIR}/logs/model_error/{_experiment}/seed{{seed}}.log",
        benchmark:
            f"{SCALE_DIR}/benchmarks/model_error/{_experiment}/seed{{seed}}.tsv"
        threads: 1
        resources:
            runtime=model_error_runtime,
            mem_mb=4000,
            cpus_per_task=1,
        conda:
            CONDA_ENV
        script:
            "../scripts/admrl_model_error.py"


rule table_fig6_model_error:
    output:
        figure_table("fig6_model_error"),
        figure_rows("fig6_model_error"),
    input:
        errors=[model_error_path(n, s) for n in config["figures"]["fig6_model_error"]["experiments"]
                for s in experiment_seeds(n)],
    params:
        code=code("table_model_error.py"),
        stats=table_stats(),
    log:
        "results/logs/tables/fig6_model_error.log",
    benchmark:
        "results/benchmarks/tables/fig6_model_error.tsv"
    resources:
        runtime=5,
        mem_mb=2000,
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../scripts/table_model_error.py"


# MACAW Table 1: each test task's offline adaptation step, then online fine-tuning (finetune.*): the
# method's run on the experiment's training tasks, the test tasks' buffers for the offline step.
# results/<scale>/eval/<experiment>/<method>-ft/seed<s>.csv: one row per test task and evaluation point.
for _method, _algo in FINETUNE_ALGOS.items():

    rule:
        name:
            f"finetune_{_method.replace('-', '_')}"
        output:
            finetune_path("{experiment}", _method, "{seed}"),
        input:
            unpack(offline_buffers),
            model=f"{SCALE_DIR}/runs/{{experiment}}/{_method}/seed{{seed}}/model.pt",
            tasks=experiment_test_table,
        params:
            code=code("finetune.py", algo_sources(_algo)),
            algo=_algo,
            method=_method,
            experiment=experiment_params,
            protocol=finetune_protocol(),
            hyper=config["finetune"][_algo],
            device=config["device"],
        log:
            f"{SCALE_DIR}/logs/finetune_{_method}/{{experiment}}/seed{{seed}}.log",
        benchmark:
            f"{SCALE_DIR}/benchmarks/finetune_{_method}/{{experiment}}/seed{{seed}}.tsv"
        threads: 1
        priority: int(minutes(finetune_runtime))
        resources:
            runtime=finetune_runtime,
            mem_mb=offline_mem_mb,
            cpus_per_task=1,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            CONDA_ENV
        script:
            "../scripts/finetune.py"

# Meta-training, one rule per online run (ONLINE_RUNS: an algorithm, its switches, and whether it sees
# the task parameter): results/<scale>/runs/<experiment>/<run>/seed<s>/.
# Each job checkpoints as it goes and resumes from its checkpoint when rerun.

for _run, (_algo, _switches, _multitask) in ONLINE_RUNS.items():

    rule:
        name:
            f"metatrain_{_run.replace('-', '_')}"
        output:
            model=f"{SCALE_DIR}/runs/{{experiment}}/{_run}/seed{{seed}}/model.pt",
            metrics=f"{SCALE_DIR}/runs/{{experiment}}/{_run}/seed{{seed}}/metrics.csv",
            curve=f"{SCALE_DIR}/runs/{{experiment}}/{_run}/seed{{seed}}/curve.csv",
        input:
            train=experiment_train_table,
            test=experiment_test_table,
        params:
            # the script builds the algorithm's Config with config.from_dict
            code=code("metatrain.py", algo_sources(_algo)),
            algo=_algo,
            method=_run,
            multitask=_multitask,
            experiment=experiment_params,
            hyper=algo_config(_algo, _switches),
            eval_every=config["metatrain"]["eval_every"][_algo],
            evaluate=training_eval_protocol(),
            device=config["device"],
        log:
            f"{SCALE_DIR}/logs/metatrain_{_run}/{{experiment}}/seed{{seed}}.log",
        benchmark:
            f"{SCALE_DIR}/benchmarks/metatrain_{_run}/{{experiment}}/seed{{seed}}.tsv"
        threads: 1
        priority: online_chain(_run)
        resources:
            runtime=online_runtime(_run),
            mem_mb=metatrain_mem_mb(_algo),
            cpus_per_task=1,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            CONDA_ENV
        script:
            "../scripts/metatrain.py"


# Offline meta-training (MACAW and its baselines), one rule per method: the training tasks' collected
# buffers in, no environment interaction but the evaluations on the test tasks, each adapted on that
# task's own offline data. results/<scale>/runs/<experiment>/<method>/seed<s>/, as above; curve.csv is
# the learning curve that MACAW's Figs 3-5 draw.
for _method, (_algo, _) in OFFLINE_METHODS.items():

    rule:
        name:
            f"metatrain_{_method.replace('-', '_')}"
        output:
            model=f"{SCALE_DIR}/runs/{{experiment}}/{_method}/seed{{seed}}/model.pt",
            metrics=f"{SCALE_DIR}/runs/{{experiment}}/{_method}/seed{{seed}}/metrics.csv",
            curve=f"{SCALE_DIR}/runs/{{experiment}}/{_method}/seed{{seed}}/curve.csv",
        input:
            unpack(offline_buffers),
            train=experiment_train_table,
            test=experiment_test_table,
        params:
            code=code("metatrain.py", algo_sources(_algo)),
            algo=_algo,
            method=_method,
            experiment=experiment_params,
            hyper=offline_config(_method),
            eval_every=config["metatrain"]["eval_every"][_algo],
            evaluate=offline_eval_protocol(),
            device=config["device"],
        log:
            f"{SCALE_DIR}/logs/metatrain_{_method}/{{experiment}}/seed{{seed}}.log",
        benchmark:
            f"{SCALE_DIR}/benchmarks/metatrain_{_method}/{{experiment}}/seed{{seed}}.tsv"
        threads: 1
        priority: offline_chain(_method)
        resources:
            runtime=offline_runtime(_method),
            mem_mb=offline_mem_mb,
            cpus_per_task=1,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            CONDA_ENV
        script:
            "../scripts/metatrain.py"


# AdMRL's model-based methods (AdMRL, MB-Unif, MB-Gauss: one learner, three task samplers) on a family's
# task box: results/<scale>/runs/admrl/<family>/<method>/seed<s>/ with run.pt (a snapshot after every
# training task), tasks.csv (the tasks it visited) and metrics.csv. The first training task is shared by
# the three methods of a seed and computed once (the authors' --inittask), in .../init/seed<s>/.


rule metatrain_admrl_init:
    output:
        run=f"{admrl_run_dir('{family}', 'init')}/run.pt",
        tasks=f"{admrl_run_dir('{family}', 'init')}/tasks.csv",
        metrics=f"{admrl_run_dir('{family}', 'init')}/metrics.csv",
    input:
    params:
        code=code("admrl_train.py", job_family_sources),
        family=lambda wildcards: wildcards.family,
        method="init",
        sampler="adversarial",  # task 0 is the same for every sampler (x = 0.3)
        learner=admrl_learner(training=True),
        device=config["device"],
    log:
        f"{SCALE_DIR}/logs/metatrain_admrl_init/{{family}}/seed{{seed}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/metatrain_admrl_init/{{family}}/seed{{seed}}.tsv"
    threads: 1
    priority: admrl_chain("init")
    resources:
        runtime=admrl_runtime("init"),
        mem_mb=4000,
        cpus_per_task=1,
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        CONDA_ENV
    script:
        "../scripts/admrl_train.py"


for _method, _sampler in MB_METHODS.items():

    rule:
        name:
            f"metatrain_{_method.replace('-', '_')}"
        output:
            run=f"{admrl_run_dir('{family}', _method)}/run.pt",
            tasks=f"{admrl_run_dir('{family}', _method)}/tasks.csv",
            metrics=f"{admrl_run_dir('{family}', _method)}/metrics.csv",
        input:
            init=f"{admrl_run_dir('{family}', 'init')}/run.pt",
        params:
            code=code("admrl_train.py", job_family_sources),
            family=lambda wildcards: wildcards.family,
            method=_method,
            sampler=_sampler,
            learner=admrl_learner(training=True),
            device=config["device"],
        log:
            f"{SCALE_DIR}/logs/metatrain_{_method}/{{family}}/seed{{seed}}.log",
        benchmark:
            f"{SCALE_DIR}/benchmarks/metatrain_{_method}/{{family}}/seed{{seed}}.tsv"
        threads: 1
        priority: admrl_chain("train")
        resources:
            runtime=admrl_runtime("train"),
            mem_mb=4000,
            cpus_per_task=1,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            CONDA_ENV
        script:
            "../scripts/admrl_train.py"


# MACAW Fig. 6: MAML on 20-way 1-shot Omniglot with App. C.1's three MLPs. The user's data (never
# downloaded; at the smoke scale a generated stand-in) becomes one array of 28x28 images with the split,
# then each MLP meta-trains on it: results/<scale>/runs/omniglot/<method>/seed<s>/curve.csv.


rule omniglot_data:
    output:
        data=f"{SCALE_DIR}/omniglot/omniglot28.npz",
    input:
        sources=omniglot_sources,
    params:
        code=code("omniglot_data.py"),
        root=None if config["omniglot"]["fixture"] else omniglot_root(),  # the stand-in reads no user data
        split_seed=config["omniglot"]["split_seed"],
        fixture=config["omniglot"]["fixture"],
    log:
        f"{SCALE_DIR}/logs/omniglot_data.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/omniglot_data.tsv"
    threads: 1
    resources:
        runtime=20,
        mem_mb=4000,
        cpus_per_task=1,
    conda:
        CONDA_ENV
    script:
        "../scripts/omniglot_data.py"


rule metatrain_omniglot:
    output:
        model=f"{SCALE_DIR}/runs/omniglot/{{method}}/seed{{seed}}/model.pt",
        metrics=f"{SCALE_DIR}/runs/omniglot/{{method}}/seed{{seed}}/metrics.csv",
        curve=f"{SCALE_DIR}/runs/omniglot/{{method}}/seed{{seed}}/curve.csv",
    input:
        data=f"{SCALE_DIR}/omniglot/omniglot28.npz",
    params:
        code=code("omniglot_train.py"),
        experiment=omniglot_experiment(),
        run=omniglot_run,
        eval_every=config["metatrain"]["eval_every"]["maml_classifier"],
        log_every=config["metatrain"]["log_every"]["maml_classifier"],
        device=config["device"],
    wildcard_constraints:
        method="|".join(OMNIGLOT_METHODS),
    log:
        f"{SCALE_DIR}/logs/metatrain_omniglot/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{SCALE_DIR}/benchmarks/metatrain_omniglot/{{method}}/seed{{seed}}.tsv"
    threads: 1
    priority: int(minutes(metatrain_runtime("maml_classifier")))
    resources:
        runtime=metatrain_runtime("maml_classifier"),
        mem_mb=metatrain_mem_mb("maml_classifier"),
        cpus_per_task=1,
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        CONDA_ENV
    script:
        "../scripts/omniglot_train.py"

# Per-task SAC/TD3 agents: every task of a family trained as one batched job (paper_repro.collect).
# Their lifetime replay buffers are the offline data of MACAW and its baselines (MACAW App. D.2).
# One rule per family, since the tasks (and so the output files) differ per family:
#   results/<scale>/data/<family>/<algo>/seed<s>/task<id>.{npz,curve.csv,policy.pt} and metrics.csv
# A job's checkpoint.pt sits beside its outputs: it survives a failed job, so a rerun resumes.

for _family in COLLECT_FAMILIES:

    rule:
        name:
            f"collect_{_family}"
        output:
            **collect_outputs(_family),
        input:
            **collect_task_tables(_family),
        params:
            code=code("collect.py", collect_sources(_family)),
            family=_family,
            task_ids=collect_task_ids(_family),
            collect=collect_params(_family),
            device=config["device"],
        log:
            f"{SCALE_DIR}/logs/collect/{_family}/seed{{seed}}.log",
        benchmark:
            f"{SCALE_DIR}/benchmarks/collect/{_family}/seed{{seed}}.tsv"
        threads: 2
        priority: collect_chain(_family)
        resources:
            runtime=collect_runtime(_family),
            mem_mb=collect_mem_mb(_family),
            cpus_per_task=2,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            CONDA_ENV
        script:
            "../scripts/collect.py"


# AdMRL's reference agents: one SAC agent per test task of an experiment, all of them one batched job
# (the same machinery); each agent's final deterministic return is the task's A* candidate.
for _experiment in ADMRL_EXPERIMENTS:

    rule:
        name:
            f"best_{_experiment.replace('-', '_')}"
        output:
            **best_outputs(_experiment),
        input:
            test=task_table_path(config["experiments"][_experiment]["family"],
                                 config["experiments"][_experiment]["protocol"], "test"),
        params:
            code=code("collect.py", collect_sources_for(config["experiments"][_experiment]["family"], "sac")),
            family=config["experiments"][_experiment]["family"],
            task_ids=experiment_task_ids(_experiment, "test"),
            collect=best_params(),
            device=config["device"],
        log:
            f"{SCALE_DIR}/logs/best/{_experiment}/seed{{seed}}.log",
        benchmark:
            f"{SCALE_DIR}/benchmarks/best/{_experiment}/seed{{seed}}.tsv"
        threads: 2
        priority: int(minutes(best_runtime(_experiment)))
        resources:
            runtime=best_runtime(_experiment),
            mem_mb=6000,
            cpus_per_task=2,
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            CONDA_ENV
        script:
            "../scripts/collect.py"

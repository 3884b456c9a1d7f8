# What each job reads (input functions), which tasks and seeds enter each experiment, and the targets.


def experiment_task_tables(name):
    exp = config["experiments"][name]
    if "family" not in exp:
        return []
    return [task_table_path(exp["family"], exp["protocol"], s) for s in envs.splits(exp["family"], exp["protocol"])]


def all_task_tables():
    return sorted({t for name in config["experiments"] for t in experiment_task_tables(name)})


FIGURES = list(config["figures"])  # every figure, in the config's order: the one list of them


def all_targets():
    """What `snakemake` builds with no target: every task table and every figure that can be built (fig6
    only where the user has supplied Omniglot; the log says when it is left out)."""
    figures = list(FIGURES)
    if not omniglot_available():
        figures.remove("fig6_weight_transform_omniglot")
        logger.warning(f"paper-repro: fig6_weight_transform_omniglot left out: {omniglot.missing_message(omniglot_root())}")
    return all_task_tables() + [f"results/figures/{f}.pdf" for f in figures] + [f"results/claims/{f}.csv" for f in figures]


# The experiments behind the figures built so far: only their tasks need offline data.
BUILT_EXPERIMENTS = {name for figure in FIGURES for name in config["figures"][figure]["experiments"]}


def uses_offline_data(name):
    """Whether an experiment behind a built figure runs sac or td3 or learns from their buffers (not a
    supervised one: MACAW Fig. 6's Omniglot names a dataset, no family)."""
    exp = config["experiments"][name]
    return name in BUILT_EXPERIMENTS and "family" in exp and bool({"sac", "td3", *OFFLINE_METHODS} & set(exp["methods"]))


# Families whose offline data some experiment uses.
COLLECT_FAMILIES = sorted({config["experiments"][name]["family"] for name in config["experiments"] if uses_offline_data(name)})


@functools.cache
def protocol_tables(family, protocol):
    """A protocol's split tables (split -> DataFrame, never modified): the DAG asks for them hundreds of times."""
    return envs.task_table(family, protocol, seed=config["task_seed"])


def experiment_task_ids(name, split):
    """The task ids of an experiment's split that enter its runs (its task limit applied), in table order."""
    exp = config["experiments"][name]
    table = protocol_tables(exp["family"], exp["protocol"])[split]
    return [int(i) for i in table["task_id"].head(experiment_task_limit(name)[split])]


def collect_task_ids(family):
    """The tasks that get an agent: the first task_limit tasks of each split of MACAW's protocol, in table
    order, then every other task that an offline experiment on the family trains or tests on (e.g. all 40
    cheetah velocities for the task-sparsity protocols), in id order."""
    tables = protocol_tables(family, COLLECT_PROTOCOL)
    ids = []
    for split, limit in (("train", config["task_limit"]["train"]), ("test", config["task_limit"]["test"])):
        ids += [int(i) for i in tables[split]["task_id"].head(limit) if int(i) not in ids]
    needed = {i for name, e in config["experiments"].items() if e.get("family") == family and uses_offline_data(name)
              for split in ("train", "test") for i in experiment_task_ids(name, split)}
    return ids + sorted(needed - set(ids))


def collect_outputs(family):
    d = collect_dir(family)
    out = {"metrics": f"{d}/metrics.csv"}
    for i in collect_task_ids(family):
        for kind, suffix in (("buffer", "npz"), ("curve", "curve.csv"), ("policy", "policy.pt")):
            out[f"{kind}_{i}"] = f"{d}/task{i}.{suffix}"
    return out


def collect_task_tables(family):
    return {s: task_table_path(family, COLLECT_PROTOCOL, s) for s in ("train", "test")}


def figure_collect_algos(figure):
    """Family -> collecting agent, for the families of a figure's experiments only."""
    families = {config["experiments"][name]["family"] for name in config["figures"][figure]["experiments"]}
    return {f: config["collect"]["algo"][f] for f in sorted(families)}


def collect_files(figure, suffix):
    """Every per-task collection file ``task<id>.<suffix>`` behind a figure: its experiments' families,
    every seed (suffix "curve.csv": learning curves; "npz": buffers)."""
    files = []
    for name in config["figures"][figure]["experiments"]:
        exp = config["experiments"][name]
        for seed in experiment_seeds(name):
            d = collect_dir(exp["family"], seed)
            files += [f"{d}/task{i}.{suffix}" for i in collect_task_ids(exp["family"])]
    return files


def experiment_task_limit(name):
    """The scale's task limit for one experiment: task_limit.{train,test}, updated by its own entry in
    task_limit.experiments (e.g. every negated-joint test task at the quick scale)."""
    limit = config["task_limit"]
    return {**{k: limit[k] for k in ("train", "test")}, **limit.get("experiments", {}).get(name, {})}


def experiment_train_table(wildcards):
    exp = config["experiments"][wildcards.experiment]
    return task_table_path(exp["family"], exp["protocol"], "train")


def experiment_test_table(wildcards):
    exp = config["experiments"][wildcards.experiment]
    return task_table_path(exp["family"], exp["protocol"], "test")


def offline_buffers(wildcards):
    """The experiment's training and test tasks' buffers, from the family's collection seed 0 (one dataset
    reused by every meta-learning seed, as MACAW has one per task), in task-table order."""
    exp = config["experiments"][wildcards.experiment]
    d = collect_dir(exp["family"], 0)
    return {f"{split}_buffers": [f"{d}/task{i}.npz" for i in experiment_task_ids(wildcards.experiment, split)]
            for split in ("train", "test")}


def experiment_seeds(name):
    return range(config["seeds"][config["experiments"][name]["paper"]])


def eval_files(figure):
    """Every evaluation table behind a figure: its experiments' evaluated methods, every seed."""
    return [eval_path(name, method, seed)
            for name in config["figures"][figure]["experiments"]
            for method in figure_methods(figure, name) if method in EVAL_METHODS
            for seed in experiment_seeds(name)]


def figure_methods(figure, name):
    """The methods of experiment ``name`` that a figure draws: all of them, or those the figure lists."""
    methods = config["experiments"][name]["methods"]
    return [m for m in methods if m in config["figures"][figure].get("methods", methods)]


def run_curves(figure):
    """Every during-training evaluation curve behind a figure (MIER Fig. 2; MACAW Figs 3-5)."""
    return [f"{SCALE_DIR}/runs/{name}/{run}/seed{seed}/curve.csv"
            for name in config["figures"][figure]["experiments"]
            for run in figure_methods(figure, name) if run in ONLINE_RUNS or run in OFFLINE_METHODS
            for seed in experiment_seeds(name)]


def omniglot_root():
    """Where the user's Omniglot data is read (unused where omniglot.fixture asks for the stand-in)."""
    return config["omniglot"]["root"]


def omniglot_available():
    return bool(config["omniglot"]["fixture"]) or omniglot.source_files(omniglot_root()) is not None


def omniglot_sources(wildcards):
    """The user's two Omniglot sets (folders or zips); asking for them when absent stops before any job,
    naming the path and what to put there."""
    if config["omniglot"]["fixture"]:
        return []
    files = omniglot.source_files(omniglot_root())
    if files is None:
        raise WorkflowError(omniglot.missing_message(omniglot_root()))
    return [str(f) for f in files]


def omniglot_experiment():
    """The experiment that names the Omniglot dataset (macaw-omniglot)."""
    return next(n for n, e in config["experiments"].items() if e.get("dataset") == "omniglot")


def omniglot_curves(figure):
    return [f"{SCALE_DIR}/runs/omniglot/{method}/seed{seed}/curve.csv"
            for name in config["figures"][figure]["experiments"]
            for method in figure_methods(figure, name) if method in OMNIGLOT_METHODS
            for seed in experiment_seeds(name)]


def finetune_seeds(name):
    """The meta-training seeds of experiment ``name`` that are fine-tuned: the first finetune.seeds of them (the
    paper fine-tunes one run; each further seed is its own rows of Table 1, at the cost of a whole job)."""
    return experiment_seeds(name)[: config["finetune"]["seeds"]]


def finetune_files(figure):
    """Every fine-tuning table behind a figure: its experiments' fine-tuned methods, each fine-tuned seed."""
    return [finetune_path(name, method, seed)
            for name in config["figures"][figure]["experiments"]
            for method in figure_methods(figure, name) if method in FINETUNE_ALGOS
            for seed in finetune_seeds(name)]


# MIER's figures -> the result files behind each (an input function of the figure),
# and MACAW's (learning curves of the offline methods, evaluated during meta-training).
FIGURE_RESULTS = {
    "fig2_sample_efficiency": run_curves,
    "fig3_reward_extrapolation": eval_files,
    "fig4_dynamics_extrapolation": eval_files,
    "fig3_offline_meta_rl": run_curves,
    "fig4_macaw_ablations": run_curves,
    "fig5_weight_transform_ablation": run_curves,
    "fig6_weight_transform_omniglot": omniglot_curves,
    "table1_online_finetuning": finetune_files,
    "fig7_metaworld_ml45": run_curves,
}


def figure_test_tables(figure):
    """Experiment -> its test-task table, for a figure's experiments (to join task parameters onto returns;
    none for a supervised experiment, which names a dataset instead of a family)."""
    experiments = {name: config["experiments"][name] for name in config["figures"][figure]["experiments"]}
    return {name: task_table_path(e["family"], e["protocol"], "test") for name, e in experiments.items() if "family" in e}


def admrl_eval_run(method):
    def run(wildcards):
        return f"{admrl_run_dir(config['experiments'][wildcards.experiment]['family'], method, wildcards.seed)}/run.pt"
    return run


def best_outputs(experiment):
    d = best_dir(experiment, "{seed}")
    out = {"metrics": f"{d}/metrics.csv"}
    for i in experiment_task_ids(experiment, "test"):
        for kind, suffix in (("buffer", "npz"), ("curve", "curve.csv"), ("policy", "policy.pt")):
            out[f"{kind}_{i}"] = f"{d}/task{i}.{suffix}"
    return out


def admrl_eval_experiments(figure):
    """The experiments whose test-task evaluations a figure draws (all but Fig. 4a's visited tasks)."""
    return [n for n in config["figures"][figure]["experiments"] if n not in VISITED_ONLY.get(figure, [])]


def admrl_gap_experiments(figure):
    """... and of those, the ones drawn as gaps (they need reference agents)."""
    return [] if figure in RETURNS_ONLY else admrl_eval_experiments(figure)


def admrl_snapshot_eval(name, seed):
    """AdMRL's evaluation for Fig. 2: its snapshot after admrl.adaptation_snapshot[family] training tasks,
    or the run's last (the evaluation every other figure uses) where the run has no more tasks than that."""
    after = config["admrl"]["adaptation_snapshot"].get(config["experiments"][name]["family"])
    if after is None or after >= config["admrl"]["learner"]["n_tasks"]:
        return eval_path(name, "admrl", seed)
    return f"{SCALE_DIR}/eval/{name}/admrl/seed{seed}.after{after}.csv"


def admrl_evals(figure):
    """Every evaluation behind an AdMRL figure: the model-based methods' (Fig. 2: AdMRL's chosen snapshot)
    and the model-free baselines' on AdMRL's sample schedule."""
    files = []
    for name in admrl_eval_experiments(figure):
        for method in figure_methods(figure, name):
            for seed in experiment_seeds(name):
                if figure in RETURNS_ONLY and method == "admrl":
                    files.append(admrl_snapshot_eval(name, seed))
                elif method in MB_METHODS or method in EVAL_METHODS:
                    files.append(eval_path(name, method, seed))
    return files


def admrl_best_curves(figure):
    """The reference agents' curves (A*) of every test task behind a figure's gaps."""
    return [f"{best_dir(name)}/task{i}.curve.csv" for name in admrl_gap_experiments(figure)
            for i in experiment_task_ids(name, "test")]


def admrl_task_experiments(figure):
    """One experiment name per file of ``admrl_task_files``."""
    return [name for name in VISITED_ONLY.get(figure, [])
            for method in figure_methods(figure, name) if method in MB_METHODS
            for seed in experiment_seeds(name)]


def admrl_task_files(figure):
    """The training tasks each model-based run visited (tasks.csv), for Fig. 4a's experiments."""
    return [f"{admrl_run_dir(config['experiments'][name]['family'], method, seed)}/tasks.csv"
            for name in VISITED_ONLY.get(figure, [])
            for method in figure_methods(figure, name) if method in MB_METHODS
            for seed in experiment_seeds(name)]


# The AdMRL experiments whose gaps a built figure draws: each gets reference agents (A*).
ADMRL_EXPERIMENTS = sorted({name for figure in ADMRL_FIGURES
                            for name in admrl_gap_experiments(figure)}
                           | set(config["figures"]["fig6_model_error"]["experiments"]))


# AdMRL Fig. 6's experiments: their models scored on their test tasks' reference-agent data.
ADMRL_MODEL_ERROR = config["figures"]["fig6_model_error"]["experiments"]


def model_error_methods(experiment):
    """The model-based methods whose models Fig. 6 scores, one run each per seed."""
    return [m for m in figure_methods("fig6_model_error", experiment) if m in MB_METHODS]


def minari_exports():
    """One entry per Minari dataset: every buffer the offline methods read (collection seed 0 of each collected
    family): the family, its collecting algorithm, the task id and the buffer."""
    return [{"family": f, "algo": config["collect"]["algo"][f], "task_id": i, "buffer": f"{collect_dir(f, 0)}/task{i}.npz"}
            for f in COLLECT_FAMILIES for i in collect_task_ids(f)]

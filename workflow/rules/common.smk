# Config validation, wildcard constraints and every input function.

import functools
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from paper_repro import config as prconfig
from paper_repro import digests
from paper_repro import envs, omniglot

min_version("9.0")

ROOT = Path(workflow.basedir)
LIB = Path("src/paper_repro")  # library files are named relative to ROOT (code maps, provenance)

# Merge config/scales/<scale>.yaml under the user's config and validate the result
# before any job starts; a typo stops here with the key, the value and what is allowed.
try:
    config.update(prconfig.resolve(config, ROOT))
except prconfig.ConfigError as e:
    sys.exit(f"paper-repro: {e}")

SCALE = config["scale"]
# The expensive results of a scale (collected data, meta-training runs, evaluations) and their logs live
# under results/<scale>/, so switching scale never overwrites or reruns another scale's. Task tables
# (results/tasks/), figure tables (results/tables/) and figures (results/figures/) are cheap and shared:
# they show the scale they were built at and are rebuilt when it changes.
SCALE_DIR = f"results/{SCALE}"
CONDA_ENV = "../envs/paper-repro.yaml"  # relative to workflow/rules/

# Jobs import this checkout's library, whether or not it is installed (and on cluster nodes).
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))


# --- library code behind each result (so editing one reruns what it feeds) ---
# A job's code is not among its inputs but its `code` param, {file: digest of its AST, docstrings aside}
# (paper_repro.digests) of its script and the library files it runs: editing a module's code reruns
# exactly the jobs that list it; a comment, a docstring or a touch of a library file reruns nothing
# (Snakemake itself reruns a script's jobs when the script is newer). Each output's provenance records it.

ENVS_SHARED = [str(LIB / "envs" / n) for n in ("__init__.py", "registration.py", "tasks.py")]
ROBOT_MODULE = {"metaworld": "meta_world.py"}  # robot -> module where it is not <robot>.py
FAMILY_DATA = {"cheetah-highdim": ["admrl_cheetah_highdim_stats.json"]}  # family -> files in envs/data/ it reads


def family_sources(family):
    """The family's own module and data plus the shared registry and task sampling."""
    robot = family.split("-")[0]
    data = [str(LIB / "envs" / "data" / name) for name in FAMILY_DATA.get(family, [])]
    return ENVS_SHARED + [str(LIB / "envs" / ROBOT_MODULE.get(robot, f"{robot}.py"))] + data


def lib(*names):
    return [str(LIB / n) for n in names]


# The figures' tables and drawings (paper_repro.plots): its registry (__init__.py) imports every paper's
# module, so each job that imports the package runs them all; stats.py computes their intervals.
PLOTS_SOURCES = ["plots/__init__.py", "plots/common.py", "plots/mier.py", "plots/admrl.py", "plots/macaw.py",
                 "stats.py"]


def code(script, *parts):
    """A job's `code` param: its script (workflow/scripts/<script>) and the library files in ``parts``,
    lists of them or functions of the wildcards that return one."""
    if any(callable(part) for part in parts):
        return lambda wildcards: code(script, *(part(wildcards) if callable(part) else part for part in parts))
    return digests.code_map([f"workflow/scripts/{script}", *(f for part in parts for f in part)], ROOT)


# --- task tables ---


def task_table_path(family, protocol, split):
    return f"results/tasks/{family}/{protocol}/{split}.csv"


def experiment_task_tables(name):
    exp = config["experiments"][name]
    if "family" not in exp:
        return []
    return [task_table_path(exp["family"], exp["protocol"], s) for s in envs.splits(exp["family"], exp["protocol"])]


def task_table_sources(wildcards):
    return family_sources(wildcards.family) + lib("io.py")


def all_task_tables():
    return sorted({t for name in config["experiments"] for t in experiment_task_tables(name)})


# --- figures ---


def figure_outputs(name):
    """A figure's PDF and PNG, both in `snakemake --report` (caption workflow/report/<name>.rst);
    the PNG shows inline in any browser, the PDF is the print version."""
    fig = config["figures"][name]
    return {
        kind: report(
            f"results/figures/{name}.{kind}",
            caption=f"../report/{name}.rst",
            category=fig["paper"],
            subcategory=name,
            labels={"figure": name, "format": kind.upper(), "scale": SCALE},
        )
        for kind in ("pdf", "png")
    }


def figure_table(name):
    """The tidy table a figure is drawn from."""
    return f"results/tables/{name}.csv"


def figure_rows(name):
    """The rows a figure's table aggregates (one per method, seed, test task and evaluation): what its
    claims are tested on."""
    return f"results/tables/{name}.rows.csv"


CLAIMS_REGISTRY = "config/claims.yaml"


def figure_claims(name):
    """A figure's claims (config/claims.yaml) with estimates, intervals and verdicts; shown in the report."""
    fig = config["figures"][name]
    return report(f"results/claims/{name}.csv", caption="../report/claims.rst", category=fig["paper"],
                  subcategory=name, labels={"figure": name, "format": "claims", "scale": SCALE})


STATS_KEYS = ("ci", "bootstrap")  # of config `plot`: the table stage computes the intervals


def plot_params(name):
    """Plot params: the style and the figure's own entry, nothing else."""
    style = {k: v for k, v in config["plot"].items() if k not in STATS_KEYS}
    return {"style": style, "figure": {"name": name, **config["figures"][name]}, "scale": SCALE}


def table_stats():
    """Table params: the confidence level and bootstrap resamples of the intervals the figures draw."""
    return {k: config["plot"][k] for k in STATS_KEYS}


# --- targets ---


FIGURES_BUILT = [  # the figures whose stages exist so far
    "fig2_sample_efficiency",
    "fig3_reward_extrapolation",
    "fig4_dynamics_extrapolation",
    "fig3_offline_meta_rl",
    "fig4_macaw_ablations",
    "fig5_weight_transform_ablation",
    "fig8_offline_policy_curves",
    "fig3_worst_case_gap",
    "fig4_adversarial_tasks",
    "fig5_ood_gap",
    "fig6_model_error",
    "fig1_pearl_gap_heatmap",
    "fig2_adaptation_returns",
    "fig6_weight_transform_omniglot",
    "table1_online_finetuning",
    "fig7_metaworld_ml45",
]


def all_targets():
    """What `snakemake` builds with no target: every task table and every figure that can be built (fig6
    only where the user has supplied Omniglot; the log says when it is left out)."""
    figures = list(FIGURES_BUILT)
    if not omniglot_available():
        figures.remove("fig6_weight_transform_omniglot")
        logger.warning(f"paper-repro: fig6_weight_transform_omniglot left out: {omniglot.missing_message(omniglot_root())}")
    return all_task_tables() + [f"results/figures/{f}.pdf" for f in figures] + [f"results/claims/{f}.csv" for f in figures]


# --- collect: per-task SAC/TD3 offline data ---

COLLECT_PROTOCOL = "macaw"  # the offline data covers MACAW's tasks, train and test
# Offline meta-RL methods (MACAW and its baselines, MACAW Sec. 5-6): each learns from the collected buffers
# alone. Method -> (module in algos/, its Config switches): the ablations are switches, not copies.
OFFLINE_METHODS = {
    "macaw": ("macaw", {}),
    "macaw-no-adv-head": ("macaw", {"adv_coef": 0.0}),  # MAML+AWR (Fig. 4 left; overrides/noadv.json)
    "macaw-no-wt": ("macaw", {"weight_transform": False}),  # equal width (Figs 4 centre, 5; no_wlinear.json)
    "macaw-wide": ("macaw", {"weight_transform": False, "equal_params": True}),  # equal parameters (Fig. 4 centre)
    "meta-bc": ("macaw", {"loss": "imitation"}),  # Meta-BC (Fig. 3; overrides/imitation.json)
    "offline-mt-ft": ("mt_awr", {}),  # Offline MT+FT (Fig. 3; multitask_standard.json)
    "offline-pearl": ("offline_pearl", {}),  # Offline PEARL (Fig. 3; not in the authors' code)
}


# The experiments behind the figures built so far: only their tasks need offline data.
BUILT_EXPERIMENTS = {name for figure in FIGURES_BUILT for name in config["figures"][figure]["experiments"]}


def uses_offline_data(name):
    """Whether an experiment behind a built figure runs sac or td3 or learns from their buffers (not a
    supervised one: MACAW Fig. 6's Omniglot names a dataset, no family)."""
    exp = config["experiments"][name]
    return name in BUILT_EXPERIMENTS and "family" in exp and bool({"sac", "td3", *OFFLINE_METHODS} & set(exp["methods"]))


# Families whose offline data some experiment uses.
COLLECT_FAMILIES = sorted({config["experiments"][name]["family"] for name in config["experiments"] if uses_offline_data(name)})


def collect_dir(family, seed="{seed}"):
    return f"{SCALE_DIR}/data/{family}/{config['collect']['algo'][family]}/seed{seed}"


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


def collect_sources(family):
    return collect_sources_for(family, config["collect"]["algo"][family])


def collect_sources_for(family, algo):
    return family_sources(family) + lib(f"algos/{algo}.py", "nets.py", "buffers.py", "rollout.py", "collect.py", "io.py",
                                        "config.py", "progress.py")


def collect_params(family):
    """This family's slice of the collection config."""
    c = config["collect"]
    return {"algo": c["algo"][family], "total_steps": c["steps_per_task"][family], **c["agent"]}


# Measured by benchmarks/collect_throughput.py on 2 idle CPU cores: batched SAC, 10 tasks, fp32,
# 256-256: 335 task-env-steps/s in all (each with its gradient step); TD3 519.
COLLECT_TASK_STEPS_PER_S = 330


def collect_runtime(family):
    """Minutes for a job, from its budget and task count; a retry asks for twice as much."""
    work = config["collect"]["steps_per_task"][family] * len(collect_task_ids(family))

    def runtime(wildcards, attempt):
        return attempt * max(10, int(1.5 * work / COLLECT_TASK_STEPS_PER_S / 60))

    return runtime


@functools.cache
def obs_dim(family):
    """The family's observation size (from one env, built once per workflow run)."""
    return envs.make(family, envs.task_table(family, COLLECT_PROTOCOL)["test"].iloc[0].to_dict()).observation_space.shape[0]


def buffers_mb(family, n_tasks):
    """MB of n_tasks lifetime buffers of the family at this scale (obs and next obs in float32)."""
    return config["collect"]["steps_per_task"][family] * n_tasks * (2 * obs_dim(family) + 12) * 4 / 1e6


def collect_mem_mb(family):
    """Every task's lifetime buffer plus 4 GB for the rest."""
    buffer_mb = buffers_mb(family, len(collect_task_ids(family)))

    def mem_mb(wildcards, attempt):
        return attempt * (4000 + int(1.5 * buffer_mb))

    return mem_mb


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


# --- meta-training and evaluation ---

# The meta-RL algorithms (src/paper_repro/algos/<algo>.py, one interface: train and
# adapt_and_evaluate) and the library modules each imports besides its own file.
META_ALGOS = {
    "maml": ["meta.py", "buffers.py", "nets.py", "rollout.py"],
    "mier": ["meta.py", "buffers.py", "nets.py", "rollout.py", "algos/sac.py"],
    "pearl": ["buffers.py", "nets.py", "rollout.py"],
}
# ... and the offline ones (MACAW and its baselines, OFFLINE_METHODS), which learn from collected buffers.
ALGO_IMPORTS = {
    **META_ALGOS,
    "macaw": ["meta.py", "buffers.py", "nets.py", "rollout.py"],
    "mt_awr": ["algos/macaw.py", "meta.py", "buffers.py", "nets.py", "rollout.py"],
    "offline_pearl": ["algos/pearl.py", "buffers.py", "nets.py", "rollout.py"],
}

# Online meta-training runs, results/<scale>/runs/<experiment>/<run>/: run -> (algorithm, its Config
# switches, multitask). AdMRL's multi-task baselines (AdMRL Sec. 5) are the same algorithms seeing the
# normalised task parameter after the observation (envs.TaskParameterObservation): MAML-MT, PEARL-MT,
# and MT-joint, MAML-TRPO without its inner step (multi-task TRPO). Switches, not copies.
ONLINE_RUNS = {
    "maml": ("maml", {}, False),
    "pearl": ("pearl", {}, False),
    "mier": ("mier", {}, False),
    "mt-joint": ("maml", {"inner_steps": 0}, True),
    "maml-mt": ("maml", {}, True),
    "pearl-mt": ("pearl", {}, True),
}

# Evaluated methods: the run whose meta-trained model they adapt, and its test-time options.
# MIER and its ablation share one meta-training run (MIER Sec. 5.2.2).
RELABEL = {"relabel_steps": config["evaluate"]["relabel_steps"]}
EVAL_METHODS = {
    "maml": ("maml", {}),
    "pearl": ("pearl", {}),
    "mier": ("mier", {"relabel": True, **RELABEL}),
    "mier-no-relabel": ("mier", {"relabel": False, **RELABEL}),
    "mt-joint": ("mt-joint", {}),
    "maml-mt": ("maml-mt", {}),
    "pearl-mt": ("pearl-mt", {}),
}


def eval_algo(method):
    return ONLINE_RUNS[EVAL_METHODS[method][0]][0]


# Keys of an experiment entry that no single job depends on as a whole: each job gets its own part
# (hyper, budget: algo_config; adapt: eval_options; methods: which jobs exist, not what any one computes).
EXPERIMENT_SLICED_KEYS = ("hyper", "budget", "adapt", "methods")


def experiment_params(wildcards):
    """The experiment's own entry plus the scale's task limit: what its runs depend on."""
    exp = {k: v for k, v in config["experiments"][wildcards.experiment].items() if k not in EXPERIMENT_SLICED_KEYS}
    return {"name": wildcards.experiment, **exp, "seed": int(wildcards.seed),
            "task_limit": experiment_task_limit(wildcards.experiment)}


def experiment_task_limit(name):
    """The scale's task limit for one experiment: task_limit.{train,test}, updated by its own entry in
    task_limit.experiments (e.g. every negated-joint test task at the quick scale)."""
    limit = config["task_limit"]
    return {**{k: limit[k] for k in ("train", "test")}, **limit.get("experiments", {}).get(name, {})}


def eval_options(method):
    """A params function: the method's test-time options (EVAL_METHODS) updated by the experiment's own
    for that method (experiments.<name>.adapt.<method>, e.g. MIER's model fine-tuning steps), so that
    changing one reruns that method's evaluations of that experiment and nothing upstream."""
    options = {**EVAL_METHODS[method][1], **({"multitask": True} if ONLINE_RUNS[EVAL_METHODS[method][0]][2] else {})}

    def params(wildcards):
        exp = config["experiments"][wildcards.experiment]
        return {**options, **admrl_schedule(exp, method), **exp.get("adapt", {}).get(method, {})}

    return params


def admrl_schedule(exp, method):
    """On AdMRL's experiments the model-free baselines adapt with AdMRL's sample schedule (AdMRL spec 3):
    the model-based test protocol's stages of admrl.learner.test_collect_envs trajectories (2,000 samples
    at the paper's horizon of 200), and for the MAML-TRPO runs the update rule of admrl.baselines.step."""
    if exp["paper"] != "AdMRL":
        return {}
    learner, step = config["admrl"]["learner"], config["admrl"]["baselines"]["step"]
    schedule = {"stages": learner["test_stages"], "stage_trajectories": learner["test_collect_envs"]}
    return {**schedule, **({"step": step[method]} if method in step else {})}


def experiment_train_table(wildcards):
    exp = config["experiments"][wildcards.experiment]
    return task_table_path(exp["family"], exp["protocol"], "train")


def experiment_test_table(wildcards):
    exp = config["experiments"][wildcards.experiment]
    return task_table_path(exp["family"], exp["protocol"], "test")


def algo_sources(algo):
    """A function of wildcards: the algorithm's module, the library modules it imports, and the family's modules."""

    def sources(wildcards):
        family = config["experiments"][wildcards.experiment]["family"]
        return family_sources(family) + lib(f"algos/{algo}.py", "io.py", "evaluate.py", "progress.py", *ALGO_IMPORTS[algo])

    return sources


def algo_config(algo, switches=None):
    """A params function: the algorithm's hyperparameters that differ from its Config defaults, each layer
    over the one before (README "Budgets"): the scale's section (config <algo>), the experiment's own values
    as the authors set them for its family (experiments.<name>.hyper.<algo>), on AdMRL's experiments the
    scale's budgets for its baselines (admrl.baselines.<algo>), the experiment's budget at this scale
    (experiments.<name>.budget.<algo>, from config/scales/<scale>.yaml), then the run's own switches
    (ONLINE_RUNS), which nothing overrides. Where the family's dynamics vary, MIER's model predicts next
    states (MIER App. A) and PEARL's context holds next states (its code's configs for the rand-params
    families)."""

    def hyper(wildcards):
        exp = config["experiments"][wildcards.experiment]
        varies = envs.varies_dynamics(exp["family"])
        defaults = {"mier": {"predict_dynamics": varies}, "pearl": {"use_next_obs_in_context": varies}}
        admrl = config["admrl"]["baselines"].get(algo, {}) if exp["paper"] == "AdMRL" else {}
        return {**defaults.get(algo, {}), **config[algo], **exp.get("hyper", {}).get(algo, {}), **admrl,
                **exp.get("budget", {}).get(algo, {}), **(switches or {})}

    return hyper


def eval_protocol():
    """The part of config `evaluate` that every method shares."""
    return {k: config["evaluate"][k] for k in ("adapt_trajectories", "episodes")}


def training_eval_protocol():
    """Evaluations during meta-training (MIER Fig. 2): the shared adaptation data, their own episode count."""
    return {"adapt_trajectories": config["evaluate"]["adapt_trajectories"], "episodes": config["metatrain"]["eval_episodes"]}


# --- offline meta-training (MACAW and its baselines) ---

def offline_buffers(wildcards):
    """The experiment's training and test tasks' buffers, from the family's collection seed 0 (one dataset
    reused by every meta-learning seed, as MACAW has one per task), in task-table order."""
    exp = config["experiments"][wildcards.experiment]
    d = collect_dir(exp["family"], 0)
    return {f"{split}_buffers": [f"{d}/task{i}.npz" for i in experiment_task_ids(wildcards.experiment, split)]
            for split in ("train", "test")}


def offline_config(method):
    """A params function: a method's Config values, each layer over the one before as in algo_config: the
    experiment's (its data_quality is MACAW's inner slice; where the family's dynamics vary, PEARL's context
    holds next states), the scale's section, experiments.<name>.hyper.<algo>, the experiment's budget at
    this scale (experiments.<name>.budget.<algo>), then the method's own switches (OFFLINE_METHODS), which
    nothing overrides."""
    algo, switches = OFFLINE_METHODS[method]

    def hyper(wildcards):
        exp = config["experiments"][wildcards.experiment]
        defaults = {"macaw": {"inner_slice": exp.get("data_quality")},
                    "offline_pearl": {"use_next_obs_in_context": envs.varies_dynamics(exp["family"])}}
        return {**defaults.get(algo, {}), **config[algo], **exp.get("hyper", {}).get(algo, {}),
                **exp.get("budget", {}).get(algo, {}), **switches}

    return hyper


def offline_mem_mb(wildcards, attempt):
    """Every buffer of the experiment as loaded, twice over for the arrays derived from it, plus 4 GB;
    doubled on a retry."""
    n_tasks = sum(len(experiment_task_ids(wildcards.experiment, s)) for s in ("train", "test"))
    return attempt * (4000 + int(2 * buffers_mb(config["experiments"][wildcards.experiment]["family"], n_tasks)))


def offline_eval_protocol():
    """Evaluations during offline meta-training: every eval_every steps, eval_episodes deterministic episodes
    after adapting on the test task's offline data; the last one with evaluate.episodes (final numbers)."""
    return {"episodes": config["metatrain"]["eval_episodes"], "final_episodes": config["evaluate"]["episodes"]}


def metatrain_runtime(algo):
    """Minutes: the scale's estimate for one run (config metatrain.runtime), doubled on a retry."""
    return lambda wildcards, attempt: attempt * config["metatrain"]["runtime"][algo]


def metatrain_mem_mb(algo):
    """MIER and PEARL keep every transition of meta-training in memory; 8 GB covers the paper's
    budgets (a few million transitions of at most 348 floats); MAML keeps one meta-batch. MAML on Omniglot
    (maml_classifier): 32k images and a second-order step through 4.9M parameters for 16 tasks."""
    return lambda wildcards, attempt: attempt * (2000 if algo == "maml" else 8000)


def evaluate_runtime(method):
    """Minutes: the scale's estimate for one method's evaluation (config evaluate.runtime; a method without
    its own entry takes its algorithm's), doubled on a retry."""
    runtime = config["evaluate"]["runtime"]
    return lambda wildcards, attempt: attempt * runtime.get(method, runtime[eval_algo(method)])


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


# --- MACAW Fig. 6: MAML on Omniglot with App. C.1's three MLPs (algos/maml_classifier.py) ---

OMNIGLOT_METHODS = {  # the experiment's methods -> maml_classifier.Config switches
    "macaw": {},  # weight transform
    "macaw-no-wt": {"weight_transform": False},  # plain layers, equal width
    "macaw-wide": {"weight_transform": False, "equal_params": True},  # plain layers, equal parameters
}


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


def omniglot_run(wildcards):
    """A params function: the run's method, seed and maml_classifier.Config values (the scale's section,
    then the method's switches)."""
    return {"method": wildcards.method, "seed": int(wildcards.seed),
            "hyper": {**config["maml_classifier"], **OMNIGLOT_METHODS[wildcards.method]}}


def omniglot_curves(figure):
    return [f"{SCALE_DIR}/runs/omniglot/{method}/seed{seed}/curve.csv"
            for name in config["figures"][figure]["experiments"]
            for method in figure_methods(figure, name) if method in OMNIGLOT_METHODS
            for seed in experiment_seeds(name)]


# --- MACAW Table 1: online fine-tuning of offline-meta-trained runs on their test tasks ---

FINETUNE_ALGOS = {"macaw": "macaw", "offline-pearl": "offline_pearl"}  # method -> its module's finetune()


def finetune_path(experiment, method, seed):
    return f"{SCALE_DIR}/eval/{experiment}/{method}-ft/seed{seed}.csv"


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


def finetune_runtime(wildcards, attempt):
    """Minutes of one fine-tuning job (finetune.runtime), doubled on a retry."""
    return attempt * config["finetune"]["runtime"]


def finetune_protocol():
    """The fine-tuning schedule every method shares (finetune.trajectories, eval_at, episodes)."""
    return {k: config["finetune"][k] for k in ("trajectories", "eval_at", "episodes")}


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


def eval_path(experiment, algo, seed):
    return f"{SCALE_DIR}/eval/{experiment}/{algo}/seed{seed}.csv"


# --- AdMRL's model-based methods (algos/admrl.py): the task sampler is the method ---

MB_METHODS = {"admrl": "adversarial", "mb-unif": "uniform", "mb-gauss": "gauss"}
ADMRL_SOURCES = ["algos/admrl.py", "meta.py", "nets.py", "buffers.py", "rollout.py", "io.py", "config.py"]


def admrl_run_dir(family, method, seed="{seed}"):
    """A model-based run trains on the family's task box, whatever test protocol evaluates it
    (admrl-ant-2d and admrl-ant-2d-ood share ant-2d's runs); ``init``: the seed's shared first task."""
    return f"{SCALE_DIR}/runs/admrl/{family}/{method}/seed{seed}"


def admrl_sources(wildcards):
    return family_sources(wildcards.family) + lib(*ADMRL_SOURCES)


def admrl_experiment_sources(wildcards):
    return family_sources(config["experiments"][wildcards.experiment]["family"]) + lib(*ADMRL_SOURCES)


def admrl_learner(training=False):
    """The learner's Config values that differ from its defaults (the scale's admrl.learner). Training jobs
    leave out the keys only the evaluation reads (admrl.EVAL_ONLY): switching one reruns evaluations only."""
    from paper_repro.algos import admrl

    learner = config["admrl"]["learner"]
    return {k: v for k, v in learner.items() if k not in admrl.EVAL_ONLY} if training else learner


def admrl_eval_run(method):
    def run(wildcards):
        return f"{admrl_run_dir(config['experiments'][wildcards.experiment]['family'], method, wildcards.seed)}/run.pt"
    return run


def admrl_runtime(stage):
    return lambda wildcards, attempt: attempt * config["admrl"]["runtime"][stage]


def best_dir(experiment, seed=0):
    """AdMRL's reference agents (A*): one SAC agent per test task of an experiment, seed 0."""
    return f"{SCALE_DIR}/best/{experiment}/sac/seed{seed}"


def best_outputs(experiment):
    d = best_dir(experiment, "{seed}")
    out = {"metrics": f"{d}/metrics.csv"}
    for i in experiment_task_ids(experiment, "test"):
        for kind, suffix in (("buffer", "npz"), ("curve", "curve.csv"), ("policy", "policy.pt")):
            out[f"{kind}_{i}"] = f"{d}/task{i}.{suffix}"
    return out


def best_params():
    b = config["admrl"]["best"]
    return {"algo": "sac", "total_steps": b["steps_per_task"], **b["agent"]}


def best_runtime(experiment):
    work = config["admrl"]["best"]["steps_per_task"] * len(experiment_task_ids(experiment, "test"))
    return lambda wildcards, attempt: attempt * max(config["admrl"]["runtime"]["best"],
                                                   int(1.5 * work / COLLECT_TASK_STEPS_PER_S / 60))




# AdMRL's figures built from model-based evaluations, and the experiments each draws gaps of (Fig. 4a's
# ant-3d draws the tasks its runs visited instead).
ADMRL_FIGURES = ["fig1_pearl_gap_heatmap", "fig2_adaptation_returns", "fig3_worst_case_gap", "fig4_adversarial_tasks",
                 "fig5_ood_gap"]
VISITED_ONLY = {"fig4_adversarial_tasks": ["admrl-ant-3d"]}
RETURNS_ONLY = {"fig2_adaptation_returns"}  # draws returns, not gaps: no reference agents


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
ADMRL_EXPERIMENTS = sorted({name for figure in ADMRL_FIGURES if figure in FIGURES_BUILT
                            for name in admrl_gap_experiments(figure)}
                           | set(config["figures"]["fig6_model_error"]["experiments"] if "fig6_model_error" in FIGURES_BUILT else []))


# AdMRL Fig. 6's experiments: their models scored on their test tasks' reference-agent data.
ADMRL_MODEL_ERROR = config["figures"]["fig6_model_error"]["experiments"] if "fig6_model_error" in FIGURES_BUILT else []


def model_error_path(experiment):
    return f"{SCALE_DIR}/model_error/{experiment}.csv"


def model_error_runs(experiment):
    """(method, seed) of every model-based run whose models Fig. 6 scores."""
    return [(m, s) for m in figure_methods("fig6_model_error", experiment) if m in MB_METHODS
            for s in experiment_seeds(experiment)]


# --- Minari export (workflow/rules/minari.smk) ---


def minari_exports():
    """One entry per Minari dataset: every buffer the offline methods read (collection seed 0 of each collected
    family): the family, its collecting algorithm, the task id and the buffer."""
    return [{"family": f, "algo": config["collect"]["algo"][f], "task_id": i, "buffer": f"{collect_dir(f, 0)}/task{i}.npz"}
            for f in COLLECT_FAMILIES for i in collect_task_ids(f)]


def minari_sources():
    """The export's code: every exported family's env (a dataset's spaces and env spec) and the writer."""
    return sorted({s for f in COLLECT_FAMILIES for s in family_sources(f)}) + lib("datasets.py", "buffers.py", "io.py")


# --- priorities: the longest chain starts first ---
# Whenever cores are free, Snakemake starts the ready job of highest priority. A rule's priority is the
# minutes of the longest chain of runtime requests it starts: its own request and the longest one waiting
# on it. So the per-task collection that every offline figure waits on starts first, and MIER's training
# (then its long relabelling evaluation) before PEARL's and MAML's. Tables and plots keep priority 0.


def minutes(runtime):
    """A runtime request (a number, or a function of wildcards and attempt) at the first attempt."""
    return runtime if isinstance(runtime, (int, float)) else runtime(None, 1)


def evaluate_chain(method):
    return int(minutes(evaluate_runtime(method)))


def online_chain(run):
    """metatrain_<run>, then its longest evaluation."""
    evaluations = [evaluate_chain(m) for m, (r, _) in EVAL_METHODS.items() if r == run]
    return int(minutes(metatrain_runtime(ONLINE_RUNS[run][0])) + max(evaluations, default=0))


def offline_chain(method):
    """metatrain_<method>, then its online fine-tuning (MACAW Table 1) where it has one."""
    finetune = minutes(finetune_runtime) if method in FINETUNE_ALGOS else 0
    return int(minutes(metatrain_runtime(OFFLINE_METHODS[method][0])) + finetune)


def collect_chain(family):
    """A family's collection, then the longest offline method trained on it."""
    return int(minutes(collect_runtime(family)) + max(offline_chain(m) for m in OFFLINE_METHODS))


def admrl_chain(stage):
    """AdMRL's stages: the shared first task (init), the model-based training (train), its evaluation."""
    stages = ["init", "train", "evaluate"]
    return int(sum(minutes(admrl_runtime(s)) for s in stages[stages.index(stage):]))

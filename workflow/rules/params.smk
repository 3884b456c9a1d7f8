# Each rule's params: its own slice of the config, so that changing a value reruns exactly the jobs that
# read it (DESIGN.md). Algorithms' hyperparameters are merged in layers (README "Budgets", docs/scales.md).


STATS_KEYS = ("ci", "bootstrap")  # of config `plot`: the table stage computes the intervals


def plot_params(name):
    """Plot params: the style and the figure's own entry, nothing else."""
    style = {k: v for k, v in config["plot"].items() if k not in STATS_KEYS}
    return {"style": style, "figure": {"name": name, **config["figures"][name]}, "scale": SCALE}


def table_stats():
    """Table params: the confidence level and bootstrap resamples of the intervals the figures draw."""
    return {k: config["plot"][k] for k in STATS_KEYS}


def collect_params(family):
    """This family's slice of the collection config: collect.agent, then the family's own collect.family_agent.
    Built here as its job will build it (prconfig.from_dict), so that a key its algorithm's Config lacks stops
    the workflow at start-up, naming the key, rather than when that job starts."""
    c = config["collect"]
    own = c.get("family_agent", {}).get(family, {})
    params = {"algo": c["algo"][family], "total_steps": c["steps_per_task"][family], **c["agent"], **own}
    if own:
        algo = importlib.import_module(f"paper_repro.algos.{params['algo']}")
        prconfig.from_dict(algo.Config, {k: v for k, v in params.items() if k != "algo"},
                           f"collect.family_agent.{family} (with collect.agent)")
    return params


# Keys of an experiment entry that no single job depends on as a whole: each job gets its own part
# (hyper, budget: algo_config; adapt: eval_options; methods: which jobs exist, not what any one computes).
EXPERIMENT_SLICED_KEYS = ("hyper", "budget", "adapt", "methods")


def experiment_params(wildcards):
    """The experiment's own entry plus the scale's task limit: what its runs depend on."""
    exp = {k: v for k, v in config["experiments"][wildcards.experiment].items() if k not in EXPERIMENT_SLICED_KEYS}
    return {"name": wildcards.experiment, **exp, "seed": int(wildcards.seed),
            "task_limit": experiment_task_limit(wildcards.experiment)}


def eval_options(method):
    """A params function: the method's test-time options (EVAL_METHODS) updated by the experiment's own
    for that method (experiments.<name>.adapt.<method>, e.g. MIER's model fine-tuning steps), so that
    changing one reruns that method's evaluations of that experiment and nothing upstream."""
    relabel = {"relabel_steps": config["evaluate"]["relabel_steps"]} if eval_algo(method) == "mier" else {}
    options = {**EVAL_METHODS[method][1], **relabel,
               **({"multitask": True} if ONLINE_RUNS[EVAL_METHODS[method][0]][2] else {})}

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


def offline_eval_protocol():
    """Evaluations during offline meta-training: every eval_every steps, eval_episodes deterministic episodes
    after adapting on the test task's offline data; the last one with evaluate.episodes (final numbers)."""
    return {"episodes": config["metatrain"]["eval_episodes"], "final_episodes": config["evaluate"]["episodes"]}


def omniglot_run(wildcards):
    """A params function: the run's method, seed and maml_classifier.Config values (the scale's section,
    then the method's switches)."""
    return {"method": wildcards.method, "seed": int(wildcards.seed),
            "hyper": {**config["maml_classifier"], **OMNIGLOT_METHODS[wildcards.method]}}


def finetune_protocol():
    """The fine-tuning schedule every method shares (finetune.trajectories, eval_at, episodes)."""
    return {k: config["finetune"][k] for k in ("trajectories", "eval_at", "episodes")}


def admrl_learner(training=False):
    """The learner's Config values that differ from its defaults (the scale's admrl.learner). Training jobs
    leave out the keys only the evaluation reads (admrl.EVAL_ONLY): switching one reruns evaluations only."""
    from paper_repro.algos import admrl

    learner = config["admrl"]["learner"]
    return {k: v for k, v in learner.items() if k not in admrl.EVAL_ONLY} if training else learner


def best_params():
    b = config["admrl"]["best"]
    return {"algo": "sac", "total_steps": b["steps_per_task"], **b["agent"]}

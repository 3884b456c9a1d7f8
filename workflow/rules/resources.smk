# Runtime and memory requests, and priorities.
#
# Priorities: the longest chain starts first. Whenever cores are free, Snakemake starts the ready job of
# highest priority. A job's priority is the minutes of the longest chain of runtime requests it starts:
# its own request and the longest one waiting on it (per job for online meta-training and evaluation, whose
# chains depend on the experiment; per rule, over every experiment, for the rest). So the per-task
# collection that every offline figure waits on starts first, and MIER's training (then its long
# relabelling evaluation) before PEARL's and MAML's on the same experiment. Tables and plots keep priority 0.


# Measured costs (config/costs.yaml, with where each was measured), and the margin a request adds to them.
COSTS = prconfig.load_yaml(ROOT / "config" / "costs.yaml")
MARGIN = COSTS["margin"]


def task_steps_per_s(algo, hidden):
    """A collection job's task-steps per second (config/costs.yaml) with agent ``algo`` at widths ``hidden``;
    a width not measured takes the agent's slowest rate."""
    rates = COSTS["collect"][algo]
    return rates.get("x".join(map(str, hidden)), min(rates.values()))


def agent_hidden(agent, algo):
    """The hidden widths of a collecting agent: its config's, else its algorithm's default."""
    if "hidden" in agent:
        return agent["hidden"]
    fields = importlib.import_module(f"paper_repro.algos.{algo}").Config.__dataclass_fields__
    return fields["hidden"].default


def collect_runtime(family):
    """Minutes for a job, from its budget, task count and agent (config/costs.yaml); a retry asks for twice as much."""
    params = collect_params(family)
    rate = task_steps_per_s(params["algo"], agent_hidden(params, params["algo"]))
    work = params["total_steps"] * len(collect_task_ids(family))

    def runtime(wildcards, attempt):
        return attempt * max(10, int(MARGIN * work / rate / 60))

    return runtime


@functools.cache
def env_dims(family):
    """The family's observation and action sizes (from one env, built once per workflow run)."""
    env = envs.make(family, envs.task_table(family, COLLECT_PROTOCOL)["test"].iloc[0].to_dict())
    return env.observation_space.shape[0], env.action_space.shape[0]


def obs_dim(family):
    return env_dims(family)[0]


def buffers_mb(family, n_tasks):
    """MB of n_tasks lifetime buffers of the family at this scale (obs and next obs in float32)."""
    return config["collect"]["steps_per_task"][family] * n_tasks * (2 * obs_dim(family) + 12) * 4 / 1e6


def collect_mem_mb(family):
    """Every task's lifetime buffer plus 4 GB for the rest."""
    buffer_mb = buffers_mb(family, len(collect_task_ids(family)))

    def mem_mb(wildcards, attempt):
        return attempt * (4000 + int(1.5 * buffer_mb))

    return mem_mb


def offline_mem_mb(wildcards, attempt):
    """Every buffer of the experiment as loaded, twice over for the arrays derived from it, plus 4 GB;
    doubled on a retry."""
    n_tasks = sum(len(experiment_task_ids(wildcards.experiment, s)) for s in ("train", "test"))
    return attempt * (4000 + int(2 * buffers_mb(config["experiments"][wildcards.experiment]["family"], n_tasks)))


def metatrain_runtime(algo):
    """Minutes: the scale's estimate for one run (config metatrain.runtime: MAML on Omniglot, which this
    machine cannot measure), doubled on a retry."""
    return lambda wildcards, attempt: attempt * config["metatrain"]["runtime"][algo]


def online_work(algo, cfg):
    """An online meta-training run's work in config/costs.yaml's units (online.<algo>), its samples per unit and
    its widest layer: MIER's meta-steps (epochs x train_steps) of meta_batch x adapt_batch transitions; PEARL's
    gradient steps of meta_batch x batch_size; MAML's trajectories (meta_iterations x meta_batch x trajectories,
    inner and outer: inner_steps + 1), one each."""
    if algo == "mier":
        return cfg.epochs * cfg.train_steps, cfg.meta_batch * cfg.adapt_batch, max(*cfg.sac_hidden, *cfg.model_hidden)
    if algo == "pearl":
        return cfg.num_iterations * cfg.num_train_steps_per_itr, cfg.meta_batch * cfg.batch_size, max(cfg.hidden)
    return cfg.meta_iterations * cfg.meta_batch * cfg.trajectories * (cfg.inner_steps + 1), 1, max(cfg.hidden)


def seconds_per_unit(costs, family, samples=None, width=None):
    """config/costs.yaml's seconds per unit for ``family`` (a family not measured: the slowest measured), scaled
    up where a unit holds more samples or wider layers than where it was measured (its ``at``, where it has
    one): linearly in the samples, with the width squared (a layer's multiply-adds). Never scaled down: a
    smaller unit keeps its fixed costs."""
    rates = {k: v for k, v in costs.items() if k != "at"}
    rate = rates.get(family, max(rates.values()))
    if "at" not in costs:
        return rate
    return rate * max(1.0, samples / costs["at"]["samples"]) * max(1.0, (width / costs["at"]["width"]) ** 2)


def request(seconds, attempt):
    """Minutes for ``seconds`` of measured work: times MARGIN, at least 10; a retry asks for twice as much."""
    return attempt * max(10, math.ceil(MARGIN * seconds / 60))


def online_runtime(run):
    """Minutes for an online meta-training job: its work (online_work) times its family's measured seconds per
    unit (config/costs.yaml online), times MARGIN, at least 10; a retry asks for twice as much."""
    algo, switches, _ = ONLINE_RUNS[run]
    hyper = algo_config(algo, switches)
    Config = importlib.import_module(f"paper_repro.algos.{algo}").Config

    def runtime(wildcards, attempt):
        cfg = prconfig.from_dict(Config, hyper(wildcards), f"{run} on {wildcards.experiment}")
        units, samples, width = online_work(algo, cfg)
        family = config["experiments"][wildcards.experiment]["family"]
        return request(units * seconds_per_unit(COSTS["online"][algo], family, samples, width), attempt)

    return runtime


def metatrain_mem_mb(algo):
    """MIER and PEARL keep every transition of meta-training in memory; 8 GB covers the paper's
    budgets (a few million transitions of at most 348 floats); MAML keeps one meta-batch. MAML on Omniglot
    (maml_classifier): 32k images and a second-order step through 4.9M parameters for 16 tasks."""
    return lambda wildcards, attempt: attempt * (2000 if algo == "maml" else 8000)


def offline_network(algo, cfg, family):
    """The cost key of an offline method's networks (config/costs.yaml metatrain): its layer kind and hidden
    width, e.g. ``wt100`` (MACAW), ``bias720`` (MACAW without weight transform at equal parameters),
    ``mlp300`` (Offline PEARL)."""
    if algo == "macaw":
        macaw = importlib.import_module("paper_repro.algos.macaw")
        width = macaw.hidden_width(*env_dims(family), cfg) if cfg.equal_params and not cfg.weight_transform else cfg.width
        return f"{macaw.kind(cfg)}{width}"
    if algo == "mt_awr":
        return f"{cfg.layer}{cfg.width}"
    return f"mlp{max(cfg.hidden)}"


def seconds_per_meta_step(algo, network):
    """config/costs.yaml's seconds per meta-step of ``algo`` with ``network``; an unmeasured network takes the
    algorithm's slowest measured rate, times (its width / that one's)² where it is wider."""
    rates = COSTS["metatrain"][algo]
    if network in rates:
        return rates[network]
    slowest = max(rates, key=rates.get)
    width = lambda key: int("".join(filter(str.isdigit, key)))
    return rates[slowest] * max(1.0, (width(network) / width(slowest)) ** 2)


def offline_runtime(method):
    """Minutes for an offline meta-training job: its meta-steps times its network's measured seconds per
    meta-step (config/costs.yaml), times MARGIN, at least 10; a retry asks for twice as much."""
    algo = OFFLINE_METHODS[method][0]
    hyper = offline_config(method)
    Config = importlib.import_module(f"paper_repro.algos.{algo}").Config

    def runtime(wildcards, attempt):
        cfg = prconfig.from_dict(Config, hyper(wildcards), f"{method} on {wildcards.experiment}")
        family = config["experiments"][wildcards.experiment]["family"]
        return request(cfg.train_steps * seconds_per_meta_step(algo, offline_network(algo, cfg, family)), attempt)

    return runtime


def evaluate_runtime(method):
    """Minutes for one method's evaluation. MIER's (and its ablation's): the policy updates after adaptation
    (the last of evaluate.relabel_steps) on every test task, times the measured seconds per update
    (config/costs.yaml evaluate), times MARGIN, at least 10. The others': the scale's estimate (config
    evaluate.runtime; a method without its own entry takes its algorithm's). A retry asks for twice as much."""
    if method in COSTS["evaluate"]:
        def runtime(wildcards, attempt):
            exp = config["experiments"][wildcards.experiment]
            updates = max(config["evaluate"]["relabel_steps"]) * len(experiment_task_ids(wildcards.experiment, "test"))
            return request(updates * seconds_per_unit(COSTS["evaluate"][method], exp["family"]), attempt)

        return runtime
    runtime = config["evaluate"]["runtime"]
    return lambda wildcards, attempt: attempt * runtime.get(method, runtime[eval_algo(method)])


def finetune_runtime(wildcards, attempt):
    """Minutes of one fine-tuning job (finetune.runtime), doubled on a retry."""
    return attempt * config["finetune"]["runtime"]


def admrl_iterations(stage, cfg, family, n_test=0):
    """AdMRL's iterations of virtual training in one job, each n_model model steps and n_policy TRPO updates
    (admrl.virtual_training): the first task's SLBO stages (init), the later tasks' zero-shot and SLBO stages
    (train), or every test task's zero-shot and test stages (evaluate)."""
    if stage == "init":
        return importlib.import_module("paper_repro.algos.admrl").first_stages(cfg, family) * cfg.n_inner
    if stage == "train":
        return (cfg.n_tasks - 1) * (cfg.n_zeroshot + cfg.n_slbo * cfg.n_inner)
    return n_test * (cfg.test_zeroshot + cfg.test_stages * cfg.test_inner)


def admrl_iteration_s(kind, cfg):
    """config/costs.yaml admrl.<kind>'s seconds per iteration: the entry of the narrowest measured model at least
    as wide as the job's (wider than all: the widest, times the square of the widths' ratio), scaled up linearly
    where an iteration holds more samples (TRPO's virtual samples and the model steps' batches) than it did."""
    entries = COSTS["admrl"][kind]
    width = max(cfg.model_hidden)
    samples = cfg.n_policy * cfg.virtual_envs * cfg.horizon + cfg.n_model * cfg.model_batch
    wide_enough = [e for e in entries if e["width"] >= width]
    e = min(wide_enough, key=lambda e: e["width"]) if wide_enough else max(entries, key=lambda e: e["width"])
    return e["s"] * max(1.0, samples / e["samples"]) * max(1.0, (width / e["width"]) ** 2)


def admrl_runtime(stage):
    """Minutes for an AdMRL job of ``stage`` (init, train or evaluate): its iterations (admrl_iterations) times
    the measured seconds per iteration (config/costs.yaml admrl), times MARGIN, at least 10; a retry asks for
    twice as much."""
    cfg = prconfig.from_dict(importlib.import_module("paper_repro.algos.admrl").Config, admrl_learner(), "admrl.learner")
    kind = "evaluate" if stage == "evaluate" else "train"

    def runtime(wildcards, attempt):
        if stage == "evaluate":
            exp = config["experiments"][wildcards.experiment]
            iterations = admrl_iterations(stage, cfg, exp["family"], len(experiment_task_ids(wildcards.experiment, "test")))
        else:
            iterations = admrl_iterations(stage, cfg, wildcards.family)
        return request(iterations * admrl_iteration_s(kind, cfg), attempt)

    return runtime


def model_error_runtime(wildcards, attempt):
    """Minutes of AdMRL Fig. 6's model-error job: the scale's estimate (admrl.runtime.model_error), doubled on a retry."""
    return attempt * config["admrl"]["runtime"]["model_error"]


def best_runtime(experiment):
    """A* (SAC per test task, config admrl.best): from SAC's rate at its widths (config/costs.yaml)."""
    work = config["admrl"]["best"]["steps_per_task"] * len(experiment_task_ids(experiment, "test"))
    rate = task_steps_per_s("sac", agent_hidden(config["admrl"]["best"]["agent"], "sac"))
    return lambda wildcards, attempt: attempt * max(config["admrl"]["runtime"]["best"], int(MARGIN * work / rate / 60))


def minutes(runtime):
    """A runtime request (a number, or a function of wildcards and attempt) at the first attempt."""
    return runtime if isinstance(runtime, (int, float)) else runtime(None, 1)


def longest(runtime, methods):
    """A per-experiment runtime's request on the experiment of ``methods``' where it is longest."""
    return max((runtime(types.SimpleNamespace(experiment=name), 1) for name, exp in config["experiments"].items()
                if set(methods) & set(exp["methods"]) and "family" in exp), default=0)


def evaluate_chain(method):
    """A job's priority: its own request."""
    runtime = evaluate_runtime(method)
    return lambda wildcards: int(runtime(wildcards, 1))


def online_chain(run):
    """A job's priority: metatrain_<run> on its experiment, then the longest evaluation of the run there."""
    runtime = online_runtime(run)
    evaluated = [m for m, (r, _) in EVAL_METHODS.items() if r == run]

    def priority(wildcards):
        methods = config["experiments"][wildcards.experiment]["methods"]
        evaluations = [evaluate_runtime(m)(wildcards, 1) for m in evaluated if m in methods]
        return int(runtime(wildcards, 1) + max(evaluations, default=0))

    return priority


def offline_chain(method):
    """metatrain_<method> on the experiment where it takes longest, then its online fine-tuning (MACAW Table 1)
    where it has one."""
    finetune = minutes(finetune_runtime) if method in FINETUNE_ALGOS else 0
    return int(longest(offline_runtime(method), [method]) + finetune)


def collect_chain(family):
    """A family's collection, then the longest offline method trained on it."""
    return int(minutes(collect_runtime(family)) + max(offline_chain(m) for m in OFFLINE_METHODS))


def admrl_chain(stage):
    """AdMRL's stages: the shared first task (init), the model-based training (train), its evaluation; each at
    its longest, over the families and experiments of the model-based methods."""
    stages = ["init", "train", "evaluate"]
    experiments = [n for n, e in config["experiments"].items() if set(MB_METHODS) & set(e.get("methods", []))]

    def longest_stage(s):
        runtime = admrl_runtime(s)
        if s == "evaluate":
            return max((runtime(types.SimpleNamespace(experiment=n), 1) for n in experiments), default=0)
        families = {config["experiments"][n]["family"] for n in experiments}
        return max((runtime(types.SimpleNamespace(family=f), 1) for f in families), default=0)

    return int(sum(longest_stage(s) for s in stages[stages.index(stage):]))

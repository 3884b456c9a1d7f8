"""Which methods exist and what each one is: plain data, read by the workflow (which makes one rule per
entry) and checked by tests/test_methods.py without Snakemake. A variant of an algorithm is an entry with
its Config switches, never a copy of the algorithm.

Only the standard library: the Snakefile imports this module.
"""

from __future__ import annotations

# The offline data covers MACAW's tasks, train and test (the collection protocol of every family).
COLLECT_PROTOCOL = "macaw"

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

# Online meta-training runs, results/<scale>/runs/<experiment>/<run>/: run -> (algorithm, its Config
# switches, multitask). AdMRL's multi-task baselines (AdMRL Sec. 5) are the same algorithms seeing the
# normalised task parameter after the observation (envs.TaskParameterObservation): MAML-MT, PEARL-MT,
# and MT-joint, MAML-TRPO without its inner step (multi-task TRPO).
ONLINE_RUNS = {
    "maml": ("maml", {}, False),
    "pearl": ("pearl", {}, False),
    "mier": ("mier", {}, False),
    "mt-joint": ("maml", {"inner_steps": 0}, True),
    "maml-mt": ("maml", {}, True),
    "pearl-mt": ("pearl", {}, True),
}

# Evaluated methods: the run whose meta-trained model they adapt, and its test-time options (MIER's take
# the scale's relabelling schedule, evaluate.relabel_steps, as well). MIER and its ablation share one
# meta-training run (MIER Sec. 5.2.2).
EVAL_METHODS = {
    "maml": ("maml", {}),
    "pearl": ("pearl", {}),
    "mier": ("mier", {"relabel": True}),
    "mier-no-relabel": ("mier", {"relabel": False}),
    "mt-joint": ("mt-joint", {}),
    "maml-mt": ("maml-mt", {}),
    "pearl-mt": ("pearl-mt", {}),
}

# MACAW Fig. 6: MAML on Omniglot with App. C.1's three MLPs; method -> maml_classifier.Config switches.
OMNIGLOT_METHODS = {
    "macaw": {},  # weight transform
    "macaw-no-wt": {"weight_transform": False},  # plain layers, equal width
    "macaw-wide": {"weight_transform": False, "equal_params": True},  # plain layers, equal parameters
}

# MACAW Table 1: method -> the module whose finetune() fine-tunes it online.
FINETUNE_ALGOS = {"macaw": "macaw", "offline-pearl": "offline_pearl"}

# AdMRL's model-based methods (algos/admrl.py): the task sampler is the method.
MB_METHODS = {"admrl": "adversarial", "mb-unif": "uniform", "mb-gauss": "gauss"}

# AdMRL's figures built from model-based evaluations; Fig. 4a's ant-3d draws the tasks its runs visited
# instead of gaps, and Fig. 2 draws returns (no reference agents).
ADMRL_FIGURES = ["fig1_pearl_gap_heatmap", "fig2_adaptation_returns", "fig3_worst_case_gap", "fig4_adversarial_tasks",
                 "fig5_ood_gap"]
VISITED_ONLY = {"fig4_adversarial_tasks": ["admrl-ant-3d"]}
RETURNS_ONLY = {"fig2_adaptation_returns"}


def eval_algo(method: str) -> str:
    """The algorithm an evaluated method adapts (``mier-no-relabel`` -> ``mier``)."""
    return ONLINE_RUNS[EVAL_METHODS[method][0]][0]

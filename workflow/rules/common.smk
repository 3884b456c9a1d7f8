# Config validation, wildcard constraints and every input function.

import os
import sys
from pathlib import Path

from snakemake.utils import min_version

from paper_repro import config as prconfig
from paper_repro import envs

min_version("9.0")

ROOT = Path(workflow.basedir)
LIB = ROOT / "src" / "paper_repro"

# Merge config/scales/<scale>.yaml under the user's config and validate the result
# before any job starts; a typo stops here with the key, the value and what is allowed.
try:
    config.update(prconfig.resolve(config, ROOT))
except prconfig.ConfigError as e:
    sys.exit(f"paper-repro: {e}")

SCALE = config["scale"]
CONDA_ENV = "../envs/paper-repro.yaml"  # relative to workflow/rules/

# Jobs import this checkout's library, whether or not it is installed (and on cluster nodes).
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))


# --- library files behind each result (so editing one reruns what it feeds) ---

ENVS_SHARED = [str(LIB / "envs" / "__init__.py"), str(LIB / "envs" / "tasks.py")]
ROBOT_MODULE = {"metaworld": "meta_world.py"}  # robot -> module where it is not <robot>.py


def family_sources(family):
    """The family's own module plus the shared registry and task sampling."""
    robot = family.split("-")[0]
    return ENVS_SHARED + [str(LIB / "envs" / ROBOT_MODULE.get(robot, f"{robot}.py"))]


def lib(*names):
    return [str(LIB / n) for n in names]


# --- task tables ---


def task_table_path(family, protocol, split):
    return f"results/tasks/{family}/{protocol}/{split}.csv"


def experiment_task_tables(name):
    exp = config["experiments"][name]
    if "family" not in exp:
        return []
    return [task_table_path(exp["family"], exp["protocol"], s) for s in envs.splits(exp["family"], exp["protocol"])]


# AdMRL's families have only a test split: the algorithm picks training tasks in the task box.
BOX_TASK_FAMILIES = [f for f in envs.FAMILIES if envs.get_family(f).task_box is not None]
FIXED_TASK_FAMILIES = [f for f in envs.FAMILIES if f not in BOX_TASK_FAMILIES]


def task_table_sources(wildcards):
    return family_sources(wildcards.family)


def all_task_tables():
    return sorted({t for name in config["experiments"] for t in experiment_task_tables(name)})


# --- figures ---


def figure_outputs(name):
    """A figure's PDF (shown in `snakemake --report`, caption workflow/report/<name>.rst) and PNG."""
    fig = config["figures"][name]
    return {
        "pdf": report(
            f"results/figures/{name}.pdf",
            caption=f"../report/{name}.rst",
            category=fig["paper"],
            labels={"figure": name, "paper": fig["paper"], "scale": SCALE},
        ),
        "png": f"results/figures/{name}.png",
    }


def figure_table(name):
    """The tidy table a figure is drawn from."""
    return f"results/tables/{name}.csv"


def plot_params(name):
    """Plot params: the style and the figure's own entry, nothing else."""
    return {"style": config["plot"], "figure": {"name": name, **config["figures"][name]}, "scale": SCALE}


# --- targets ---


def all_targets():
    """What `snakemake` builds with no target: every stage that exists so far."""
    return all_task_tables()


# --- meta-training and evaluation ---


def experiment_params(wildcards):
    """The experiment's own entry plus the scale's task limit: what its runs depend on."""
    exp = config["experiments"][wildcards.experiment]
    return {"name": wildcards.experiment, **exp, "seed": int(wildcards.seed), "task_limit": config["task_limit"]}


def experiment_train_table(wildcards):
    exp = config["experiments"][wildcards.experiment]
    return task_table_path(exp["family"], exp["protocol"], "train")


def experiment_test_table(wildcards):
    exp = config["experiments"][wildcards.experiment]
    return task_table_path(exp["family"], exp["protocol"], "test")


def algo_sources(algo):
    """An input function: the algorithm's module, the shared library files, and the family's modules."""

    def sources(wildcards):
        family = config["experiments"][wildcards.experiment]["family"]
        return family_sources(family) + lib(f"algos/{algo}.py", "io.py")

    return sources


def metatrain_runtime(wildcards, attempt):
    """Minutes: a MAML meta-iteration of the paper (40 tasks x 20 x 2 trajectories of 200 steps) takes
    about 2 minutes on 2 CPU cores; scaled by the configured budget, doubled on a retry."""
    m = config["maml"]
    defaults = {"meta_iterations": 500, "meta_batch": 40, "trajectories": 20}
    work = 1.0
    for key, paper in defaults.items():
        work *= m.get(key, paper) / paper
    return attempt * max(10, int(2 * 2 * 500 * work))


def eval_path(experiment, algo, seed):
    return f"results/eval/{experiment}/{algo}/seed{seed}.csv"

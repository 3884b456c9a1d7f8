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

# The workflow's setup (config validation, the scale, the library on PYTHONPATH) and each job's code map.
# The rest of the workflow's Python lives beside it, one job per file: paths.smk (where results go),
# params.smk (each rule's slice of the config), inputs.smk (what each job reads, and the targets) and
# resources.smk (runtime and memory requests, priorities); the methods themselves are plain data in
# src/paper_repro/methods.py.

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
from paper_repro.methods import (ADMRL_FIGURES, ALGO_IMPORTS, COLLECT_PROTOCOL, EVAL_METHODS, FINETUNE_ALGOS,
                                  MB_METHODS, OFFLINE_METHODS, OMNIGLOT_METHODS, ONLINE_RUNS, RETURNS_ONLY,
                                  VISITED_ONLY, eval_algo)

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


def task_table_sources(wildcards):
    return family_sources(wildcards.family) + lib("io.py")


def collect_sources(family):
    return collect_sources_for(family, config["collect"]["algo"][family])


def collect_sources_for(family, algo):
    return family_sources(family) + lib(f"algos/{algo}.py", "nets.py", "buffers.py", "rollout.py", "collect.py", "io.py",
                                        "config.py", "progress.py")


def algo_sources(algo):
    """A function of wildcards: the algorithm's module, the library modules it imports, and the family's modules."""

    def sources(wildcards):
        family = config["experiments"][wildcards.experiment]["family"]
        return family_sources(family) + lib(f"algos/{algo}.py", "io.py", "evaluate.py", "progress.py", *ALGO_IMPORTS[algo])

    return sources


# AdMRL's jobs: the algorithm (algos/admrl.py), its parts beside it, and the library modules they import.
ADMRL_SOURCES = ["algos/admrl.py", "algos/slbo.py", "algos/admrl_envs.py", "algos/admrl_gradient.py",
                 "algos/admrl_model_error.py", "meta.py", "nets.py", "buffers.py", "rollout.py", "io.py", "config.py"]


def admrl_sources(wildcards):
    return family_sources(wildcards.family) + lib(*ADMRL_SOURCES)


def admrl_experiment_sources(wildcards):
    return family_sources(config["experiments"][wildcards.experiment]["family"]) + lib(*ADMRL_SOURCES)


def minari_sources():
    """The export's code: every exported family's env (a dataset's spaces and env spec) and the writer."""
    return sorted({s for f in COLLECT_FAMILIES for s in family_sources(f)}) + lib("datasets.py", "buffers.py", "io.py")

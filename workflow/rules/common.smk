# The workflow's setup (config validation, the scale, the library on PYTHONPATH) and each job's code map.
# The rest of the workflow's Python lives beside it, one job per file: paths.smk (where results go),
# params.smk (each rule's slice of the config), inputs.smk (what each job reads, and the targets) and
# resources.smk (runtime and memory requests, priorities); the methods themselves are plain data in
# src/paper_repro/methods.py.

import functools
import importlib
import math
import os
import sys
import types
from pathlib import Path

from snakemake.utils import min_version

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from paper_repro import config as prconfig
from paper_repro import digests
from paper_repro import envs, omniglot
from paper_repro.methods import (ADMRL_FIGURES, COLLECT_PROTOCOL, EVAL_METHODS, FINETUNE_ALGOS,
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
# (paper_repro.digests) of its script and every library file it runs: the import closure of the script
# and of the modules it loads by name (its algorithm, its family's robot module), derived from the import
# statements, never listed by hand. Editing a module's code reruns exactly the jobs that import it; a
# comment, a docstring or a touch of a library file reruns nothing (Snakemake itself reruns a script's
# jobs when the script is newer). Each output's provenance records the map. Package markers without code
# (empty __init__.py files) are left out. The one deliberate exception: the family registry
# (envs/__init__.py) imports every robot module, but a job depends only on its own family's (editing
# ant.py must not rerun cheetah jobs).

LIB_DIR = ROOT / LIB
ROBOT_FILES = set((LIB_DIR / "envs").glob("*.py")) - {LIB_DIR / "envs" / n for n in ("__init__.py", "registration.py", "tasks.py")}
ROBOT_MODULE = {"metaworld": "meta_world"}  # robot -> module where it is not <robot>
FAMILY_DATA = {"cheetah-highdim": ["admrl_cheetah_highdim_stats.json"]}  # family -> files in envs/data/ it reads


def family_sources(family):
    """The family's robot module (which the registry loads) and the data files it reads."""
    robot = family.split("-")[0]
    return [f"paper_repro.envs.{ROBOT_MODULE.get(robot, robot)}"] + [str(LIB / "envs" / "data" / name)
                                                                     for name in FAMILY_DATA.get(family, [])]


def algo_module(algo):
    return f"paper_repro.algos.{algo}"


def code(script, *parts):
    """A job's `code` param: its script (workflow/scripts/<script>), the import closure of the script and of
    the modules named in ``parts`` (dotted names: those it loads by name) and the data files named there
    (paths). Each part is a list of them, or a function of the wildcards that returns one."""
    if any(callable(part) for part in parts):
        return lambda wildcards: code(script, *(part(wildcards) if callable(part) else part for part in parts))
    names = [name for part in parts for name in part]
    modules = {name for name in names if "/" not in name}
    script_path = ROOT / "workflow" / "scripts" / script
    own = {digests.module_file(m, LIB_DIR) for m in modules}
    files = digests.closure(digests.imports(script_path, "", LIB_DIR) | modules, LIB_DIR, skip=ROBOT_FILES - own)
    return digests.code_map([f"workflow/scripts/{script}", *(str(f.relative_to(ROOT)) for f in files if digests.has_code(f)),
                             *(name for name in names if "/" in name)], ROOT)


def job_family_sources(wildcards):
    """family_sources of a job's family: its {family} wildcard's, or its {experiment}'s."""
    family = wildcards.family if "family" in wildcards.keys() else config["experiments"][wildcards.experiment]["family"]
    return family_sources(family)


def collect_sources(family):
    return collect_sources_for(family, config["collect"]["algo"][family])


def collect_sources_for(family, algo):
    return family_sources(family) + [algo_module(algo)]


def algo_sources(algo):
    """A function of wildcards: the algorithm's module and the experiment's family."""
    return lambda wildcards: job_family_sources(wildcards) + [algo_module(algo)]


def minari_sources():
    """The export's code: every exported family's env (a dataset's spaces and env spec)."""
    return sorted({s for f in COLLECT_FAMILIES for s in family_sources(f)})

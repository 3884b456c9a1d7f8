"""Every job lists, in its code param (recorded in its results' provenance), each library file its result
depends on: the import closure of its script and of the modules it loads by name (the algorithm, the
family's robot module). Otherwise an edit of that file would not rerun the job, and "edit algos/mier.py,
rerun MIER only" breaks silently.

The one deliberate exception: the family registry (``envs/__init__.py``) imports every robot module,
but a job depends only on its own family's robot module (editing ant.py must not rerun cheetah jobs).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

from paper_repro import config as prconfig
from paper_repro import digests, envs, methods, plan

LIB = ROOT / "src" / "paper_repro"
SCRIPTS = ROOT / "workflow" / "scripts"
ROBOT_MODULES = {p.relative_to(LIB).as_posix() for p in (LIB / "envs").glob("*.py")} - {
    "envs/__init__.py", "envs/tasks.py", "envs/registration.py"}  # the registry's shared parts, needed by every env user
# package markers with no code (a docstring at most): nothing a result can depend on
EMPTY_MODULES = {p.relative_to(LIB).as_posix() for p in LIB.rglob("__init__.py")
                 if all(isinstance(n, ast.Expr) for n in ast.parse(p.read_text()).body)}
# rule name prefix -> the script it runs (workflow/rules/*.smk)
RULE_SCRIPTS = [("task_tables", "task_tables.py"), ("collect_", "collect.py"), ("best_", "collect.py"),
                ("export_minari", "export_minari.py"),
                ("metatrain_admrl", "admrl_train.py"), ("metatrain_mb_", "admrl_train.py"),
                ("evaluate_admrl", "admrl_evaluate.py"), ("evaluate_mb_", "admrl_evaluate.py"),
                ("table_fig3_worst_case_gap", "table_admrl.py"), ("table_fig4_adversarial_tasks", "table_admrl.py"),
                ("table_fig5_ood_gap", "table_admrl.py"), ("table_fig1_pearl_gap_heatmap", "table_admrl.py"),
                ("table_fig2_adaptation_returns", "table_admrl.py"), ("model_error_", "admrl_model_error.py"),
                ("table_fig6_model_error", "table_model_error.py"), ("omniglot_data", "omniglot_data.py"),
                ("metatrain_omniglot", "omniglot_train.py"), ("metatrain_", "metatrain.py"),
                ("finetune_", "finetune.py"),
                ("evaluate_", "evaluate.py"), ("table_fig8", "table_fig8.py"), ("table_", "table_results.py"),
                ("plot_", "plot_figure.py"), ("claims_", "claims.py")]


# a rule's method (its name after metatrain_, evaluate_ or finetune_, "-" as "_") -> its algorithm
METHOD_ALGOS = {m.replace("-", "_"): entry[0] for registry in (methods.OFFLINE_METHODS, methods.ONLINE_RUNS)
                for m, entry in registry.items()}


def module_file(dotted: str) -> str | None:
    """'paper_repro.algos.mier' -> 'algos/mier.py' (a package -> its __init__.py); None if not a module."""
    path = digests.module_file(dotted, LIB)
    return path.relative_to(LIB).as_posix() if path else None


def imports(path: Path, package: str) -> set[str]:
    return digests.imports(path, package, LIB)


def closure(modules: set[str]) -> set[str]:
    """Library files (relative to src/paper_repro) reached from ``modules`` through imports."""
    return {p.relative_to(LIB).as_posix() for p in digests.closure(modules, LIB)}


def planned_rules(workdir: Path) -> set[str]:
    """The rules of the whole smoke DAG (Snakemake's, built in this process)."""
    return {job.rule for job in plan.dag_jobs(["all"], workdir=workdir, config={"scale": "smoke"}, forceall=True)}


def dynamic_modules(rule: str, wildcards: dict[str, str], config: dict) -> set[str]:
    """Modules a job's script loads by name: its algorithm's and its family's robot module."""
    mods, family = set(), wildcards.get("family")
    if rule.startswith("collect_"):
        family = rule.removeprefix("collect_")
        mods.add(f"paper_repro.algos.{config['collect']['algo'][family]}")
    elif rule.startswith("best_"):  # AdMRL's reference agents: SAC on an experiment's test tasks
        family = config["experiments"][rule.removeprefix("best_").replace("_", "-")]["family"]
        mods.add("paper_repro.algos.sac")
    elif rule.startswith("model_error_"):  # AdMRL Fig. 6: the family's models on its test tasks
        family = config["experiments"][rule.removeprefix("model_error_").replace("_", "-")]["family"]
    elif rule == "metatrain_omniglot":  # MACAW Fig. 6: imports its algorithm by name, no family
        pass
    elif rule.startswith(("metatrain_", "evaluate_", "finetune_")):
        method = rule.split("_", 1)[1]
        algo = METHOD_ALGOS.get(method, method.split("_")[0])  # evaluate_mier_no_relabel -> mier
        mods.add(f"paper_repro.algos.{algo}")
        family = family or config["experiments"][wildcards["experiment"]]["family"]
    if family:
        robot = family.split("-")[0]
        mods.add(f"paper_repro.envs.{ {'metaworld': 'meta_world'}.get(robot, robot)}")
    return mods


NOT_IN_SMOKE_RUN = {"all", "export_minari"}  # export_minari is built by name only (docs/datasets.md)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> dict[tuple, dict[str, str]]:
    """(rule, wildcards) -> code map of every job of the shared smoke run, from its results' provenance."""
    from smoke_run import smoke_results

    workdir, _ = smoke_results(tmp_path_factory)
    found = {}
    for side in (workdir / "results").rglob("*.provenance.json"):
        prov = json.loads(side.read_text())
        if "rule" in prov:
            found[(prov["rule"], tuple(sorted(prov["wildcards"].items())))] = prov.get("code", {})
    return found


def test_every_job_lists_the_import_closure_of_its_code(jobs):
    config = prconfig.resolve({**prconfig.load_yaml(ROOT / "config" / "config.yaml"), "scale": "smoke"}, ROOT)
    problems = []
    for (rule, wildcards), code in jobs.items():
        wildcards = dict(wildcards)
        script = next(s for prefix, s in RULE_SCRIPTS if rule.startswith(prefix))
        if f"workflow/scripts/{script}" not in code:
            problems.append(f"{rule} {wildcards}: its code param lacks its script {script}")
        needed = closure(imports(SCRIPTS / script, "") | dynamic_modules(rule, wildcards, config))
        own_robot = {module_file(m) for m in dynamic_modules(rule, wildcards, config) if ".envs." in m}
        needed -= ROBOT_MODULES - own_robot  # the registry's other robots: see the module docstring
        needed -= EMPTY_MODULES
        listed = {p.removeprefix("src/paper_repro/") for p in code if p.startswith("src/paper_repro/")}
        if not needed <= listed:
            problems.append(f"{rule} {wildcards}: its code param lacks {sorted(needed - listed)}")
        wrong = [p for p, digest in code.items() if digest != digests.source_digest(ROOT / p)]
        if wrong:
            problems.append(f"{rule} {wildcards}: recorded digests differ from the code's: {wrong}")
    assert not problems, "\n".join(dict.fromkeys(problems))


def test_every_job_writes_its_declared_log(jobs, tmp_path_factory):
    """Every job of the smoke run declares a log and its script writes to it (`results/logs/...`)."""
    from smoke_run import figure_target, smoke_results

    workdir, figures = smoke_results(tmp_path_factory)
    built = plan.dag_jobs(["all", *map(figure_target, figures)], workdir=workdir, config={"scale": "smoke"},
                          forceall=True)
    problems = [f"{job.rule} {job.wildcards}: no log declared" for job in built if not job.logs and job.rule != "all"]
    problems += [f"{job.rule} {job.wildcards}: {log} is {'empty' if (workdir / log).is_file() else 'missing'}"
                 for job in built for log in job.logs
                 if not (workdir / log).is_file() or not (workdir / log).stat().st_size]
    assert len(built) > 100 and not problems, "\n".join(problems)


def test_every_rule_is_checked(jobs, tmp_path_factory):
    """The smoke run that the closure test reads ran every rule of the workflow."""
    from conftest import copy_workflow

    rules = planned_rules(copy_workflow(tmp_path_factory.mktemp("inputs") / "wf"))
    assert len(rules) > 10, "the dry run lists too few rules"
    assert rules - NOT_IN_SMOKE_RUN <= {rule for rule, _ in jobs}


def test_closure_follows_imports():
    """The walker (paper_repro.digests.closure) itself: mier imports sac, which imports nets and buffers;
    envs pulls in every robot."""
    assert {"algos/mier.py", "algos/sac.py", "nets.py", "buffers.py", "meta.py", "io.py"} <= closure({"paper_repro.algos.mier"})
    assert {"envs/__init__.py", "envs/tasks.py", "envs/ant.py", "envs/cheetah.py"} <= closure({"paper_repro.envs"})
    # every module that defines a registered family's env is in the registry's closure
    defining = {module_file(envs.get_family(f).env_cls.__module__) for f in envs.FAMILIES}
    assert defining and None not in defining and defining <= closure({"paper_repro.envs"})


# Run in a fresh interpreter: imports every library module with builtins.__import__ wrapped, and prints
# each import that a library module's code makes (importer, then the absolute names it imported).
RECORD_IMPORTS = """
import builtins, importlib, importlib.util, json, sys
edges, real = set(), builtins.__import__

def record(name, globals=None, locals=None, fromlist=(), level=0):
    module = real(name, globals, locals, fromlist, level)
    importer = (globals or {}).get("__name__", "")
    base = importlib.util.resolve_name("." * level + name, globals["__package__"]) if level else name
    if importer.startswith("paper_repro"):
        edges.update((importer, m) for m in [base, *(f"{base}.{f}" for f in fromlist or ())] if m in sys.modules)
    return module

builtins.__import__ = record
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(edges)))
"""


def test_closure_holds_every_module_an_import_really_loads():
    """The static walker against Python's own imports: every library module that a library module's code
    imports when it runs lies in that module's closure."""
    modules = [".".join(("paper_repro", *p.relative_to(LIB).with_suffix("").parts)).removesuffix(".__init__")
               for p in sorted(LIB.rglob("*.py"))]
    edges = json.loads(subprocess.run([sys.executable, "-c", RECORD_IMPORTS, *modules], capture_output=True,
                                      text=True, check=True).stdout)
    assert len(edges) > 50, "too few imports recorded"
    missed = [(a, b) for a, b in edges if module_file(b) and module_file(b) not in closure({a})]
    assert not missed, f"imports the walker misses: {missed}"

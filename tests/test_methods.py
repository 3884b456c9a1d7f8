"""The method registries (paper_repro.methods), checked against the config and the algorithms without
Snakemake: every method an experiment names exists, every switch is a field of its algorithm's Config, and
each algorithm's listed imports are the modules it really imports (its code map, workflow/rules/common.smk)."""

import dataclasses
import importlib

import pytest

from conftest import ROOT
from test_rule_inputs import EMPTY_MODULES, closure

from paper_repro import config as prconfig
from paper_repro import methods

CONFIG = prconfig.load_yaml(ROOT / "config" / "config.yaml")
COLLECTORS = {"sac", "td3"}  # MACAW Fig. 8's data-collection agents, drawn as methods


def config_fields(module: str) -> set[str]:
    return {f.name for f in dataclasses.fields(importlib.import_module(f"paper_repro.algos.{module}").Config)}


def test_every_method_an_experiment_names_is_registered():
    named = {m for e in CONFIG["experiments"].values() for m in e.get("methods", [])}
    known = (set(methods.OFFLINE_METHODS) | set(methods.ONLINE_RUNS) | set(methods.EVAL_METHODS)
             | set(methods.MB_METHODS) | set(methods.OMNIGLOT_METHODS) | COLLECTORS)
    assert named - known == set()


@pytest.mark.parametrize("registry", ["OFFLINE_METHODS", "ONLINE_RUNS"])
def test_every_switch_is_a_field_of_its_algorithms_config(registry):
    for method, (algo, switches, *_) in getattr(methods, registry).items():
        assert set(switches) <= config_fields(algo), f"{registry}[{method!r}]: {set(switches) - config_fields(algo)}"


def test_omniglot_switches_and_model_based_samplers_are_their_algorithms_own():
    for method, switches in methods.OMNIGLOT_METHODS.items():
        assert set(switches) <= config_fields("maml_classifier"), method
    from paper_repro.algos import admrl

    for method, sampler in methods.MB_METHODS.items():  # each sampler is one the algorithm draws tasks with
        assert sampler in admrl.CHOICES["task_sampler"], method


def test_evaluated_methods_adapt_registered_runs_and_fine_tuned_ones_can_be():
    assert {run for run, _ in methods.EVAL_METHODS.values()} <= set(methods.ONLINE_RUNS)
    assert methods.eval_algo("mier-no-relabel") == "mier" and methods.eval_algo("mt-joint") == "maml"
    for method, module in methods.FINETUNE_ALGOS.items():
        assert method in methods.OFFLINE_METHODS and methods.OFFLINE_METHODS[method][0] == module
        assert callable(importlib.import_module(f"paper_repro.algos.{module}").finetune)


@pytest.mark.parametrize("algo", sorted(methods.ALGO_IMPORTS))
def test_each_algorithms_listed_imports_are_what_it_imports(algo):
    """ALGO_IMPORTS is each algorithm's code map besides its own file (io.py comes with every job's)."""
    imported = closure({f"paper_repro.algos.{algo}"}) - {f"algos/{algo}.py", "io.py"} - EMPTY_MODULES
    assert set(methods.ALGO_IMPORTS[algo]) == imported


def test_admrl_figure_lists_name_admrl_figures():
    admrl = {name for name, fig in CONFIG["figures"].items() if fig["paper"] == "AdMRL"}
    assert set(methods.ADMRL_FIGURES) <= admrl and set(methods.VISITED_ONLY) | methods.RETURNS_ONLY <= admrl
    for figure, experiments in methods.VISITED_ONLY.items():
        assert set(experiments) <= set(CONFIG["figures"][figure]["experiments"])

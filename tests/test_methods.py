"""The method registries (paper_repro.methods), checked against the config and the algorithms without
Snakemake: every method an experiment names exists, every switch is a field of its algorithm's Config, and
each online algorithm has the shared interface and counts its iterations in a field of its Config."""

import dataclasses
import importlib

import pytest

from conftest import ROOT

from paper_repro import config as prconfig
from paper_repro import job, methods

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


@pytest.mark.parametrize("algo", sorted({algo for algo, _, _ in methods.ONLINE_RUNS.values()}))
def test_each_online_algorithm_has_the_interface_and_counts_its_iterations(algo):
    """An online algorithm trains and adapts through one interface, and job.ITERATIONS (else train_steps)
    names an int field of its Config: what a job's progress counts."""
    module = importlib.import_module(f"paper_repro.algos.{algo}")
    assert callable(module.train) and callable(module.adapt_and_evaluate)
    assert isinstance(job.iterations(module.Config()), int)
    assert job.ITERATIONS.get(algo, "train_steps") in config_fields(algo)


def test_admrl_figure_lists_name_admrl_figures():
    admrl = {name for name, fig in CONFIG["figures"].items() if fig["paper"] == "AdMRL"}
    assert set(methods.ADMRL_FIGURES) <= admrl and set(methods.VISITED_ONLY) | methods.RETURNS_ONLY <= admrl
    for figure, experiments in methods.VISITED_ONLY.items():
        assert set(experiments) <= set(CONFIG["figures"][figure]["experiments"])

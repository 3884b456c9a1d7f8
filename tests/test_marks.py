"""The ``workflow`` mark goes to each test that runs Snakemake, itself or through a helper of its module
(conftest.runs_snakemake), and not to the unit tests beside it."""

import sys
import types

from conftest import calls, runs_snakemake


def _module(source: str) -> types.ModuleType:
    module = types.ModuleType("fake_tests")
    sys.modules["fake_tests"] = module
    try:
        exec(compile(source, "fake_tests.py", "exec"), module.__dict__)
    finally:
        del sys.modules["fake_tests"]
    return module


def test_a_test_that_runs_snakemake_through_a_helper_is_a_workflow_test():
    module = _module("""
def planned(workdir):
    return plan.dag_jobs(["all"], workdir=workdir)

def helper(workdir):
    return sorted(planned(workdir))

def test_reruns(built):
    assert helper(built) == []

def test_lint():
    snakemake(ROOT, "--lint")

def test_unit():
    assert sorted([2, 1]) == [1, 2]
""")
    assert runs_snakemake(module.test_reruns, module) and runs_snakemake(module.test_lint, module)
    assert not runs_snakemake(module.test_unit, module)


def test_a_reader_of_the_smoke_run_is_found_through_its_fixture_or_a_helper():
    """conftest.reads_smoke_run (which puts those tests last and starts the smoke run in the background) follows
    a test's fixtures and its module's helpers, as the workflow mark does."""
    module = _module("""
def built(tmp_path_factory):
    from smoke_run import smoke_results
    return smoke_results(tmp_path_factory)[0]

def figures(tmp_path_factory):
    return smoke_results(tmp_path_factory)[1]

def test_reads_through_a_helper(tmp_path_factory):
    assert figures(tmp_path_factory)

def test_unit(tmp_path):
    assert tmp_path.exists()
""")
    reads = {"smoke_results"}
    assert calls(module.built, module, reads) and calls(module.test_reads_through_a_helper, module, reads)
    assert not calls(module.test_unit, module, reads)

"""Rerun only what changed: each change to a copy of the workflow reruns exactly the jobs it should."""

from __future__ import annotations

import ast
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from conftest import snakemake

from paper_repro import io, plan

SMOKE = ("--config", "scale=smoke")
FIG4 = "results/figures/fig4_dynamics_extrapolation.pdf"
FIG4_DOWNSTREAM = ["results/tables/fig4_dynamics_extrapolation.csv", "results/tables/fig4_dynamics_extrapolation.rows.csv",
                   "results/claims/fig4_dynamics_extrapolation.csv", FIG4, FIG4.replace(".pdf", ".png")]
NEGATED = "results/smoke/runs/mier-negated-joints"


def run(algo: str) -> list[str]:
    return [f"{NEGATED}/{algo}/seed0/{name}" for name in ("model.pt", "metrics.csv", "curve.csv")]


def evaluation(method: str) -> str:
    return f"results/smoke/eval/mier-negated-joints/{method}/seed0.csv"


TABLES = [
    "results/tasks/ant-2d/admrl-coarse/test.csv",
    "results/tasks/ant-dir/macaw/test.csv",
    "results/tasks/cheetah-vel/macaw/test.csv",
    "results/tasks/walker-params/macaw/test.csv",
]
TARGETS = [*TABLES, FIG4]


def planned(workdir: Path, targets: list[str], *args: str) -> list[str]:
    """The outputs a dry run would (re)build: Snakemake's own DAG, built in this process (paper_repro.plan), with
    the command line's ``--config key=value ...`` and ``--configfile file`` (default: the smoke scale)."""
    config, configfiles, option = {}, [], None
    for arg in args or SMOKE:
        if arg.startswith("--"):
            option = arg
        elif option == "--config":
            key, value = arg.split("=", 1)
            config[key] = yaml.safe_load(value)
        else:
            configfiles.append(Path(workdir) / arg)
    jobs = plan.dag_jobs(targets, workdir=workdir, config=config, configfiles=configfiles, cores=1)
    return sorted({output for job in jobs if job.needrun for output in job.outputs})


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The shared smoke run (tests/smoke_run.py), which builds fig4 and every task table."""
    from smoke_run import smoke_results

    workdir, _ = smoke_results(tmp_path_factory)
    assert planned(workdir, TARGETS) == []
    return workdir


@contextmanager
def edited(workdir: Path, path: str):
    """``path``'s code changes (one more statement), and its original text comes back afterwards."""
    source = workdir / path
    original, stat = source.read_text(), source.stat()
    source.write_text(original + "\n_EDITED = True\n")
    try:
        yield
    finally:
        source.write_text(original)
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a script's mtime is Snakemake's own trigger


@contextmanager
def commented(workdir: Path):
    """Every library module gets two new comment lines and edited docstrings (its own and its first
    function's, where written with triple double quotes), and its original text back afterwards."""
    originals = {p: p.read_text() for p in sorted((workdir / "src" / "paper_repro").rglob("*.py"))}
    try:
        for path, text in originals.items():
            tree = ast.parse(text)
            lines = text.split("\n")
            for node in [tree, *(n for n in tree.body if isinstance(n, ast.FunctionDef))][:2]:
                doc = node.body[0] if node.body else None
                if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
                    lines[doc.lineno - 1] = lines[doc.lineno - 1].replace('"""', '"""Edited: ', 1)
            path.write_text("# an edited comment\n" + "\n".join(lines) + "\n# another\n")
        yield
    finally:
        for path, text in originals.items():
            path.write_text(text)


def recorded(workdir: Path) -> dict[str, dict]:
    """Every result's provenance in ``workdir``: path -> sidecar."""
    return {str(p.relative_to(workdir)).removesuffix(".provenance.json"): io.load_json(p)
            for p in (workdir / "results").rglob("*.provenance.json")}


def reruns_of(workdir: Path, module: str, targets: list[str]) -> list[str]:
    """What editing ``module`` must rebuild for ``targets``, from the run's own records: the outputs of the jobs
    whose code map lists the module, and of every job downstream of them (through the recorded inputs)."""
    sides = recorded(workdir)
    job = {path: (side.get("rule"), tuple(sorted((side.get("wildcards") or {}).items()))) for path, side in sides.items()}
    outputs = {}
    for path, key in job.items():
        outputs.setdefault(key, set()).add(path)
    needed, todo = set(), list(targets)
    while todo:
        path = todo.pop()
        if path in sides and job[path] not in needed:
            needed.add(job[path])
            todo += [i for out in outputs[job[path]] for i in sides[out].get("inputs", {})]
    changed = {key for key in needed if any(module in sides[out].get("code", {}) for out in outputs[key])}
    while more := {key for key in needed - changed
                   if {job.get(i) for out in outputs[key] for i in sides[out].get("inputs", {})} & changed}:
        changed |= more
    return sorted(path for key in changed for path in outputs[key])


def test_touch_alone_reruns_nothing(built):
    for path in ["src/paper_repro/envs/ant.py", "src/paper_repro/envs/tasks.py", "config/config.yaml",
                 "src/paper_repro/algos/maml.py", "src/paper_repro/algos/pearl.py", "src/paper_repro/envs/cheetah.py"]:
        (built / path).touch()
    assert planned(built, TARGETS) == []


def test_comment_and_docstring_edits_rerun_nothing(built):
    """A job reruns on its library code's meaning (its code param: ASTs without docstrings), not its text."""
    from smoke_run import FIGURES, figure_target

    with commented(built):
        assert '"""Edited: ' in (built / "src/paper_repro/algos/pearl.py").read_text()
        assert planned(built, ["all", *map(figure_target, FIGURES)]) == []


@pytest.mark.parametrize("module", [f"src/paper_repro/{m}" for m in ("stats.py", "nets.py", "evaluate.py",
                                                                       "envs/tasks.py", "algos/pearl.py")])
def test_shared_module_change_reruns_exactly_the_jobs_that_import_it(built, module):
    """The rebuilt results are those whose job's recorded code map lists the module, and what reads them."""
    expected = reruns_of(built, module, TARGETS)
    assert expected, f"no job behind {TARGETS} runs {module}"
    with edited(built, module):
        assert planned(built, TARGETS) == expected


def test_script_change_reruns_its_jobs_only(built):
    """A script's code is in its jobs' code param (and Snakemake reruns them when the script is newer)."""
    with edited(built, "workflow/scripts/plot_figure.py"):
        assert planned(built, TARGETS) == sorted([FIG4, FIG4.replace(".pdf", ".png")])


def test_algorithm_hyperparameter_change_reruns_that_algorithm_only(built):
    (built / "override.yaml").write_text("scale: smoke\nmaml: {meta_iterations: 3}\n")
    rebuilt = planned(built, TARGETS, "--configfile", "override.yaml")
    assert rebuilt == sorted([*run("maml"), evaluation("maml"), *FIG4_DOWNSTREAM])


@pytest.mark.parametrize("algo, methods", [("pearl", ["pearl"]), ("maml", ["maml"]),
                                           ("mier", ["mier", "mier-no-relabel"])])
def test_algorithm_source_change_reruns_that_algorithm_and_its_figures_only(built, algo, methods):
    with edited(built, f"src/paper_repro/algos/{algo}.py"):
        assert planned(built, TARGETS) == sorted([*run(algo), *map(evaluation, methods), *FIG4_DOWNSTREAM])


def test_evaluation_protocol_change_reruns_evaluation_only(built):
    (built / "override.yaml").write_text("scale: smoke\nevaluate: {episodes: 2}\n")
    rebuilt = planned(built, TARGETS, "--configfile", "override.yaml")
    methods = ["maml", "mier", "mier-no-relabel", "pearl"]
    assert rebuilt == sorted([*map(evaluation, methods), *FIG4_DOWNSTREAM])


def test_test_time_option_change_reruns_that_methods_evaluation_only(built):
    """MIER's model fine-tuning steps on the test task (experiments.<name>.adapt.mier) is a test-time
    choice: changing it re-evaluates MIER and retrains nothing."""
    (built / "override.yaml").write_text(
        "scale: smoke\nexperiments: {mier-negated-joints: {adapt: {mier: {test_model_steps: 3}}}}\n")
    rebuilt = planned(built, TARGETS, "--configfile", "override.yaml")
    assert rebuilt == sorted([evaluation("mier"), *FIG4_DOWNSTREAM])


def test_dropping_a_method_reruns_only_the_figure(built):
    """An experiment's method list says which jobs exist, not what any one of them computes."""
    (built / "override.yaml").write_text(
        "scale: smoke\nexperiments: {mier-negated-joints: {methods: [mier, mier-no-relabel, pearl]}}\n")
    rebuilt = planned(built, TARGETS, "--configfile", "override.yaml")
    assert rebuilt == sorted(FIG4_DOWNSTREAM)


def test_family_definition_change_reruns_that_family_only(built):
    with edited(built, "src/paper_repro/envs/ant.py"):
        assert planned(built, TARGETS) == [
            "results/tasks/ant-2d/admrl-coarse/test.csv",
            "results/tasks/ant-2d/admrl-coarse/train.csv",
            "results/tasks/ant-dir/macaw/test.csv",
            "results/tasks/ant-dir/macaw/train.csv",
        ]
    with edited(built, "src/paper_repro/envs/cheetah.py"):  # the negated-joint family: its tables and everything on it
        rebuilt = planned(built, TARGETS)
    negated = [*run("maml"), *run("mier"), *run("pearl"),
               *map(evaluation, ["maml", "mier", "mier-no-relabel", "pearl"]), *FIG4_DOWNSTREAM]
    assert rebuilt == sorted([
        "results/tasks/cheetah-negated-joints/mier/test.csv", "results/tasks/cheetah-negated-joints/mier/train.csv",
        "results/tasks/cheetah-vel/macaw/test.csv", "results/tasks/cheetah-vel/macaw/train.csv", *negated])


def test_task_seed_change_reruns_every_table(built):
    rebuilt = planned(built, TABLES, "--config", "scale=smoke", "task_seed=1")
    assert set(TABLES) <= set(rebuilt)


def test_plot_option_change_reruns_the_plots_only(built):
    targets = ["results/figures/fig8_offline_policy_curves.pdf", FIG4]
    (built / "restyle.yaml").write_text("scale: smoke\nplot: {dpi: 300, context: talk, palette: colorblind, ci: 95}\n")
    assert planned(built, targets, "--configfile", "restyle.yaml") == sorted(
        f"results/figures/{name}.{kind}" for name in ("fig8_offline_policy_curves", "fig4_dynamics_extrapolation")
        for kind in ("pdf", "png"))


def test_interval_change_reruns_the_figure_tables_and_plots_only(built):
    """The intervals are computed in the table stage, so results/tables/ holds exactly what is drawn."""
    (built / "intervals.yaml").write_text("scale: smoke\nplot: {ci: 90, bootstrap: 500}\n")
    assert planned(built, [FIG4], "--configfile", "intervals.yaml") == sorted(FIG4_DOWNSTREAM)


def test_run_control_change_reruns_nothing(built):
    """How often a job checkpoints or logs is not part of its result (collect.run, metatrain.checkpoint_every)."""
    (built / "override.yaml").write_text(
        "scale: smoke\ncollect: {run: {checkpoint_every: 50, log_every: 10}}\nmetatrain: {checkpoint_every: 7}\n")
    targets = [*TARGETS, "results/figures/fig8_offline_policy_curves.pdf"]
    assert planned(built, targets, "--configfile", "override.yaml") == []


@pytest.fixture
def copy_of_built(built, tmp_path) -> Path:
    """A copy of the smoke run (results and Snakemake's records), for tests that really rebuild."""
    return Path(shutil.copytree(built, tmp_path / "wf", symlinks=True))


def test_rebuilt_result_carries_the_new_provenance(copy_of_built):
    """A rebuilt file's sidecar is rewritten from the job that rebuilt it: the resolved config as run
    and the hash of every input, never the stale sidecar of the earlier build."""
    wf = copy_of_built
    (wf / "override.yaml").write_text("scale: smoke\nmaml: {meta_iterations: 3}\n")
    snakemake(wf, "--cores", "2", FIG4, "--configfile", "override.yaml")
    prov = io.load_json(io.provenance_path(wf / run("maml")[0]))
    assert prov["config"]["maml"]["meta_iterations"] == 3
    assert prov["config"]["maml"]["inner_lr"] == 0.1  # the resolved dataclass, not just the overrides
    table = io.load_json(io.provenance_path(wf / FIG4_DOWNSTREAM[0]))
    assert table["inputs"] and all(io.file_sha256(wf / p) == h for p, h in table["inputs"].items())
    assert io.file_sha256(wf / evaluation("maml")) == table["inputs"][evaluation("maml")]


def test_another_scale_never_touches_this_scales_results(copy_of_built):
    """A run at another scale writes its expensive results apart; switching back rebuilds only the
    (cheap) figure tables and figures, which show the scale they were built at."""
    wf = copy_of_built
    expensive = {p: p.stat().st_mtime_ns for p in (wf / "results" / "smoke").rglob("*") if p.is_file()}
    assert any("/runs/" in str(p) for p in expensive)
    # a tiny "quick" run: the smoke budgets under the quick scale's name
    tiny = (wf / "config/scales/smoke.yaml").read_text().replace("scale: smoke", "scale: quick")
    limit = "task_limit: {train: 2, test: 2"
    assert limit in tiny
    (wf / "tiny-quick.yaml").write_text(tiny.replace(limit, limit + ", experiments: {mier-negated-joints: {test: 2}}"))
    snakemake(wf, "--cores", "2", FIG4, "--configfile", "tiny-quick.yaml")
    assert (wf / "results/quick/runs/mier-negated-joints/mier/seed0/model.pt").exists()
    assert {p: p.stat().st_mtime_ns for p in (wf / "results" / "smoke").rglob("*") if p.is_file()} == expensive
    assert io.load_json(io.provenance_path(wf / FIG4))["scale"] == "quick"
    assert planned(wf, [FIG4]) == sorted(FIG4_DOWNSTREAM)



MACAW_FIGURES = ["fig3_offline_meta_rl", "fig4_macaw_ablations", "fig5_weight_transform_ablation"]


def figure_files(name: str) -> list[str]:
    return [f"results/tables/{name}.csv", f"results/tables/{name}.rows.csv", f"results/claims/{name}.csv",
            f"results/figures/{name}.pdf", f"results/figures/{name}.png"]


def test_offline_algorithm_change_reruns_its_runs_and_their_figures_only(built):
    """Editing Offline MT+FT reruns its runs on every experiment that has it, then the figures that draw
    them (MACAW Figs 3 and 4), and not Fig. 5 (MACAW with and without weight transform), nor the data."""
    targets = [f"results/figures/{f}.pdf" for f in MACAW_FIGURES]
    assert planned(built, targets) == []
    experiments = ["macaw-cheetah-dir", "macaw-cheetah-vel", "macaw-walker-params", "macaw-ant-dir",
                   *(f"macaw-sparsity-{n}" for n in (3, 5, 10, 20))]
    runs = [f"results/smoke/runs/{e}/offline-mt-ft/seed0/{f}" for e in experiments
            for f in ("model.pt", "metrics.csv", "curve.csv")]
    with edited(built, "src/paper_repro/algos/mt_awr.py"):
        assert planned(built, targets) == sorted([*runs, *figure_files(MACAW_FIGURES[0]),
                                                  *figure_files(MACAW_FIGURES[1])])
    (built / "override.yaml").write_text("scale: smoke\nexperiments: {macaw-quality-last: {data_quality: first}}\n")
    rebuilt = planned(built, targets, "--configfile", "override.yaml")  # one experiment's data: its runs only
    assert rebuilt == sorted([f"results/smoke/runs/macaw-quality-last/{m}/seed0/{f}" for m in ("macaw", "macaw-no-adv-head")
                              for f in ("model.pt", "metrics.csv", "curve.csv")] + figure_files(MACAW_FIGURES[1]))


ADMRL_FIGURES = [f"results/figures/{name}.pdf" for name in
                 ("fig3_worst_case_gap", "fig4_adversarial_tasks", "fig5_ood_gap", "fig6_model_error")]


def test_admrl_changes_rerun_only_what_they_touch(built):
    """Editing the model-based learner reruns its runs, evaluations, model errors and AdMRL's figures,
    never the reference agents (A*); switching the gap reference reruns the gap tables and plots only."""
    assert planned(built, ADMRL_FIGURES) == []
    with edited(built, "src/paper_repro/algos/admrl.py"):
        rebuilt = planned(built, ADMRL_FIGURES)
    assert not [p for p in rebuilt if "/best/" in p]
    assert "results/smoke/runs/admrl/ant-2d/init/seed0/run.pt" in rebuilt
    assert "results/smoke/model_error/admrl-ant-2d-ood/seed0.csv" in rebuilt
    (built / "reference.yaml").write_text("scale: smoke\nadmrl: {gap_reference: sac}\n")
    gaps = ("fig3_worst_case_gap", "fig4_adversarial_tasks", "fig5_ood_gap")
    assert planned(built, ADMRL_FIGURES, "--configfile", "reference.yaml") == sorted(
        [f for g in gaps for f in figure_files(g)])

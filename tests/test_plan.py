"""make plan: the jobs of a target from Snakemake's own DAG, and its wall time on N cores."""

from __future__ import annotations

import re

from conftest import snakemake

from paper_repro import plan


def job(rule: str, minutes: float, needs: tuple[int, ...] = (), threads: int = 1, priority: int = 0) -> plan.Job:
    return plan.Job(rule=rule, wildcards={}, outputs=(), runtime_min=minutes, threads=threads, priority=priority,
                    params="{}", needs=needs, needrun=True)


# a table job (0) feeds two chains, a long one (1 -> 3) and a short one (2), which meet in a plot (4)
DIAMOND = [job("tables", 5), job("train_long", 60, (0,)), job("train_short", 10, (0,)),
           job("evaluate_long", 40, (1,)), job("plot", 5, (2, 3))]


def test_critical_path_is_the_longest_chain():
    length, path = plan.critical_path(DIAMOND)
    assert length == 5 + 60 + 40 + 5
    assert [j.rule for j in path] == ["tables", "train_long", "evaluate_long", "plot"]


def test_upstream_is_one_targets_dag_within_a_bigger_one():
    """evaluate_long's DAG within the diamond: tables, train_long and itself, each waiting for the one before."""
    jobs = [plan.Job(**{**j.__dict__, "outputs": (f"{j.rule}.out",)}) for j in DIAMOND]
    sub = plan.upstream(jobs, "evaluate_long.out")
    assert [(j.rule, j.needs) for j in sub] == [("tables", ()), ("train_long", (0,)), ("evaluate_long", (1,))]
    assert len(plan.upstream(jobs, "plot.out")) == len(DIAMOND)


def test_wall_time_on_one_core_is_the_sum_and_on_two_the_critical_path():
    assert plan.wall_time(DIAMOND, cores=1) == 120
    assert plan.wall_time(DIAMOND, cores=2) == 110


def test_wall_time_starts_the_longest_chain_first_unless_a_priority_says_otherwise():
    # on 2 cores after the tables: the long chain (60 then 40) beside two 30-min jobs in turn ends at 105;
    # the two short jobs first (a priority) delay the long chain to 35 + 60 + 40 = 135
    def jobs(priority: int) -> list[plan.Job]:
        return [job("tables", 5), job("x1", 30, (0,), priority=priority), job("x2", 30, (0,), priority=priority),
                job("long", 60, (0,)), job("after_long", 40, (3,))]

    assert plan.wall_time(jobs(0), cores=2) == 5 + 60 + 40
    assert plan.wall_time(jobs(1), cores=2) == 5 + 30 + 60 + 40
    # two-thread jobs on two cores run one at a time
    wide = [job("a", 10, threads=2), job("b", 10, threads=2)]
    assert plan.wall_time(wide, cores=2) == 20
    assert plan.wall_time(wide, cores=4) == 10


def test_report_names_jobs_time_and_the_path():
    text = plan.report(DIAMOND, cores=2)
    assert text.startswith("5 jobs; requested 2.0 core-hours")
    assert "critical path 1 h 50 min: tables -> train_long -> evaluate_long -> plot" in text
    assert "estimated wall time on 2 cores: 1 h 50 min" in text
    assert "expected wall time on 2 cores: about 55 min" in plan.report(DIAMOND, cores=2, factor=2)
    assert f"divided by its margin of {plan.margin():g}" in text
    assert plan.report([], cores=2).startswith("Nothing to run")


def test_dag_jobs_are_the_dry_runs_jobs(workflow_dir):
    """The in-process DAG lists the jobs `snakemake -n` lists, with their runtime requests and params."""
    target = "results/figures/fig4_dynamics_extrapolation.pdf"
    out = snakemake(workflow_dir, "-n", "-F", "--cores", "2", target, "--config", "scale=smoke").stdout
    dry = sorted(re.findall(r"^(?:local)?rule (\S+):", out, flags=re.M))
    jobs = plan.dag_jobs([target], workdir=workflow_dir, config={"scale": "smoke"}, forceall=True)
    assert sorted(j.rule for j in jobs) == dry
    runtimes = [int(m) for m in re.findall(r"resources: .*runtime=(\d+)", out)]
    assert sorted(j.runtime_min for j in jobs) == sorted(runtimes)
    mier = next(j for j in jobs if j.rule == "metatrain_mier")
    assert mier.wildcards == {"experiment": "mier-negated-joints", "seed": "0"}
    assert '"code"' not in mier.params and "mier" in mier.params
    assert all(d < i for i, j in enumerate(jobs) for d in j.needs), "jobs come in dependency order"
    assert plan.to_run(jobs) == jobs
    assert "estimated wall time on 2 cores" in plan.report(jobs, cores=2)


def test_the_longest_chains_have_the_highest_priorities():
    """At the quick scale MIER's training (then its relabelling evaluation) starts before PEARL's and MAML's
    on the same experiment, and the cheetah-vel collection before the MACAW training that waits on it; tables
    and plots last. An online job's priority is its own chain: its request plus its experiment's longest
    evaluation of the run."""
    targets = ["results/figures/fig4_dynamics_extrapolation.pdf", "results/figures/fig3_offline_meta_rl.pdf"]
    all_jobs = plan.dag_jobs(targets, config={"scale": "quick"}, forceall=True)
    jobs = {j.rule: j for j in all_jobs}
    joints = {j.rule: j for j in all_jobs if j.wildcards.get("experiment") == "mier-negated-joints"
              and j.wildcards.get("seed") == "0"}
    assert joints["metatrain_mier"].priority > joints["metatrain_pearl"].priority > joints["metatrain_maml"].priority
    assert joints["metatrain_mier"].priority == joints["metatrain_mier"].runtime_min + max(
        joints["evaluate_mier"].runtime_min, joints["evaluate_mier_no_relabel"].runtime_min)
    assert joints["evaluate_mier"].priority == joints["evaluate_mier"].runtime_min
    assert jobs["collect_cheetah-vel"].priority > jobs["metatrain_macaw"].priority > jobs["evaluate_mier"].priority
    assert jobs["plot_fig4_dynamics_extrapolation"].priority == 0


def test_the_rules_list_is_current():
    """docs/rules.md names every rule, generated ones included, with where it is defined."""
    from conftest import ROOT

    text = plan.rules_markdown(ROOT)
    assert "| `metatrain_mier` | `workflow/rules/metatrain.smk:7` | `metatrain.py` |" in text
    assert (ROOT / "docs" / "rules.md").read_text() == text, "run python -m paper_repro.plan --rules"

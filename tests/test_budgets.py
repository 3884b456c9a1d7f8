"""Budgets per experiment (README Budgets): each meta-training job's hyperparameters are the scale's section,
then the experiment's authors' values (experiments.<name>.hyper), then its budget at that scale
(experiments.<name>.budget, from config/scales/<scale>.yaml), as the jobs get them from Snakemake's DAG."""

from __future__ import annotations

import json
from functools import cache

import pytest

from conftest import ROOT

from paper_repro import config as prconfig
from paper_repro import plan, scales

pytestmark = pytest.mark.workflow  # Snakemake's DAG, built in-process for each scale


@cache
def runs(scale: str) -> dict[tuple[str, str], dict]:
    """(method, experiment) -> the algorithm and hyperparameters of its meta-training job (seed 0)."""
    return {(method, exp): {"algo": algo, **hyper} for (exp, method), (algo, hyper) in scales.runs(scale).items()}


def test_the_paper_scale_keeps_each_experiments_paper_numbers():
    paper = runs("paper")
    assert paper[("mier", "mier-humanoid-dir")]["epochs"] == 200  # the authors' humanoid-dir config
    assert paper[("pearl", "mier-humanoid-dir")]["num_train_steps_per_itr"] == 4000
    assert paper[("macaw", "macaw-vel-ood")]["train_steps"] == 130000  # Table 1's run
    assert paper[("pearl", "admrl-hopper-2d")]["meta_batch"] == 10  # AdMRL App. C
    assert "epochs" not in paper[("mier", "mier-negated-joints")]  # mier.Config's default, App. A's 400


def test_the_quick_scale_sets_budgets_per_experiment_and_keeps_the_authors_hyperparameters():
    quick = runs("quick")
    assert quick[("mier", "mier-humanoid-dir")]["epochs"] == 60  # its budget at this scale
    assert quick[("mier", "mier-humanoid-dir")]["initial_repeats"] == 1  # the authors' humanoid value
    assert quick[("pearl", "mier-humanoid-dir")]["num_train_steps_per_itr"] == 500
    assert quick[("pearl", "mier-humanoid-dir")]["num_iterations"] == 30
    assert quick[("pearl", "mier-cheetah-vel")]["num_iterations"] == 65  # the quick section's
    assert quick[("pearl", "mier-humanoid-dir")]["embedding_batch_size"] == 256
    assert quick[("macaw", "macaw-vel-ood")]["train_steps"] == 2000
    # AdMRL's PEARL keeps the authors' meta-batch (not the quick section's 8); its budget is admrl.baselines'
    assert quick[("pearl", "admrl-hopper-2d")]["meta_batch"] == 10
    assert quick[("pearl", "admrl-hopper-2d")]["num_train_steps_per_itr"] == 250
    assert quick[("mier", "mier-negated-joints")]["epochs"] == 100  # the quick section's


def test_no_authors_value_overrides_a_smoke_budget():
    """Every value the smoke scale sets for an algorithm reaches every job of it, or the experiment's smoke
    budget replaces it: the authors' 130k steps or width 300 never run in a smoke build."""
    smoke = prconfig.resolve({**prconfig.load_yaml(ROOT / "config" / "config.yaml"), "scale": "smoke"}, ROOT)
    budgets = {name: exp.get("budget", {}) for name, exp in smoke["experiments"].items()}
    problems = []
    for (method, experiment), hyper in runs("smoke").items():
        algo = hyper["algo"]
        own = {**smoke[algo], **budgets[experiment].get(algo, {})}
        if smoke["experiments"][experiment]["paper"] == "AdMRL":
            own.update(smoke["admrl"]["baselines"].get(algo, {}))
        switched = {k for k in own if k in hyper and hyper[k] != own[k]}
        problems += [f"{method} on {experiment}: {k} = {hyper[k]} (smoke: {own[k]})" for k in sorted(switched)
                     if not isinstance(own[k], bool)]  # a method's switches (weight_transform...) win
    assert not problems, "\n".join(problems)


def test_the_scales_table_is_current():
    """docs/scales.md is what `python -m paper_repro.scales` writes from today's config."""

    assert (ROOT / "docs" / "scales.md").read_text() == scales.markdown(), "run python -m paper_repro.scales"


def test_a_familys_own_agent_keys_reach_its_collection_only():
    """collect.family_agent.<family> goes over collect.agent for that family's collection job and no other (the
    quick scale's 64-64 cheetah-vel agents); a key that family's collecting algorithm lacks stops the workflow
    at start-up, naming it."""
    jobs = plan.dag_jobs(["all"], workdir=ROOT, config={"scale": "quick"}, forceall=True)
    agents = {job.rule: json.loads(job.params)["collect"] for job in jobs if job.rule.startswith("collect_")}
    assert agents["collect_cheetah-vel"]["hidden"] == [64, 64]
    assert agents["collect_cheetah-vel"]["eval_every"] == 1000  # collect.agent's keys still reach it
    others = {rule: agent for rule, agent in agents.items() if rule != "collect_cheetah-vel"}
    assert len(others) == 4 and all("hidden" not in agent for agent in others.values())
    typo = {"scale": "smoke", "collect": {"family_agent": {"walker-params": {"hiden": [8, 8]}}}}
    with pytest.raises(Exception, match=r"collect\.family_agent\.walker-params.*unknown key\(s\) \['hiden'\]"):
        plan.dag_jobs(["all"], workdir=ROOT, config=typo)

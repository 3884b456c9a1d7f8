"""The workflow itself: lint, dry runs at every scale, a bad config, and a real smoke run of the task tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from paper_repro import config as prconfig
from paper_repro import claims, envs, io, plan

from conftest import ROOT, snakemake
from smoke_run import FIGURES, smoke_results


def test_lint():
    proc = snakemake(ROOT, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("scale", ["smoke", "quick", "paper"])
def test_dry_run_lists_every_task_table(workflow_dir, scale):
    """`rule all` (Snakemake's DAG, built in this process) makes a task table of every family."""
    jobs = plan.dag_jobs(["all"], workdir=workflow_dir, config={"scale": scale})
    tables = {output for job in jobs if job.rule == "task_tables" for output in job.outputs}
    for family in envs.FAMILIES:
        assert any(t.startswith(f"results/tasks/{family}/") for t in tables), family


@pytest.mark.parametrize("device, gpus", [("cuda", "1"), ("cpu", "0")])
def test_training_jobs_ask_for_a_gpu_under_device_cuda(workflow_dir, device, gpus):
    """Collection, meta-training and evaluation jobs request one GPU (the Slurm executor's `gpu`
    resource) exactly when device is cuda; the table and plot jobs never do."""
    out = snakemake(workflow_dir, "results/figures/fig4_dynamics_extrapolation.pdf",
                    "results/figures/fig8_offline_policy_curves.pdf", "-n", "--cores", "1",
                    "--config", "scale=smoke", f"device={device}").stdout
    jobs, rule = {}, None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            jobs.setdefault(rule, "")
        elif rule and line.strip().startswith("resources:"):
            jobs[rule] = line
    for rule in ("collect_cheetah-vel", "metatrain_mier", "metatrain_pearl", "metatrain_maml", "evaluate_mier", "evaluate_pearl"):
        assert f"gpu={gpus}" in jobs[rule], (rule, jobs[rule])
    assert "gpu=" not in jobs["plot_fig4_dynamics_extrapolation"]


def test_bad_config_stops_before_any_job(workflow_dir):
    proc = snakemake(workflow_dir, "-n", "--cores", "1", "--config", "scale=quik", check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "'scale'" in text and "'quik'" in text and "smoke" in text
    assert not (workflow_dir / "results").exists()


def test_typo_in_configfile_is_named(workflow_dir):
    (workflow_dir / "typo.yaml").write_text("plot:\n  dpii: 300\n")
    proc = snakemake(workflow_dir, "-n", "--cores", "1", "--configfile", "typo.yaml", check=False)
    assert proc.returncode != 0
    assert "unknown key(s) ['dpii'] in 'plot'" in proc.stdout + proc.stderr


def test_smoke_run_builds_everything(tmp_path_factory):
    """The whole default DAG at the smoke scale (the run is shared with the provenance and report tests)."""
    workdir, _ = smoke_results(tmp_path_factory)
    tables = sorted((workdir / "results" / "tasks").glob("*/*/*.csv"))
    assert {t.parts[-3] for t in tables} == set(envs.FAMILIES)
    for t in tables:
        family, protocol, split = t.parts[-3], t.parts[-2], t.stem
        written = pd.read_csv(t)
        expected = envs.task_table(family, protocol, seed=0)[split]
        pd.testing.assert_frame_equal(written, expected.reset_index(drop=True), check_dtype=False)
        prov = io.load_json(io.provenance_path(t))
        assert prov["config"]["family"] == family and prov["config_hash"]
    for figure in FIGURES:
        assert (workdir / "results" / "figures" / f"{figure}.pdf").stat().st_size > 0
        assert (workdir / "results" / "figures" / f"{figure}.png").stat().st_size > 0
    # a second run has nothing to do
    proc = snakemake(workdir, "-n", "--cores", "1", "--config", "scale=smoke")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_fig8_table_and_buffers(tmp_path_factory):
    from paper_repro import buffers

    workdir, _ = smoke_results(tmp_path_factory)
    table = pd.read_csv(workdir / "results" / "tables" / "fig8_offline_policy_curves.csv")
    assert set(table.family) == {"cheetah-vel", "cheetah-dir", "walker-params", "ant-dir"}
    assert set(table[table.family == "cheetah-vel"].algo) == {"td3"} and set(table[table.family != "cheetah-vel"].algo) == {"sac"}
    assert set(table.kind) == {"seed", "aggregate", "random"}
    for family in table.family.unique():
        paths = sorted((workdir / "results" / "smoke" / "data" / family).glob("*/seed0/task*.npz"))
        assert paths and all(len(buffers.load_buffer(p)["reward"]) == 400 for p in paths), family
        warmups = [buffers.warmup_returns(p) for p in paths]  # smoke: a 200-step warm-up, at most one episode
        means = [w.mean() for w in warmups if len(w)]
        random = table[(table.family == family) & (table.kind == "random")]
        if means:
            np.testing.assert_allclose(random["mean"], [np.mean(means)], rtol=1e-6)
        else:
            assert random.empty
        seeds = table[(table.family == family) & (table.kind == "seed")]
        assert seeds.task_id.nunique() == len(paths)
    assert not table[(table.family == "cheetah-vel") & (table.kind == "random")].empty  # horizon 200: one warm-up episode


def test_mier_figure_tables(tmp_path_factory):
    """Figs 2-4 of MIER: every method, seed and test task is in the evaluations, with the shared
    protocol, and the tables hold each seed's mean over every test task and the aggregate."""
    workdir, _ = smoke_results(tmp_path_factory)
    tables = workdir / "results" / "tables"
    test_ids = set(pd.read_csv(workdir / "results/tasks/cheetah-negated-joints/mier/test.csv").task_id[:2])
    for method in ("mier", "mier-no-relabel", "pearl", "maml"):
        evals = pd.read_csv(workdir / f"results/smoke/eval/mier-negated-joints/{method}/seed0.csv")
        assert set(evals.adapt_trajectories) == {2} and set(evals.task_id) == test_ids, method
        assert set(evals.stage) == {"prior", "adapted"}, method
        steps = sorted(evals[evals.stage == "adapted"].steps.unique())
        assert steps == ([0, 10, 20] if method.startswith("mier") else [0]), method
    fig4 = pd.read_csv(tables / "fig4_dynamics_extrapolation.csv")
    assert set(fig4[fig4.panel == "methods"].method) == {"mier", "pearl", "maml"}
    relabelling = fig4[fig4.panel == "relabelling"]
    assert set(relabelling.method) == {"mier", "mier-no-relabel"} and sorted(relabelling.steps.unique()) == [0, 10, 20]
    assert set(fig4.n_tasks) == {len(test_ids)} and set(fig4.kind) == {"seed", "aggregate"}
    aggregate = fig4[fig4.kind == "aggregate"]
    assert ((aggregate.ci_low <= aggregate["mean"]) & (aggregate["mean"] <= aggregate.ci_high)).all()
    fig3 = pd.read_csv(tables / "fig3_reward_extrapolation.csv")
    assert set(fig3.method) == {"mier", "pearl", "maml"} and fig3.velocity.notna().all()
    fig2 = pd.read_csv(tables / "fig2_sample_efficiency.csv")
    assert set(fig2.family) == {"cheetah-vel", "humanoid-dir"}
    assert set(fig2.method) == {"mier", "pearl", "maml"}
    for (family, method), group in fig2.groupby(["family", "method"]):
        assert group.env_steps.nunique() >= 2, (family, method)  # evaluated during training, not only at the end


def test_macaw_figure_tables(tmp_path_factory):
    """MACAW Figs 3-5: every method learns from the collected buffers of its experiment's tasks (all the
    sparsity protocols' tasks collected), every test task is evaluated at every evaluation step, the last
    evaluation has evaluate.episodes episodes, and the tables hold each figure's panels and methods."""
    from paper_repro import buffers

    workdir, _ = smoke_results(tmp_path_factory)
    tables, smoke = workdir / "results" / "tables", workdir / "results" / "smoke"
    config = prconfig.resolve({**prconfig.load_yaml(workdir / "config" / "config.yaml"), "scale": "smoke"}, workdir)
    for protocol in ("macaw-sparsity-3", "macaw-sparsity-20"):  # their tasks' buffers exist, each holding its task
        split = envs.task_table("cheetah-vel", protocol, seed=0)
        for task in [*split["train"].head(2).to_dict("records"), *split["test"].head(2).to_dict("records")]:
            buffers.load_task_buffer(smoke / f"data/cheetah-vel/td3/seed0/task{task['task_id']}.npz", "cheetah-vel", task)
    curve = pd.read_csv(smoke / "runs/macaw-sparsity-3/macaw/seed0/curve.csv")
    test_ids = list(envs.task_table("cheetah-vel", "macaw-sparsity-3", seed=0)["test"].task_id[:2])
    assert sorted(curve.train_steps.unique()) == [0, 2, 3]  # every eval_every steps, and at the end
    assert all(sorted(g.task_id) == sorted(test_ids) for _, g in curve[curve.stage == "adapted"].groupby("train_steps"))
    assert set(curve[curve.train_steps == 3].episodes) == {config["evaluate"]["episodes"]}
    assert set(curve.n_train) == {2} and set(curve.data_quality) == {"all"}

    fig3 = pd.read_csv(tables / "fig3_offline_meta_rl.csv")
    assert set(fig3.family) == {"cheetah-dir", "cheetah-vel", "walker-params", "ant-dir"}
    assert set(fig3.method) == {"macaw", "offline-pearl", "offline-mt-ft", "meta-bc"}
    assert set(fig3.train_steps) == {0, 2, 3} and set(fig3.kind) == {"seed", "aggregate"}
    fig5 = pd.read_csv(tables / "fig5_weight_transform_ablation.csv")
    assert set(fig5.family) == set(fig3.family) and set(fig5.method) == {"macaw", "macaw-no-wt"}
    fig4 = pd.read_csv(tables / "fig4_macaw_ablations.csv")
    panels = {panel: group for panel, group in fig4.groupby("panel")}
    assert set(panels) == {"quality", "weight_transform", "tasks"}
    assert set(panels["quality"].data_quality) == {"first", "middle", "last"}
    assert set(panels["quality"].method) == {"macaw", "macaw-no-adv-head"}
    assert set(panels["weight_transform"].method) == {"macaw", "macaw-no-wt", "macaw-wide"}
    sparsity = panels["tasks"]
    assert set(sparsity.method) == {"macaw", "offline-pearl", "offline-mt-ft"}
    assert set(sparsity.experiment) == {"macaw-cheetah-vel", *(f"macaw-sparsity-{n}" for n in (3, 5, 10, 20))}
    assert set(sparsity.train_steps) == {3}  # the final evaluation
    # the slices: first / middle / last episode of each 2-episode smoke buffer feed the inner loop and the test task
    log = (smoke / "logs/metatrain_macaw/macaw-quality-last/seed0.log").read_text()
    assert "inner_slice='last'" in log and "slice_episodes=1" in log


def test_omniglot_figure_table(tmp_path_factory):
    """MACAW Fig. 6 at the smoke scale, from the generated stand-in: the three MLPs, each with a training row per
    meta-step and every validation task at every evaluation; the equal-parameter MLP's width computed."""
    workdir, _ = smoke_results(tmp_path_factory)
    smoke = workdir / "results" / "smoke"
    config = prconfig.resolve({**prconfig.load_yaml(workdir / "config" / "config.yaml"), "scale": "smoke"}, workdir)
    mc, steps = config["maml_classifier"], config["maml_classifier"]["train_steps"]
    with np.load(smoke / "omniglot/omniglot28.npz") as data:
        assert data["images"].shape == (40, 20, 28, 28)  # 2 sets x 2 alphabets x 10 generated characters
        assert sum(len(data[f"split_{k}"]) for k in ("train", "val", "test")) == 40
    curves = {m: pd.read_csv(smoke / f"runs/omniglot/{m}/seed0/curve.csv") for m in ("macaw", "macaw-no-wt", "macaw-wide")}
    for curve in curves.values():
        train, val = curve[curve.split == "train"], curve[curve.split == "val"]
        assert sorted(train.train_steps) == list(range(1, steps + 1))
        assert val.groupby("train_steps").task_id.nunique().to_dict() == {s: mc["eval_tasks"] for s in range(steps + 1)}
        assert val.accuracy.between(0, 1).all() and set(curve.ways) == {mc["ways"]}
    params = {m: int(c.parameters.iloc[0]) for m, c in curves.items()}
    assert params["macaw-no-wt"] < params["macaw"] <= params["macaw-wide"]  # the wide width: the smallest that reaches WT's
    assert int(curves["macaw-no-wt"].width.iloc[0]) == mc["width"] < int(curves["macaw-wide"].width.iloc[0])
    table = pd.read_csv(workdir / "results" / "tables" / "fig6_weight_transform_omniglot.csv")
    assert set(table.split) == {"train", "val"} and set(table.method) == set(curves)


def test_every_figure_has_its_claims(tmp_path_factory):
    """Every figure built at the smoke scale has results/claims/<figure>.csv: every contrast of each claim of the
    registry that rests on it, with a verdict (smoke budgets say nothing about the papers: any verdict goes),
    an interval around the estimate where there is one, and the figure's claims line in its provenance."""
    workdir, figures = smoke_results(tmp_path_factory)
    registry = claims.load_registry(workdir / "config" / "claims.yaml")
    for figure in figures:
        table = pd.read_csv(workdir / "results" / "claims" / f"{figure}.csv")
        assert list(table.columns) == claims.COLUMNS
        assert set(table["claim"]) == set(claims.for_figure(registry, figure)), figure
        assert table["verdict"].isin(claims.VERDICTS).all() and (table["scale"] == "smoke").all()
        tested = table[table["ci_low"].notna()]
        assert (tested.ci_low <= tested.estimate + 1e-9).all() and (tested.estimate <= tested.ci_high + 1e-9).all()
        assert table.loc[table["ci_low"].isna(), "reason"].notna().all()  # no interval: the reason says why
        assert io.provenance_path(workdir / "results" / "claims" / f"{figure}.csv").exists()
    assert {s["figure"] for s in registry.values()} - {"fig6_weight_transform_omniglot"} <= set(figures)


def test_online_finetuning_table(tmp_path_factory):
    """MACAW Table 1 at the smoke scale: both methods fine-tune every test task of the OOD split, evaluated at
    every finetune.eval_at point with the online steps so far; the table has the paper's statistic per run (mean
    and standard error over its test tasks), one block of rows per fine-tuned seed, none pooled over seeds."""
    workdir, _ = smoke_results(tmp_path_factory)
    smoke = workdir / "results" / "smoke"
    config = prconfig.resolve({**prconfig.load_yaml(workdir / "config" / "config.yaml"), "scale": "smoke"}, workdir)
    ft = config["finetune"]
    test_ids = list(envs.task_table("cheetah-vel", "macaw-ood", seed=0)["test"].task_id[:2])
    for method in ("macaw", "offline-pearl"):
        rows = pd.read_csv(smoke / f"eval/macaw-vel-ood/{method}-ft/seed0.csv")
        assert sorted(rows.task_id.unique()) == sorted(test_ids) and set(rows.method) == {f"{method}-ft"}
        assert all(sorted(g.trajectories) == ft["eval_at"] for _, g in rows.groupby("task_id"))
        assert (rows.steps == rows.trajectories * 200).all()  # cheetah episodes run their 200 steps
        assert not (smoke / f"eval/macaw-vel-ood/{method}-ft/seed0").exists()  # the resume files are gone
    table = pd.read_csv(workdir / "results" / "tables" / "table1_online_finetuning.csv")
    assert set(table.method) == {"macaw-ft", "offline-pearl-ft"} and set(table.trajectories) == set(ft["eval_at"])
    assert set(table.kind) == {"seed"} and set(table.seed) == set(range(ft["seeds"]))
    assert len(table) == 2 * ft["seeds"] * len(ft["eval_at"])  # one row per method, seed and evaluation point
    assert (table[table.trajectories == 0].improvement == 0).all() and (table.n_tasks == 2).all()


def test_metaworld_figure_table(tmp_path_factory):
    """MACAW Fig. 7 at the smoke scale: the three methods learn from one buffer per ML45 environment, every
    test environment is evaluated with its success rate at every evaluation, with the Meta-World columns."""
    workdir, _ = smoke_results(tmp_path_factory)
    smoke = workdir / "results" / "smoke"
    test = envs.task_table("metaworld-ml45-env", "macaw", seed=0)["test"].head(2)
    for method in ("macaw", "offline-pearl", "offline-mt-ft"):
        curve = pd.read_csv(smoke / f"runs/macaw-metaworld/{method}/seed0/curve.csv")
        assert set(curve.family) == {"metaworld-ml45-env"} and sorted(curve.task_id.unique()) == sorted(test.task_id)
        assert curve.success.between(0, 1).all()
    log = (smoke / "logs/metatrain_offline-mt-ft/macaw-metaworld/seed0.log").read_text()
    assert "value_lr=1e-06" in log and "finetune_value_lr=1e-06" in log  # the paper's Meta-World column
    table = pd.read_csv(workdir / "results" / "tables" / "fig7_metaworld_ml45.csv")
    assert set(table.method) == {"macaw", "offline-pearl", "offline-mt-ft"} and table["mean"].between(0, 1).all()


def test_omniglot_absent_is_skipped_by_all_and_named_when_asked_for(workflow_dir):
    """Without the user's Omniglot: `rule all` leaves fig6 out and says so (only then); asking for fig6 stops before any
    job, naming the path; with the data there (here the generated stand-in, zipped), fig6 plans its jobs."""
    from paper_repro import omniglot

    out = snakemake(workflow_dir, "-n", "--cores", "1")
    assert "fig6_weight_transform_omniglot left out: Omniglot is not at resources/omniglot/" in out.stdout + out.stderr
    assert "metatrain_omniglot" not in out.stdout
    other = snakemake(workflow_dir, "-n", "--cores", "1", "results/tasks/cheetah-vel/macaw/test.csv")
    assert "left out" not in other.stdout + other.stderr  # said only when `all` is built
    fig6 = "results/figures/fig6_weight_transform_omniglot.pdf"
    proc = snakemake(workflow_dir, "-n", "--cores", "1", fig6, check=False)
    assert proc.returncode != 0
    error = proc.stdout + proc.stderr
    assert "WorkflowError" in error and "Omniglot is not at resources/omniglot/: put the Omniglot authors' images_background" in error
    omniglot.write_fixture(workflow_dir / "resources" / "omniglot", alphabets=1, characters=2, drawings=2)
    plan = snakemake(workflow_dir, "-n", "--cores", "1", fig6).stdout
    assert "omniglot_data" in plan and plan.count("rule metatrain_omniglot") == 3
    assert "left out" not in snakemake(workflow_dir, "-n", "--cores", "1").stdout


def test_admrl_figure_tables(tmp_path_factory):
    """AdMRL Figs 3-5: the three model-based methods share each seed's first task and then visit their
    own tasks; every test task is evaluated at every n; A* is at least every return (best_known) and the
    worst-case gap is each seed's largest gap over the test tasks."""
    workdir, _ = smoke_results(tmp_path_factory)
    tables, smoke = workdir / "results" / "tables", workdir / "results" / "smoke"
    visited = {m: pd.read_csv(smoke / f"runs/admrl/ant-3d/{m}/seed0/tasks.csv") for m in ("admrl", "mb-unif", "mb-gauss")}
    for m, t in visited.items():
        assert list(t.task) == [0, 1, 2], m
        np.testing.assert_allclose(t.iloc[0][["goal_vx", "goal_vy", "goal_z"]].to_numpy(float), [0.9, 0.9, 0.53])  # x = 0.3
        assert (t.iloc[1][["goal_vx", "goal_vy"]].to_numpy() == [0.0, 0.0]).all(), m  # task 1 at the centre
    assert "grad_0" in visited["admrl"] and "grad_0" not in visited["mb-unif"]
    fig3 = pd.read_csv(tables / "fig3_worst_case_gap.csv")
    assert set(fig3.experiment) == {"admrl-ant-2d", "admrl-walker-2d", "admrl-hopper-2d"}
    assert set(fig3.method) == {"admrl", "mb-unif", "mb-gauss"} and set(fig3.kind) == {"task", "seed", "aggregate"}
    tasks = fig3[fig3.kind == "task"]
    assert sorted(tasks.n.unique()) == [0, 400]
    assert (tasks.a_star >= tasks["return"]).all() and (tasks.gap >= 0).all()
    assert (tasks.groupby(["experiment", "task_id"]).a_star.nunique() == 1).all()
    worst = fig3[fig3.kind == "seed"].set_index(["experiment", "method", "n", "seed"])["mean"]
    expected = tasks.groupby(["experiment", "method", "n", "seed"]).gap.max()
    pd.testing.assert_series_equal(worst.sort_index(), expected.sort_index(), check_names=False)
    fig4 = pd.read_csv(tables / "fig4_adversarial_tasks.csv")
    assert set(fig4[fig4.kind == "visited"].experiment) == {"admrl-ant-3d"}
    assert set(fig4[fig4.kind == "aggregate"].experiment) == {"admrl-cheetah-highdim"}
    fig5 = pd.read_csv(tables / "fig5_ood_gap.csv")
    ood = fig5[fig5.kind == "task"]
    assert (ood[["goal_vx", "goal_vy"]].abs().max(axis=1) == 5).all()  # outside the training box
    fig6 = pd.read_csv(tables / "fig6_model_error.csv")
    assert set(fig6.method) == {"admrl", "mb-unif", "mb-gauss"} and set(fig6.metric) == {"model_rms", "model_mse_normalised"}
    assert sorted(fig6.task.unique()) == [0, 1, 2]  # every snapshot scored


def test_admrl_baseline_figure_tables(tmp_path_factory):
    """AdMRL Figs 1-2: the model-free baselines train on the family's pool of 150 uniform tasks (the smoke
    scale's first 2), adapt on AdMRL's sample schedule (n = 0 and one stage of 2 trajectories at the smoke
    scale), the multi-task ones see the task parameter; PEARL's gaps are taken against A*; Fig. 2 averages
    the test tasks per seed for every method on every family."""
    workdir, _ = smoke_results(tmp_path_factory)
    tables, smoke = workdir / "results" / "tables", workdir / "results" / "smoke"
    train = pd.read_csv(workdir / "results/tasks/ant-2d/admrl-coarse/train.csv")
    assert len(train) == envs.BOX_TRAIN_TASKS
    log = (smoke / "logs/metatrain_pearl-mt/admrl-ant-2d/seed0.log").read_text()
    assert "on 2 ant-2d tasks" in log
    model = io.load_checkpoint(smoke / "runs/admrl-ant-2d/pearl-mt/seed0/model.pt")
    plain = io.load_checkpoint(smoke / "runs/admrl-ant-2d/pearl/seed0/model.pt")
    assert model["obs_dim"] == plain["obs_dim"] + 2  # x(ψ) appended
    assert io.load_checkpoint(smoke / "runs/admrl-ant-2d/mt-joint/seed0/model.pt")["config"]["inner_steps"] == 0
    fig1 = pd.read_csv(tables / "fig1_pearl_gap_heatmap.csv")
    cells = fig1[fig1.kind == "task"]
    assert set(cells.method) == {"pearl"} and sorted(cells.n.unique()) == [0, 400]
    assert (cells.gap >= 0).all() and cells[["goal_vx", "goal_vy"]].notna().all().all()
    fig2 = pd.read_csv(tables / "fig2_adaptation_returns.csv")
    assert set(fig2.method) == {"admrl", "maml", "pearl", "mt-joint", "maml-mt", "pearl-mt"}
    assert set(fig2.experiment) == {"admrl-hopper-2d", "admrl-walker-2d", "admrl-ant-2d", "admrl-ant-3d"}
    per_seed = fig2[fig2.kind == "seed"]
    assert (per_seed.groupby(["experiment", "method"]).n.apply(sorted).map(tuple) == (0, 400)).all()
    evals = pd.read_csv(smoke / "eval/admrl-walker-2d/maml/seed0.csv")
    expected = evals[evals.steps == 400]["return"].mean()
    got = per_seed.set_index(["experiment", "method", "n"]).loc[("admrl-walker-2d", "maml", 400), "mean"]
    assert got == pytest.approx(expected)

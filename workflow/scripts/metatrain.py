"""Meta-train one algorithm on an experiment's training tasks: online (maml, mier, pearl: they collect
their own data) or offline (macaw, mt_awr, offline_pearl: from the training tasks' collected buffers,
given as the rule's train_buffers, the test tasks adapting on test_buffers).

Writes model.pt (what the algorithm's adapt_and_evaluate needs), metrics.csv (one row per
iteration, every metatrain.log_every) and curve.csv (test-task returns after adaptation, evaluated
during meta-training: MIER Fig. 2, MACAW Figs 3-5), each with provenance. Progress rows go to
progress.jsonl as they come, so a job resumed from its checkpoint keeps the rows of its earlier life.
"""

import dataclasses
import importlib
import logging
from pathlib import Path

import pandas as pd

from paper_repro import config as prconfig
from paper_repro import buffers, envs, evaluate, io
from paper_repro.job import Job, iterations

snakemake = globals()["snakemake"]
p = snakemake.params
exp, name = p.experiment, p.algo
method = getattr(p, "method", name)  # offline methods: one algorithm, several methods (MACAW's ablations)
offline = hasattr(snakemake.input, "train_buffers")
algo = importlib.import_module(f"paper_repro.algos.{name}")
cfg = prconfig.from_dict(algo.Config, p.hyper, name)
family, seed = exp["family"], exp["seed"]
horizon = envs.get_family(family).horizon
train_tasks = pd.read_csv(snakemake.input.train).head(exp["task_limit"]["train"]).to_dict("records")
test_tasks = pd.read_csv(snakemake.input.test).head(exp["task_limit"]["test"]).to_dict("records")
# What the result depends on; a checkpoint written for anything else is refused, naming the key
# (run control, such as metatrain.checkpoint_every, is not part of it).
run = {"config": dataclasses.asdict(cfg), "experiment": exp, "eval_every": p.eval_every, "evaluate": p.evaluate,
       "multitask": getattr(p, "multitask", False)}
if offline:  # and the offline data: a checkpoint trained on other buffers is not resumed
    run["buffers"] = [io.file_sha256(b) for b in (*snakemake.input.train_buffers, *snakemake.input.test_buffers)]
job = Job(snakemake, Path(snakemake.output.model).parent, run)
device = job.device
logging.info("%s: %s (%s) on %d %s tasks (%d test tasks), seed %d, %s, on %s", exp["name"], method, name,
             len(train_tasks), family, len(test_tasks), seed, cfg, device)
log_every = snakemake.config["metatrain"]["log_every"][name]
x_axis = "train_steps" if offline else "env_steps"  # offline methods count gradient steps, online ones env steps
if offline:  # each task's buffer, checked to hold that task (a buffer of another task or family is refused)
    data = [algo.task_data(buffers.load_task_buffer(path, family, task), cfg)
            for path, task in zip(snakemake.input.train_buffers, train_tasks, strict=True)]
    test_data = [algo.test_data(buffers.load_task_buffer(path, family, task), cfg)
                 for path, task in zip(snakemake.input.test_buffers, test_tasks, strict=True)]
    logging.info("loaded %d training and %d test buffers", len(data), len(test_data))


def on_eval(state, steps):
    if offline:  # MACAW Alg. 2: each test task adapts on its own offline data (a fresh batch at every evaluation,
        # its seed from the run's seed, the task and the step); the last evaluation has more episodes
        episodes = p.evaluate["final_episodes"] if steps == cfg.train_steps else p.evaluate["episodes"]
        rows = evaluate.on_test_tasks_offline(algo, state, family, test_tasks, test_data, horizon, episodes, seed,
                                              step=steps, device=device)
        rows = [{**row, "episodes": episodes} for row in rows]
    else:
        rows = evaluate.on_test_tasks(algo, state, family, test_tasks, horizon, p.evaluate["adapt_trajectories"],
                                      p.evaluate["episodes"], seed, device=device)
    job.record("curve", [{x_axis: steps, **row} for row in rows])
    logging.info("evaluated %d test tasks at %d %s", len(test_tasks), steps, x_axis)


# AdMRL's baselines are evaluated by their own jobs only, with AdMRL's sample schedule: no curve.
multitask = getattr(p, "multitask", False)  # AdMRL's multi-task baselines see the task parameter
state = algo.train(lambda task: envs.make(family, task, multitask=multitask), train_tasks, horizon, cfg, seed=seed,
                   log=job.logger(iterations(cfg), record_every=log_every, line_every=log_every),
                   checkpoint=str(job.checkpoint), checkpoint_every=snakemake.config["metatrain"]["checkpoint_every"],
                   on_eval=None if exp["paper"] == "AdMRL" else on_eval, eval_every=p.eval_every, device=device,
                   **({"data": data} if offline else {}))

curve = job.table("curve", [x_axis, "task_id", "stage", "steps"], columns=[x_axis, "task_id", "stage", "steps", "return"])
curve = curve.assign(experiment=exp["name"], family=family, method=method, seed=seed)
if offline:  # what MACAW Fig. 4's panels tell apart: the protocol's training-task count and the data quality
    curve = curve.assign(protocol=exp["protocol"], n_train=len(train_tasks), data_quality=exp.get("data_quality", "all"))
job.finish({snakemake.output.metrics: job.table("metrics", ["iteration"]), snakemake.output.curve: curve},
           {"experiment": exp, "method": method, name: cfg, "eval_every": p.eval_every, "evaluate": p.evaluate},
           seeds={"train": seed}, model=(snakemake.output.model, state))

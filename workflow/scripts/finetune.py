"""MACAW Table 1: online fine-tuning of one offline-meta-trained method on each test task (its algorithm's
``finetune``: the offline adaptation step on the task's buffer, then finetune.trajectories trajectories, each
followed by the method's gradient steps; evaluated after each count in finetune.eval_at).

Task i gets the seed of the evaluation protocol (paper_repro.evaluate.task_seed). Each finished task's rows go
to progress.jsonl as one line, so a killed job resumes after its last finished task. One row per test task and
evaluation point: stage "finetuned", steps (online environment steps so far), trajectories, return.
"""

import dataclasses
import importlib
import logging
from pathlib import Path

import pandas as pd

from paper_repro import buffers, envs, evaluate, io
from paper_repro import config as prconfig
from paper_repro.job import Job
from paper_repro.progress import Progress

snakemake = globals()["snakemake"]
p = snakemake.params
exp, protocol = p.experiment, p.protocol
algo = importlib.import_module(f"paper_repro.algos.{p.algo}")
ft = prconfig.from_dict(algo.FineTune, p.hyper, f"finetune.{p.algo}")
state = io.load_checkpoint(snakemake.input.model)
cfg = algo.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()})
family, seed = exp["family"], exp["seed"]
horizon = envs.get_family(family).horizon
tasks = pd.read_csv(snakemake.input.tasks).head(exp["task_limit"]["test"]).to_dict("records")
run_dir = Path(snakemake.output[0]).with_suffix("")
run_dir.mkdir(parents=True, exist_ok=True)
run = {"model": io.file_sha256(snakemake.input.model), "finetune": dataclasses.asdict(ft), "protocol": protocol,
       "tasks": [t["task_id"] for t in tasks], "seed": seed}
job = Job(snakemake, run_dir, run, checkpointed=False)  # the rows of the finished tasks are the state
done = {r["task_id"] for r in job.rows()}
logging.info("%s: %s+FT on %d test tasks (%d done), seed %d, %s, %s, on %s", exp["name"], p.method, len(tasks),
             len(done), seed, ft, protocol, job.device)

where = Progress(len(tasks), "test task")
for i, (task, path) in enumerate(zip(tasks, snakemake.input.test_buffers, strict=True)):
    if task["task_id"] in done:
        continue
    data = algo.test_data(buffers.load_task_buffer(path, family, task), cfg)
    rows = algo.finetune(state, lambda: envs.make(family, task), horizon, ft, adapt_data=data,
                         trajectories=protocol["trajectories"], eval_at=protocol["eval_at"],
                         eval_episodes=protocol["episodes"], seed=evaluate.task_seed(seed, i), device=job.device)
    job.record(None, [{"task_id": task["task_id"], "rows": rows}])  # one line: a task is in whole or not
    logging.info("%s  task %s: %s", where.line(i + 1), task["task_id"], rows)

rows = [{"task_id": done["task_id"], **row} for done in job.rows() for row in done["rows"]]
table = pd.DataFrame(rows).assign(experiment=exp["name"], family=family, method=f"{p.method}-ft", seed=seed,
                                  episodes=protocol["episodes"])
job.finish({snakemake.output[0]: table},
           {"experiment": exp, "method": p.method, "finetune": ft, "protocol": protocol,
            "model_config": state.get("config")},
           seeds={"train": seed, "evaluate": evaluate.task_seed(seed, 0)}, remove_run_dir=True)

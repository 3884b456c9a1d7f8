"""One training job's life, the same for every training script (metatrain, admrl_train, omniglot_train,
finetune): its log file and threads, start or resume (``io.start_or_resume``), progress rows as they come,
log lines that say how far it is, and at the end its tables, model and provenance, written atomically,
before the resumable state is removed.

    job = Job(snakemake, run_dir, run)              # run: what the result depends on (guards the checkpoint)
    log = job.logger(total=cfg.epochs, every=10)    # the algorithm's log callback
    state = algo.train(..., log=log, checkpoint=str(job.checkpoint))
    job.finish({snakemake.output.metrics: job.table("metrics", ["iteration"])}, provenance, seeds,
               model=(snakemake.output.model, state))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from paper_repro import config as prconfig
from paper_repro import io
from paper_repro.progress import Progress

# The Config field that counts an algorithm's training iterations (its `log` callback's "iteration").
ITERATIONS = {"mier": "epochs", "pearl": "num_iterations", "maml": "meta_iterations"}


def iterations(cfg: Any) -> int:
    """How many iterations ``cfg``'s algorithm trains for (``train_steps`` unless named in ITERATIONS)."""
    name = type(cfg).__module__.rsplit(".", 1)[-1]
    return int(getattr(cfg, ITERATIONS.get(name, "train_steps")))


def log_line(row: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


class Job:
    """A training job's resumable state in ``run_dir`` (``checkpoint``, ``progress``) and its outputs."""

    def __init__(self, snakemake: Any, run_dir: str | Path, run: Mapping[str, Any], checkpointed: bool = True):
        logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
        torch.set_num_threads(snakemake.threads)
        self.snakemake, self.run_dir = snakemake, Path(run_dir)
        self.checkpoint, self.progress = io.start_or_resume(self.run_dir, run, checkpointed)
        self.device = prconfig.resolve_device(snakemake.params.device)
        self.start = time.time()

    def record(self, kind: str | None, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` (tagged ``kind`` where given) to progress.jsonl in one write."""
        io.append_rows(self.progress, [row if kind is None else {"kind": kind, **row} for row in rows])

    def rows(self, kind: str | None = None) -> list[dict]:
        return [r for r in io.read_rows(self.progress) if kind is None or r.get("kind") == kind]

    def table(self, kind: str, keys: Sequence[str], columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows of ``kind``, without the tag; rows logged again after a resume replace the ones logged
        before the crash (equal ones) by ``keys``. ``columns``: the table's columns where there are no rows."""
        rows = [{k: v for k, v in r.items() if k != "kind"} for r in self.rows(kind)]
        if not rows:
            return pd.DataFrame(columns=list(columns or keys))
        return pd.DataFrame(rows).drop_duplicates(list(keys), keep="last")

    def logger(self, total: int, kind: str | None = "metrics", record_every: int = 1, line_every: int = 1,
               unit: str = "iteration", count: Callable[[Mapping], int] = lambda m: m["iteration"] + 1,
               shape: Callable[[Mapping], Mapping] = dict) -> Callable[[Mapping], None]:
        """An algorithm's ``log`` callback: each ``record_every``-th iteration's metrics (``shape``d, with the
        job's elapsed time) go to progress.jsonl, each ``line_every``-th to the log after where the job is
        (``count(metrics)`` of ``total`` units done, :class:`~paper_repro.progress.Progress`)."""
        where = Progress(total, unit)

        def log(metrics: Mapping) -> None:
            i = metrics.get("iteration", 0)
            if i % record_every and i % line_every:
                return
            row = {**shape(metrics), "time/elapsed_s": time.time() - self.start}
            if i % record_every == 0:
                self.record(kind, [row])
            if i % line_every == 0:
                logging.info("%s  %s", where.line(count(metrics)), log_line(row))
        return log

    def finish(self, tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any], seeds: Mapping[str, Any],
               model: tuple[str, Mapping] | None = None, remove_run_dir: bool = False) -> None:
        """Write ``tables`` ({path: table}) and ``model`` ((path, state)) atomically, the provenance of
        every output, then remove the resumable state: a later rerun starts afresh."""
        for path, table in tables.items():
            with io.atomic_path(path) as tmp:
                table.to_csv(tmp, index=False)
        if model is not None:
            io.save_checkpoint(*model)
        io.write_job_provenance(self.snakemake, provenance, seeds=seeds, device=self.device)
        io.finish_run(self.run_dir)
        if remove_run_dir:
            self.run_dir.rmdir()

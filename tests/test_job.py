"""The training jobs' shared life (paper_repro.job) and their progress lines (paper_repro.progress)."""

import json
import logging
from types import SimpleNamespace

import pandas as pd
import pytest

from paper_repro import io
from paper_repro.algos import macaw, maml, mier, pearl
from paper_repro.job import Job, iterations
from paper_repro.progress import Progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_progress_line_says_the_fraction_done_and_the_time_left_at_the_pace_so_far():
    clock = Clock()
    where = Progress(20, "iteration", clock=clock)
    assert where.line(1) == "iteration 1/20 (5%)"  # no pace yet: no time left
    clock.now = 60.0
    assert where.line(7) == "iteration 7/20 (35%), ~2 min left"  # 6 iterations a minute, 13 to go
    clock.now = 6 * 3600.0
    assert where.line(8) == "iteration 8/20 (40%), ~10.3 h left"  # 7 in 6 h, 12 to go
    assert where.line(20) == "iteration 20/20 (100%)"


def test_progress_refuses_an_empty_loop():
    with pytest.raises(ValueError, match="at least 1 step"):
        Progress(0, "step")


def test_every_algorithm_names_its_iteration_budget():
    assert iterations(mier.Config(epochs=7)) == 7
    assert iterations(pearl.Config(num_iterations=8)) == 8
    assert iterations(maml.Config(meta_iterations=9)) == 9
    assert iterations(macaw.Config(train_steps=10)) == 10


def _snakemake(tmp_path, outputs):
    log = tmp_path / "job.log"
    return SimpleNamespace(log=[str(log)], threads=1, params=SimpleNamespace(device="cpu", code={}),
                           input=[], output=[str(tmp_path / o) for o in outputs], rule="metatrain_test",
                           wildcards={}, config={"scale": "smoke"})


@pytest.fixture
def job_log(caplog):
    """The job's log lines (under Snakemake the root logger writes them to the rule's log: Job's basicConfig)."""
    with caplog.at_level(logging.INFO):
        yield caplog


def test_a_job_logs_where_it_is_records_its_rows_and_resumes_them(tmp_path, job_log):
    sm = _snakemake(tmp_path, ["run/metrics.csv"])
    job = Job(sm, tmp_path / "run", {"config": 1})
    log = job.logger(10, record_every=2, line_every=5)
    for i in range(6):
        log({"iteration": i, "loss": 1.0 / (i + 1)})
    assert [r["iteration"] for r in job.rows("metrics")] == [0, 2, 4]
    lines = [m for m in job_log.messages if "iteration=" in m]
    assert len(lines) == 2 and "iteration 1/10 (10%)" in lines[0] and "iteration 6/10 (60%), ~" in lines[1]

    job.checkpoint.write_bytes(b"state")  # a checkpoint: the next life of the same run keeps the rows
    again = Job(sm, tmp_path / "run", {"config": 1})
    again.logger(10, record_every=2)({"iteration": 4, "loss": 0.2})  # logged again after the resume
    table = again.table("metrics", ["iteration"])
    assert table["iteration"].tolist() == [0, 2, 4] and table["loss"].iloc[-1] == 0.2 and "kind" not in table

    with pytest.raises(ValueError, match="config"):  # a checkpoint of another run is refused, naming the key
        Job(sm, tmp_path / "run", {"config": 2})


def test_a_finished_job_writes_its_outputs_and_provenance_then_drops_its_state(tmp_path, job_log):
    sm = _snakemake(tmp_path, ["run/metrics.csv", "run/model.pt"])
    job = Job(sm, tmp_path / "run", {"config": 1})
    job.logger(3)({"iteration": 0, "loss": 0.5})
    job.finish({sm.output[0]: job.table("metrics", ["iteration"])}, {"lr": 0.1}, seeds={"train": 3},
               model=(sm.output[1], {"w": [1.0]}))
    assert pd.read_csv(sm.output[0])["loss"].tolist() == [0.5]
    assert io.load_checkpoint(sm.output[1]) == {"w": [1.0]}
    side = json.loads(io.provenance_path(sm.output[0]).read_text())
    assert side["config"] == {"lr": 0.1} and side["seeds"] == {"train": 3} and side["rule"] == "metatrain_test"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.csv", "metrics.csv.provenance.json",
                                                                     "model.pt", "model.pt.provenance.json"]


def test_a_job_without_rows_writes_an_empty_table_with_its_columns(tmp_path, job_log):
    job = Job(_snakemake(tmp_path, ["run/curve.csv"]), tmp_path / "run", {})
    assert job.table("curve", ["steps"], columns=["steps", "return"]).columns.tolist() == ["steps", "return"]

"""MACAW, Offline MT+FT and Offline PEARL resume bit-exactly after their process is killed with
SIGKILL mid-run (the node dies): the resumed run ends where an uninterrupted one ends. On a GPU, they
match their CPU runs."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import wait_until
from paper_repro import io

CONFIGS = {  # Config keyword arguments of a tiny run per algorithm
    "macaw": dict(width=16, depth=2, latent=8, adv_head=8, inner_batch=32, outer_batch=32, eval_batch=32,
                  data_stride=1, train_steps=8, meta_batch=2),
    "mt_awr": dict(width=16, depth=2, batch=32, data_stride=1, train_steps=8, meta_batch=2),
    "offline_pearl": dict(latent_dim=2, encoder_hidden=(16,), hidden=(16, 16), meta_batch=2, batch_size=16,
                          embedding_batch_size=16, train_steps=8, eval_context=32),
}
CHILD = """
import sys, time
from pathlib import Path
import torch
sys.path.insert(0, {tests!r})
from test_macaw import TASKS, make_env, toy_buffer
from paper_repro import io
from paper_repro.algos import {algo} as algo
torch.set_num_threads(1)
out, pause_at = Path(sys.argv[1]), int(sys.argv[2])
cfg = algo.Config(**{config!r})
def hold(metrics):  # after the checkpoint at step 4: announce, then wait to be killed
    if metrics["iteration"] == pause_at:
        (out / "ready").write_text("")
        time.sleep(120)
data = [algo.task_data(toy_buffer(t["w"], 200, i), cfg) for i, t in enumerate(TASKS)]
state = algo.train(make_env, TASKS, 10, cfg, seed=3, data=data, checkpoint=str(out / "ck.pt"), checkpoint_every=4,
                   log=hold if pause_at else lambda m: None)
io.save_checkpoint(out / "final.pt", state)
"""


def leaves(tree):
    if torch.is_tensor(tree):
        return [tree]
    if isinstance(tree, dict):
        return [t for k in sorted(tree) for t in leaves(tree[k])]
    return []


@pytest.mark.parametrize("algo", list(CONFIGS))
def test_resume_after_sigkill_is_bit_exact(algo, tmp_path):
    code = CHILD.format(tests=str(Path(__file__).parent), algo=algo, config=CONFIGS[algo])

    def run(out, pause_at):
        out.mkdir(exist_ok=True)
        return subprocess.Popen([sys.executable, "-c", code, str(out), str(pause_at)])

    full, cut = tmp_path / "full", tmp_path / "cut"
    reference = run(full, 0)
    child = run(cut, 6)
    wait_until((cut / "ready").exists, child, "its first checkpoint")
    assert (cut / "ck.pt").exists()
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    assert not (cut / "final.pt").exists()
    assert run(cut, 0).wait() == 0 and reference.wait() == 0
    a, b = leaves(io.load_checkpoint(full / "final.pt")), leaves(io.load_checkpoint(cut / "final.pt"))
    assert a and len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("algo", list(CONFIGS))
def test_cuda_run_matches_cpu_run(algo):
    """Networks, batches and updates on the GPU, data and random draws on the CPU: a CUDA run stays within
    float tolerance of the CPU run over its first steps, its saved state is CPU tensors, and adapting on
    the GPU gives the CPU's returns."""
    import importlib

    import numpy as np
    from test_macaw import TASKS, make_env, toy_buffer

    module = importlib.import_module(f"paper_repro.algos.{algo}")
    cfg = module.Config(**CONFIGS[algo])
    data = [module.task_data(toy_buffer(t["w"], 200, i), cfg) for i, t in enumerate(TASKS)]
    runs = {dev: module.train(make_env, TASKS, 10, cfg, seed=0, data=data, device=dev) for dev in ("cpu", "cuda")}
    a, b = leaves(runs["cpu"]), leaves(runs["cuda"])
    assert all(t.device.type == "cpu" for t in b)
    for x, y in zip(a, b):
        torch.testing.assert_close(y, x, rtol=1e-3, atol=1e-4)
    test = module.test_data(toy_buffer(1.0, 200, 9), cfg)
    rows = {dev: module.adapt_and_evaluate(runs["cpu"], lambda: make_env({"w": 1.0}), 10, adapt_data=test,
                                           eval_episodes=2, seed=0, device=dev) for dev in ("cpu", "cuda")}
    np.testing.assert_allclose([r["return"] for r in rows["cuda"]], [r["return"] for r in rows["cpu"]], rtol=1e-3,
                               atol=1e-3)

"""MIER model meta-update: vmapped over tasks vs a Python loop over tasks, side by side.

Paper scale: 4x200 model, context 5, 2 inner steps, 256 transitions per adaptation/evaluation
batch, meta-batch 10. Only the model meta-update is timed: the context-conditioned SAC update is not
implemented yet. Last output line: JSON with both timings and their ratio.

    .venv/bin/python benchmarks/mier_step.py [--iters 10] [--threads 1]
"""

import argparse
import json
import time

import torch

from paper_repro.algos import mier


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--meta-batch", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = mier.Config(meta_batch=args.meta_batch)
    obs_dim, act_dim, t, n = 20, 6, cfg.meta_batch, cfg.adapt_batch  # half-cheetah sizes
    model = mier.ContextModel(obs_dim, act_dim, cfg)
    params = mier.init_params(model, cfg)

    def batch():
        return mier.Batch(torch.randn(t, n, obs_dim), torch.randn(t, n, act_dim), torch.randn(t, n, 1),
                          torch.randn(t, n, obs_dim))
    adapt, evaluate = batch(), batch()

    def step_vmap():
        loss, _ = mier.model_meta_loss(model, params, adapt, evaluate, cfg)
        torch.autograd.grad(loss, list(params.values()))

    def step_loop():
        loss = mier.model_meta_loss_loop(model, params, adapt, evaluate, cfg)
        torch.autograd.grad(loss, list(params.values()))

    res = {}
    for name, fn in [("vmap", step_vmap), ("loop", step_loop)]:
        fn()  # warm-up
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        res[f"{name}_s_per_step"] = sorted(times)[len(times) // 2]
        print(f"{name}: median {res[f'{name}_s_per_step']:.4f} s/step over {args.iters}")
    res.update(ratio_loop_over_vmap=res["loop_s_per_step"] / res["vmap_s_per_step"], meta_batch=t,
               adapt_batch=n, threads=args.threads, timed="model meta-update only (no SAC)")
    print(json.dumps(res))


if __name__ == "__main__":
    main()

"""One MIER meta-training step (model meta-update + context-conditioned SAC update), vmapped over the
tasks of the meta-batch vs a plain loop over tasks, side by side.

Paper scale: 4x200 model, context 5, 2 inner steps, disjoint adaptation/evaluation batches of 256 per
task, meta-batch 10, SAC 256-256 on the evaluation batches with the adapted contexts (2560
transitions), half-cheetah sizes (17-dim state, 6-dim action). Both versions do the same maths and
the same optimizer steps; they differ only in how the per-task model computation (context
adaptation, post-update NLL) is run: ``mier.model_meta_loss`` (torch.func.vmap) or
``mier.model_meta_loss_loop`` (Python loop). The SAC update is one batched update of the single
universal policy in both. First output line: the CPU model and whether it has native bf16 (both
versions run fp32). Last output line: JSON with both timings and their ratio, the CPU and its bf16.

    .venv/bin/python benchmarks/mier_step.py [--iters 10] [--threads 1]
"""

import argparse
import json
import time

import numpy as np
import torch

from paper_repro.algos import mier
from paper_repro.buffers import Batch
from paper_repro.config import cpu_model, native_bf16


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--meta-batch", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bf16_native, why = native_bf16("cpu")
    print(f"cpu: {cpu_model()}; native bf16: {'yes' if bf16_native else 'no'} ({why})")
    cfg = mier.Config(meta_batch=args.meta_batch)
    obs_dim, act_dim, t, n = 17, 6, cfg.meta_batch, cfg.adapt_batch

    def batch():
        return Batch(torch.randn(t, n, obs_dim), torch.rand(t, n, act_dim) * 2 - 1, torch.randn(t, n),
                     torch.randn(t, n, obs_dim), torch.zeros(t, n))
    torch.manual_seed(0)
    adapt, evaluate = batch(), batch()

    def setup():
        torch.manual_seed(0)
        model = mier.ContextModel(obs_dim, act_dim, cfg)
        params = mier.init_params(model, cfg)
        opt = torch.optim.Adam(params.values(), lr=cfg.model_lr)
        gen = torch.Generator().manual_seed(0)
        agent = mier.init_agent(cfg, gen, obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim))
        return model, params, opt, gen, agent

    def step(model, params, opt, gen, agent, vmapped):
        if vmapped:
            loss, _, post = mier.model_meta_loss(model, params, adapt, evaluate, cfg)
        else:
            loss, post = mier.model_meta_loss_loop(model, params, adapt, evaluate, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ctx = post.detach()[:, None].expand(-1, n, -1).reshape(-1, cfg.context_dim)
        flat = Batch(*(x.flatten(0, 1) for x in evaluate))
        mier.sac_update(agent, mier.policy_batch(flat, ctx), gen, cfg, "benchmark")

    res = {}
    for name, vmapped in [("vmap", True), ("loop", False)]:
        state = setup()
        step(*state, vmapped)  # warm-up
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            step(*state, vmapped)
            times.append(time.perf_counter() - t0)
        res[f"{name}_s_per_step"] = sorted(times)[len(times) // 2]
        print(f"{name}: median {res[f'{name}_s_per_step']:.4f} s/step over {args.iters}")
    res.update(ratio_loop_over_vmap=res["loop_s_per_step"] / res["vmap_s_per_step"], meta_batch=t,
               adapt_batch=n, threads=args.threads, timed="model meta-update + SAC update", cpu=cpu_model(),
               native_bf16=bf16_native, native_bf16_why=why)
    print(json.dumps(res))


if __name__ == "__main__":
    main()

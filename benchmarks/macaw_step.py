"""One MACAW meta-step at the paper's sizes, three ways side by side: the θ-space inner step vmapped
over the meta-batch (the default), the generic inner step (adapting z, A and a themselves) vmapped,
and the generic step in a Python loop over tasks. All three compute the same meta-gradients (tests:
tests/algos/test_macaw.py); they differ only in how.

Paper sizes (Tab. 4; the authors' code): weight-transform layers (latent 100), 3 hidden layers of 100,
advantage head 32, meta-batch 5, inner and outer batches of 256, half-cheetah's 17-d observation and
6-d action. Timed: forward, backward and the Adam steps. Last output line: JSON with the timings and
the ratios.

    .venv/bin/python benchmarks/macaw_step.py [--iters 5] [--threads 1]
"""

import argparse
import dataclasses
import json
import time

import torch

from paper_repro.config import cpu_model, native_bf16
from paper_repro.algos import macaw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = macaw.Config()
    k, obs_dim, act_dim = cfg.meta_batch, 17, 6
    g = torch.Generator().manual_seed(0)

    def batch(n):
        return {"obs": torch.randn(k, n, obs_dim, generator=g), "action": torch.rand(k, n, act_dim, generator=g) * 2 - 1,
                "G": torch.randn(k, n, generator=g), "s_T": torch.randn(k, n, obs_dim, generator=g),
                "disc_T": torch.rand(k, n, generator=g), "boot": torch.ones(k, n)}
    tr, ts = batch(cfg.inner_batch), batch(cfg.outer_batch)
    res = {}
    for name, c, loop in (("theta_vmap", cfg, False), ("generic_vmap", dataclasses.replace(cfg, theta_space=False), False),
                          ("generic_loop", dataclasses.replace(cfg, theta_space=False), True)):
        params = macaw.init_params(obs_dim, act_dim, c, seed=0)
        opts = macaw.optimizers(params, c)

        def step():
            lv, lp = (macaw.meta_losses_loop if loop else macaw.meta_losses)(params, tr, ts, c, 20)
            for o in opts.values():
                o.zero_grad(set_to_none=True)
            (lv + lp).backward()
            for o in opts.values():
                o.step()
        step()  # warm-up
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        res[f"{name}_s_per_step"] = sorted(times)[len(times) // 2]
        print(f"{name}: median {res[f'{name}_s_per_step']:.3f} s/step over {args.iters}", flush=True)
    native, why = native_bf16("cpu")
    res.update(ratio_generic_vmap_over_theta=res["generic_vmap_s_per_step"] / res["theta_vmap_s_per_step"],
               ratio_loop_over_theta=res["generic_loop_s_per_step"] / res["theta_vmap_s_per_step"],
               meta_batch=k, batch=cfg.inner_batch, threads=args.threads, cpu=cpu_model(), native_bf16=native,
               native_bf16_why=why)
    print(json.dumps(res))


if __name__ == "__main__":
    main()

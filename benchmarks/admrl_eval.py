"""AdMRL's test protocol on K test tasks, batched (the default: K stacked policies, value functions and
model copies, TRPO vmapped) against a Python loop over the same tasks one at a time, side by side in
one run; then the unit costs of one paper-sized training task.

The snapshot evaluated is a one-task run at the quick scale's sizes (config/scales/quick.yaml,
admrl.learner); the protocol is the quick scale's (8 zero-shot and 4 inner iterations of 5 TRPO
updates on 2,000 virtual samples, 3 stages of 2,000 real samples, 5 evaluation episodes per n).
Both ways compute the same numbers up to float rounding (tests/algos/test_admrl.py); they differ in how.
Last output line: JSON with the timings and the ratio loop / batched.

    .venv/bin/python benchmarks/admrl_eval.py [--family ant-2d] [--tasks 9] [--threads 1] [--paper-units]
"""

import argparse
import dataclasses
import json
import time

import torch

from paper_repro import envs
from paper_repro.algos import admrl
from paper_repro.config import cpu_model

QUICK = dict(n_tasks=1, n_slbo_first=1, n_inner=1, n_policy=5, n_model=100, model_hidden=(200, 200), virtual_envs=10,
             collect_envs=20, test_zeroshot=8, test_inner=4, test_stages=3, test_collect_envs=10, eval_episodes=5)


def paper_units(family: str, threads: int) -> dict:
    """Seconds of one TRPO update (10,000 virtual samples through a 1000-1000 model) and of one model
    step (batch 256) at the paper's sizes, and one training task's estimate from them (AdMRL spec 2.3:
    40 zero-shot and 3 × 20 inner iterations of {100 model steps, 20 TRPO updates}, plus 30,000 real steps)."""
    cfg = admrl.Config()
    lo, hi = admrl.box(family)
    psi = admrl.to_psi(torch.zeros(len(lo), dtype=torch.float64), lo, hi)[None]
    env = envs.make(family, admrl.task_row(family, psi[0]))
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    gen = torch.Generator().manual_seed(0)
    agent = admrl.Agent([gen], obs_dim, act_dim, cfg, "cpu")
    nz = admrl.expand(admrl.init_normalizers(obs_dim), 1)
    trainer = admrl.ModelTrainer({k: v[None] for k, v in admrl.init_model(gen, obs_dim, act_dim, cfg).items()}, cfg)
    starts = admrl.reset_states(family, psi, 200, [0])
    s, a = torch.randn(1, 256, obs_dim), torch.randn(1, 256, act_dim)

    def timed(fn, n):
        fn()
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t) / n
    phi = {k: v.detach() for k, v in trainer.phi.items()}
    trpo = timed(lambda: agent.update(family, nz, phi, psi.float(), starts), 2)
    model = timed(lambda: trainer.step(nz, s, a, s + 0.01), 20)
    t = time.perf_counter()
    task_envs = admrl.real_envs(family, psi, 10)
    admrl.collect(agent.pi, nz, [gen], task_envs, 200, [0], (0.15, 0.3), [__import__("numpy").random.default_rng(0)])
    real = (time.perf_counter() - t) / 2000
    iters = cfg.n_zeroshot + cfg.n_slbo * cfg.n_inner
    per_task = iters * (cfg.n_model * model + cfg.n_policy * trpo) + cfg.n_slbo * cfg.collect_envs * cfg.horizon * real
    return {"paper_trpo_update_s": trpo, "paper_model_step_s": model, "real_step_s": real,
            "paper_training_task_estimate_h": per_task / 3600}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="ant-2d")
    ap.add_argument("--tasks", type=int, default=9)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--paper-units", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = admrl.Config(**QUICK)
    run = admrl.train(args.family, dataclasses.replace(cfg, n_policy=1, n_model=10), seed=0)  # a cheap snapshot
    table = envs.task_table(args.family, "admrl")["test"].head(args.tasks)
    keys = list(envs.get_family(args.family).task_box)
    psis = torch.tensor(table[keys].to_numpy(), dtype=torch.float64)
    ids = table["task_id"].tolist()
    res = {}
    t = time.perf_counter()
    admrl.adapt_and_evaluate(args.family, run, 0, psis, ids, cfg, seed=0)
    res["batched_s"] = time.perf_counter() - t
    print(f"batched: {res['batched_s']:.1f} s for {len(ids)} tasks", flush=True)
    t = time.perf_counter()
    for k, i in enumerate(ids):
        admrl.adapt_and_evaluate(args.family, run, 0, psis[k:k + 1], [i], cfg, seed=0)
    res["loop_s"] = time.perf_counter() - t
    print(f"loop: {res['loop_s']:.1f} s for {len(ids)} tasks", flush=True)
    if args.paper_units:
        res.update(paper_units(args.family, args.threads))
    res.update(family=args.family, tasks=len(ids), threads=args.threads, cpu=cpu_model(),
               protocol={k: v for k, v in dataclasses.asdict(cfg).items() if k.startswith(("test_", "eval_", "virtual", "n_policy", "n_model"))},
               ratio_loop_over_batched=res["loop_s"] / res["batched_s"])
    print(json.dumps(res))


if __name__ == "__main__":
    main()

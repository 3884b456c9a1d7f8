"""Learning curves of our batched SAC/TD3 vs Stable-Baselines3's, same task, several seeds.

Our seeds train together as one batched run (K = number of seeds, all on the
same task); SB3 trains one model per seed, one after the other. Both use the
hyperparameters of ``benchmarks/collect_throughput.py`` and evaluate the
deterministic policy every ``--eval-every`` env steps on ``--eval-episodes``
episodes reset with the same seeds (``seed + 10_000 + i``, as ``collect.train``).

Per implementation it prints the mean and standard deviation over seeds at
every evaluation, and compares each of ours with SB3 on every seed's mean
evaluation return over the run (the area under its curve, one number per seed)
and on its final return: the difference of the means over seeds (ours - SB3)
with its 95% confidence interval, Welch's t interval (unequal variances), and
Welch's p-value beside it. The last line is JSON; ``--csv`` also writes the raw
curves.

Narrower collection agents (``--widths``, a quick-scale saving: MACAW's collectors are not the paper's,
MACAW spec 1.4) are compared with ours at the default width (``--reference``) on the data they leave:
each agent's mean return over the last ``--last-episodes`` training episodes of its replay buffer
(exploration noise included: what the offline learners read), beside the evaluation curves, and the wall
time and task-steps per second of each. ``--tasks`` trains one agent per task index (seed = its
position) instead of ``--seeds`` agents on one task; then the intervals are paired over tasks (paired t).

    python benchmarks/learning_curves.py --algo sac --steps 15000 --seeds 4
    python benchmarks/learning_curves.py --algo td3 --steps 15000 --seeds 4 --precision fp32,bf16
    python benchmarks/learning_curves.py --algo sac --family Pendulum-v1 --steps 8000 --eval-every 1000 --seeds 8
    python benchmarks/learning_curves.py --algo td3 --family cheetah-vel --tasks 0,13,26,39 --steps 50000 \
        --precision fp32 --widths 256x256,64x64 --reference ours-fp32-256x256 --eval-every 5000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from collect_throughput import env_factory, sb3_model

from paper_repro.config import cpu_model


def evaluate_sb3(model, env, seed: int, episodes: int) -> float:
    total = 0.0
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + 10_000 + i)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(action)
            total += r
            done = term or trunc
    return total / episodes


def curves_sb3(args, seeds) -> list[dict]:
    from stable_baselines3.common.callbacks import BaseCallback

    rows = []

    class Evaluate(BaseCallback):
        def __init__(self, seed, env):
            super().__init__()
            self.seed, self.env = seed, env

        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every == 0:
                ret = evaluate_sb3(self.model, self.env, self.seed, args.eval_episodes)
                rows.append({"impl": "sb3", "seed": self.seed, "env_steps": self.num_timesteps, "eval_return": ret})
            return True

    for seed in seeds:
        make = env_factory(args.family, args.task, seed)
        model = sb3_model(args.algo, make(), args.steps, args.warmup, seed)
        model.learn(total_timesteps=args.steps, callback=Evaluate(seed, make()))
    return rows


def curves_ours(args, seeds, bf16: bool, hidden: tuple[int, ...] | None) -> tuple[list[dict], list[dict]]:
    """Our agents' evaluation curves, and each one's mean return over its buffer's last episodes."""
    from paper_repro import buffers, collect
    from paper_repro.algos import sac, td3

    algo = {"sac": sac, "td3": td3}[args.algo]
    cfg = algo.Config(total_steps=args.steps, learning_starts=args.warmup, amp_bf16=bf16, eval_every=args.eval_every,
                      eval_episodes=args.eval_episodes, **({"hidden": hidden} if hidden else {}))
    tasks = args.tasks or [args.task] * len(seeds)
    with tempfile.TemporaryDirectory() as d:
        out = collect.train([env_factory(args.family, t, s) for t, s in zip(tasks, seeds)], algo, cfg, d, seeds=seeds,
                            write_outputs=False, checkpoint_every=10**9, log_every=10**9)
    impl = f"ours-{'bf16' if bf16 else 'fp32'}" + (f"-{'x'.join(map(str, hidden))}" if hidden else "")
    data = []
    for s, buffer in zip(seeds, out["buffers"]):
        arrays = buffer.arrays()
        done = arrays["terminated"] | arrays["truncated"]
        starts, ends = buffers.episode_bounds(arrays["terminated"], arrays["truncated"])
        returns = [float(arrays["reward"][a:b].sum()) for a, b in zip(starts, ends) if done[b - 1]][-args.last_episodes:]
        data.append({"impl": impl, "seed": s, "buffer_return": float(np.mean(returns)), "episodes": len(returns)})
    return [{"impl": impl, "seed": s, "env_steps": n, "eval_return": r}
            for s, curve in zip(seeds, out["curves"]) for n, r, *_ in curve], data


def _worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    seeds = list(range(len(args.tasks) if args.tasks else args.seeds))
    start = time.perf_counter()
    if args.worker == "sb3":
        rows, data = curves_sb3(args, seeds), []
    else:
        _, precision, *width = args.worker.split("-")
        rows, data = curves_ours(args, seeds, precision == "bf16", tuple(map(int, width[0].split("x"))) if width else None)
    print(json.dumps({"curves": rows, "buffers": data, "seconds": time.perf_counter() - start}))


def interval(a: np.ndarray, b: np.ndarray, paired: bool) -> dict:
    """mean(a) - mean(b) with its 95% interval: paired t (the same tasks) or Welch's t."""
    test = stats.ttest_rel(a, b) if paired else stats.ttest_ind(a, b, equal_var=False)
    ci = test.confidence_interval(confidence_level=0.95)
    return {"ours": [float(a.mean()), float(a.std(ddof=1))], "reference": [float(b.mean()), float(b.std(ddof=1))],
            "difference": float(a.mean() - b.mean()), "ci95": [float(ci.low), float(ci.high)], "p": float(test.pvalue)}


def compare(curves: pd.DataFrame, data: pd.DataFrame, impl: str, ref: str, paired: bool) -> dict:
    """``impl`` - ``ref`` on per-seed mean return, final return and (ours alone) the buffer's last episodes."""
    per_seed = curves.groupby(["impl", "seed"]).eval_return
    last = curves[curves.env_steps == curves.env_steps.max()].set_index(["impl", "seed"]).eval_return
    metrics = [("auc", per_seed.mean()), ("final", last)]
    if not data.empty and ref in set(data.impl):
        metrics.append(("buffer", data.set_index(["impl", "seed"]).buffer_return))
    out = {}
    for name, values in metrics:
        out[name] = interval(values.loc[impl].sort_index().to_numpy(), values.loc[ref].sort_index().to_numpy(), paired)
        print(f"{impl} - {ref}, {name}: {out[name]['difference']:+.1f}, 95% CI "
              f"[{out[name]['ci95'][0]:.1f}, {out[name]['ci95'][1]:.1f}]")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=["sac", "td3"], default="sac")
    p.add_argument("--family", default="cheetah-dir",
                   help="a paper_repro.envs family (default cheetah-dir) or a gymnasium id such as Pendulum-v1")
    p.add_argument("--task", type=int, default=1, help="task index, train then test rows (default 1: forward)")
    p.add_argument("--steps", type=int, default=15000, help="env steps per seed")
    p.add_argument("--warmup", type=int, default=1000, help="random warm-up steps (quick scale's learning_starts)")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--eval-every", type=int, default=1500)
    p.add_argument("--eval-episodes", type=int, default=2)
    p.add_argument("--precision", default="fp32,bf16", help="our precisions: fp32, bf16 or fp32,bf16")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--widths", help="our agents' hidden sizes, e.g. 256x256,64x64 (default: the Config's)")
    p.add_argument("--reference", default="sb3", help="what the others are compared with (default sb3; or e.g. "
                   "ours-fp32-256x256, and then SB3 does not run)")
    p.add_argument("--tasks", type=lambda v: [int(t) for t in v.split(",")],
                   help="one agent per task index (seed = position) instead of --seeds agents on --task")
    p.add_argument("--last-episodes", type=int, default=10, help="buffer episodes averaged per agent (default 10)")
    p.add_argument("--csv", type=Path, help="also write the raw curves here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(args)

    widths = [f"-{w}" for w in args.widths.split(",")] if args.widths else [""]
    kinds = [f"ours-{prec}{w}" for prec in args.precision.split(",") for w in widths]
    if args.reference == "sb3":
        kinds = ["sb3", *kinds]
    if args.reference not in kinds:
        sys.exit(f"--reference {args.reference} is none of the runs: {', '.join(kinds)}")
    rows, data, seconds = [], [], {}
    for kind in kinds:
        cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--worker", kind]
        out = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1])
        rows += out["curves"]
        data += out["buffers"]
        seconds[kind] = out["seconds"]
    curves, data = pd.DataFrame(rows), pd.DataFrame(data)
    if args.csv:
        curves.to_csv(args.csv, index=False)
    table = curves.groupby(["env_steps", "impl"]).eval_return.agg(["mean", "std"]).unstack("impl")
    print(table.round(1).to_string())
    agents = len(args.tasks) if args.tasks else args.seeds
    for kind, s in seconds.items():
        print(f"{kind}: {s:.0f} s, {agents * args.steps / s:.0f} task-steps/s")
    if not data.empty:
        print(data.groupby("impl").buffer_return.agg(["mean", "std"]).round(1).to_string())
    result = {"family": args.family, "task": args.tasks or args.task, "algo": args.algo, "steps": args.steps,
              "agents": agents, "reference": args.reference, "seconds": seconds, "cpu": cpu_model(),
              "comparisons": {impl: compare(curves, data, impl, args.reference, bool(args.tasks))
                              for impl in curves.impl.unique() if impl != args.reference}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

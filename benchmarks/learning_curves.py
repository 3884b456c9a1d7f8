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

    python benchmarks/learning_curves.py --algo sac --steps 15000 --seeds 4
    python benchmarks/learning_curves.py --algo td3 --steps 15000 --seeds 4 --precision fp32,bf16
    python benchmarks/learning_curves.py --algo sac --family Pendulum-v1 --steps 8000 --eval-every 1000 --seeds 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from collect_throughput import env_factory, sb3_model


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


def curves_ours(args, seeds, bf16: bool) -> list[dict]:
    from paper_repro import collect
    from paper_repro.algos import sac, td3

    algo = {"sac": sac, "td3": td3}[args.algo]
    cfg = algo.Config(total_steps=args.steps, learning_starts=args.warmup, amp_bf16=bf16, eval_every=args.eval_every,
                      eval_episodes=args.eval_episodes)
    with tempfile.TemporaryDirectory() as d:
        out = collect.train([env_factory(args.family, args.task, s) for s in seeds], algo, cfg, d, seeds=seeds,
                            write_outputs=False, checkpoint_every=10**9, log_every=10**9)
    impl = "ours-bf16" if bf16 else "ours-fp32"
    return [{"impl": impl, "seed": s, "env_steps": n, "eval_return": r}
            for s, curve in zip(seeds, out["curves"]) for n, r in curve]


def _worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    rows = curves_sb3(args, seeds) if args.worker == "sb3" else curves_ours(args, seeds, args.worker == "ours-bf16")
    print(json.dumps(rows))


def compare(curves: pd.DataFrame, impl: str, ref: str = "sb3") -> dict:
    """``impl`` - ``ref`` on per-seed mean return and final return: difference of means, 95% Welch CI, p-value."""
    per_seed = curves.groupby(["impl", "seed"]).eval_return
    last = curves[curves.env_steps == curves.env_steps.max()].set_index(["impl", "seed"]).eval_return
    out = {}
    for name, values in (("auc", per_seed.mean()), ("final", last)):
        a, b = values.loc[impl].to_numpy(), values.loc[ref].to_numpy()
        welch = stats.ttest_ind(a, b, equal_var=False)
        ci = welch.confidence_interval(confidence_level=0.95)
        out[name] = {"ours": [float(a.mean()), float(a.std(ddof=1))], "sb3": [float(b.mean()), float(b.std(ddof=1))],
                     "difference": float(a.mean() - b.mean()), "ci95": [float(ci.low), float(ci.high)],
                     "p": float(welch.pvalue)}
        print(f"{impl} - {ref}, {name}: {a.mean() - b.mean():+.1f}, 95% CI [{ci.low:.1f}, {ci.high:.1f}]")
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
    p.add_argument("--csv", type=Path, help="also write the raw curves here")
    p.add_argument("--worker", choices=["sb3", "ours-fp32", "ours-bf16"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(args)

    rows = []
    for kind in ["sb3", *(f"ours-{prec}" for prec in args.precision.split(","))]:
        cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--worker", kind]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])
    curves = pd.DataFrame(rows)
    if args.csv:
        curves.to_csv(args.csv, index=False)
    table = curves.groupby(["env_steps", "impl"]).eval_return.agg(["mean", "std"]).unstack("impl")
    print(table.round(1).to_string())
    result = {"family": args.family, "task": args.task, "algo": args.algo, "steps": args.steps, "seeds": args.seeds,
              "comparisons": {impl: compare(curves, impl) for impl in curves.impl.unique() if impl != "sb3"}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

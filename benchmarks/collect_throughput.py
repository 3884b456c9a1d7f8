"""Batched K-task SAC/TD3 collection vs Stable-Baselines3, side by side.

For each task count, runs our batched loop (K tasks at once) and SB3 (one model
per task, one after the other) with the same family, tasks, hyperparameters
(256-256, Adam 3e-4, batch 256, gamma 0.99, tau 0.005, one gradient step per env
step after the same random warm-up) and the same env steps per task. Every
measurement runs in its own fresh child process, one after the other (so no
run inherits another's thread pools, allocator state or warm caches).
Throughput is env steps over wall time, warm-up included in both. The last line
is JSON: per algorithm, precision and task count, ours and SB3's env steps/s
(summed over tasks, and per task) and their ratio (ours / SB3, per task count).
SB3 has no bf16 switch, so the bf16 ratio is ours-bf16 over SB3-fp32. The CPU model and whether
the device has native bf16 are printed first and stored in the JSON; bf16 is skipped, with a note,
where it is not native (it would be ~100x slower and the collection refuses it).

With ``--family`` only that family's collector runs (MACAW App. D.2: TD3 for
cheetah-vel, SAC for the others) unless ``--algo`` names algorithms.

    python benchmarks/collect_throughput.py --steps 1500 --tasks 10 --family cheetah-vel
    python benchmarks/collect_throughput.py --steps 5000 --tasks 1,5,10 --algo sac,td3 --precision fp32,bf16
    python benchmarks/collect_throughput.py --steps 5000 --tasks 1,5,10,20 --family cheetah-vel --device cuda
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

FAMILY_ALGO = {"cheetah-vel": "td3"}  # MACAW App. D.2; config/scales/paper.yaml collect.algo; default sac


def env_factory(family: str | None, task_index: int, seed: int):
    """Task ``task_index`` of the family's MACAW protocol (train then test tasks).

    ``family`` may instead name a registered gymnasium environment (``Pendulum-v1``); None is HalfCheetah-v5.
    """
    import gymnasium as gym

    from paper_repro import envs

    if family in envs.FAMILIES:
        tables = envs.task_table(family, "macaw")
        rows = [r for split in ("train", "test") for r in tables[split].to_dict("records")]
        task = rows[task_index % len(rows)]
        return lambda: envs.make(family, task, seed)
    return lambda: gym.make(family or "HalfCheetah-v5")


def ours(algo_name: str, k: int, steps: int, warmup: int, bf16: bool, family: str | None, device: str) -> float:
    from paper_repro import collect
    from paper_repro.algos import sac, td3

    algo = {"sac": sac, "td3": td3}[algo_name]
    cfg = algo.Config(total_steps=steps, learning_starts=warmup, amp_bf16=bf16, eval_every=10**9, eval_episodes=0)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        collect.train([env_factory(family, i, i) for i in range(k)], algo, cfg, d, seeds=list(range(k)),
                      write_outputs=False, device=device, checkpoint_every=10**9, log_every=10**9)
        return time.perf_counter() - t0


def sb3_model(algo_name: str, env, steps: int, warmup: int, seed: int, device: str = "cpu"):
    """SB3's SAC or TD3 with our hyperparameters (sac.Config / td3.Config defaults)."""
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.noise import NormalActionNoise

    common = dict(learning_rate=3e-4, buffer_size=steps, learning_starts=warmup, batch_size=256, tau=0.005,
                  gamma=0.99, train_freq=1, gradient_steps=1, policy_kwargs=dict(net_arch=[256, 256]),
                  seed=seed, device=device, verbose=0)
    if algo_name == "sac":
        model = SAC("MlpPolicy", env, ent_coef="auto", target_entropy="auto", **common)
    else:
        a = env.action_space.shape[0]
        model = TD3("MlpPolicy", env, policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5,
                    action_noise=NormalActionNoise(np.zeros(a), 0.1 * np.ones(a)), **common)
    model.set_logger(Logger(folder=None, output_formats=[]))  # else every learn() leaves an empty /tmp/SB3-<date>
    return model


def sb3(algo_name: str, k: int, steps: int, warmup: int, family: str | None, device: str) -> float:
    t0 = time.perf_counter()
    for i in range(k):  # one model per task, one after the other
        model = sb3_model(algo_name, env_factory(family, i, i)(), steps, warmup, seed=i, device=device)
        model.learn(total_timesteps=steps)
    return time.perf_counter() - t0


def _worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker == "sb3":
        t = sb3(args.algo, args.k, args.steps, args.warmup, args.family, args.device)
    else:
        t = ours(args.algo, args.k, args.steps, args.warmup, args.worker == "ours-bf16", args.family, args.device)
    print(json.dumps({"seconds": t}))


def _run(kind: str, algo: str, k: int, args, warmup: int) -> float:
    """One measurement in a fresh child process; its wall time in seconds."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--algo", algo, "--k", str(k),
           "--steps", str(args.steps), "--warmup", str(warmup), "--threads", str(args.threads), "--device", args.device]
    if args.family:
        cmd += ["--family", args.family]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5000, help="env steps per task")
    p.add_argument("--warmup", type=int, default=None,
                   help="random warm-up steps before the first gradient step (default steps // 3)")
    p.add_argument("--tasks", default="1,5,10", help="comma-separated task counts (default 1,5,10)")
    p.add_argument("--algo", "--algos", dest="algo", default=None,
                   help="comma-separated algorithms (default: the family's collector, or sac,td3 without --family)")
    p.add_argument("--precision", default="fp32", help="our precisions to run: fp32 (default), bf16 or fp32,bf16")
    p.add_argument("--family", default=None, help="a paper_repro.envs family instead of HalfCheetah-v5")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device of ours and SB3 alike: cpu (default) or cuda")
    p.add_argument("--worker", choices=["sb3", "ours-fp32", "ours-bf16"], help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(args)
    from paper_repro.config import cpu_model, native_bf16

    bf16_native, why = native_bf16(args.device)
    print(f"cpu: {cpu_model()}; native bf16: {'yes' if bf16_native else 'no'} ({why})", flush=True)
    algos = (args.algo.split(",") if args.algo
             else [FAMILY_ALGO.get(args.family, "sac")] if args.family else ["sac", "td3"])
    precisions = args.precision.split(",")
    if "bf16" in precisions and not bf16_native:
        print(f"bf16 skipped: not native on {args.device}, where it would be ~100x slower than fp32", flush=True)
        precisions.remove("bf16")
    warmup = args.warmup if args.warmup is not None else args.steps // 3
    results = []
    for algo in algos:
        for k in (int(x) for x in args.tasks.split(",")):
            t_sb3 = _run("sb3", algo, k, args, warmup)
            row = {"algo": algo, "tasks": k, "steps_per_task": args.steps, "warmup": warmup,
                   "sb3_env_steps_per_s": k * args.steps / t_sb3, "sb3_per_task_env_steps_per_s": args.steps / t_sb3}
            line = f"{algo} K={k}: SB3 {row['sb3_per_task_env_steps_per_s']:.1f} steps/s per task"
            for prec in precisions:
                t = _run(f"ours-{prec}", algo, k, args, warmup)
                row[f"ours_{prec}_env_steps_per_s"] = k * args.steps / t
                row[f"ours_{prec}_per_task_env_steps_per_s"] = args.steps / t
                row[f"ratio_{prec}"] = t_sb3 / t
                line += f", ours {prec} {args.steps / t:.1f} (x{t_sb3 / t:.2f})"
            print(line, flush=True)
            results.append(row)
    print(json.dumps({"env": args.family or "HalfCheetah-v5", "threads": args.threads, "device": args.device,
                      "cpu": cpu_model(), "native_bf16": bf16_native, "native_bf16_why": why, "results": results}))


if __name__ == "__main__":
    main()

"""Batched K-task SAC/TD3 collection vs Stable-Baselines3, side by side.

For each task count, runs our batched loop (one process, K tasks at once) and SB3
(one model per task, one after the other) with the same hyperparameters
(256-256, Adam 3e-4, batch 256, gamma 0.99, tau 0.005, one gradient step per env
step after the same random warm-up) and the same env steps per task. Throughput
is total env steps over wall time, warm-up included in both. The last line is
JSON: per algorithm, precision and task count, ours and SB3's env steps/s
(summed over tasks, and per task) and their ratio. SB3 has no bf16 switch, so
the bf16 ratio is ours-bf16 over SB3-fp32.

    python benchmarks/collect_throughput.py --steps 1500 --tasks 10
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch


def env_factory(family: str | None, task_index: int, seed: int):
    """Task ``task_index`` of the family's MACAW protocol (train then test tasks), or plain HalfCheetah-v5."""
    if family:
        from paper_repro import envs

        tables = envs.task_table(family, "macaw")
        rows = [r for split in ("train", "test") for r in tables[split].to_dict("records")]
        task = rows[task_index % len(rows)]
        return lambda: envs.make(family, task, seed)
    return lambda: gym.make("HalfCheetah-v5")


def ours(algo_name: str, k: int, steps: int, warmup: int, bf16: bool, family: str | None) -> float:
    from paper_repro import collect
    from paper_repro.algos import sac, td3

    algo = {"sac": sac, "td3": td3}[algo_name]
    cfg = algo.Config(total_steps=steps, learning_starts=warmup, amp_bf16=bf16, eval_every=10**9,
                      eval_episodes=0, checkpoint_every=10**9, log_every=10**9)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        collect.train([env_factory(family, i, i) for i in range(k)], algo, cfg, d, seeds=list(range(k)),
                      write_outputs=False)
        return time.perf_counter() - t0


def sb3(algo_name: str, k: int, steps: int, warmup: int, family: str | None) -> float:
    from stable_baselines3 import SAC, TD3
    from stable_baselines3.common.noise import NormalActionNoise

    t0 = time.perf_counter()
    for i in range(k):  # one model per task, one after the other
        env = env_factory(family, i, i)()
        common = dict(learning_rate=3e-4, buffer_size=steps, learning_starts=warmup, batch_size=256, tau=0.005,
                      gamma=0.99, train_freq=1, gradient_steps=1, policy_kwargs=dict(net_arch=[256, 256]),
                      seed=i, device="cpu", verbose=0)
        if algo_name == "sac":
            model = SAC("MlpPolicy", env, ent_coef="auto", target_entropy="auto", **common)
        else:
            a = env.action_space.shape[0]
            model = TD3("MlpPolicy", env, policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5,
                        action_noise=NormalActionNoise(np.zeros(a), 0.1 * np.ones(a)), **common)
        model.learn(total_timesteps=steps)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=5000, help="env steps per task")
    p.add_argument("--warmup", type=int, default=None, help="random warm-up steps (default steps // 3)")
    p.add_argument("--tasks", default="1,5,10", help="comma-separated task counts")
    p.add_argument("--algos", default="sac,td3")
    p.add_argument("--family", default=None, help="a paper_repro.envs family instead of HalfCheetah-v5")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warmup = args.warmup if args.warmup is not None else args.steps // 3
    results = []
    for algo in args.algos.split(","):
        for k in (int(x) for x in args.tasks.split(",")):
            t_sb3 = sb3(algo, k, args.steps, warmup, args.family)
            row = {"algo": algo, "tasks": k, "steps_per_task": args.steps, "warmup": warmup,
                   "sb3_env_steps_per_s": k * args.steps / t_sb3, "sb3_per_task_env_steps_per_s": args.steps / t_sb3}
            for prec, bf16 in (("fp32", False), ("bf16", True)):
                t = ours(algo, k, args.steps, warmup, bf16, args.family)
                row[f"ours_{prec}_env_steps_per_s"] = k * args.steps / t
                row[f"ours_{prec}_per_task_env_steps_per_s"] = args.steps / t
                row[f"ratio_{prec}"] = t_sb3 / t
            print(f"{algo} K={k}: SB3 {row['sb3_env_steps_per_s']:.0f} steps/s, ours fp32 "
                  f"{row['ours_fp32_env_steps_per_s']:.0f} (x{row['ratio_fp32']:.2f}), bf16 "
                  f"{row['ours_bf16_env_steps_per_s']:.0f} (x{row['ratio_bf16']:.2f})", flush=True)
            results.append(row)
    print(json.dumps({"env": args.family or "HalfCheetah-v5", "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()

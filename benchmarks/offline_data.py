"""What an offline learner can get out of a collection: the data-path check behind MACAW's quick findings.

For each task buffer of a collection (``results/<scale>/data/<family>/<agent>/seed<k>/task<i>.npz``) it prints

- the return of the buffer's episodes, over each quarter of the agent's lifetime and over its last 10
  episodes (exploration noise included: what MACAW and its baselines read);
- the return of standing still on the task (the zero action for a whole episode);
- with ``--steps``, behaviour cloning in MACAW's own policy network (weight transform, its width, depth
  and fixed σ; ``macaw.policy_loss`` with ``loss=imitation``, Adam at ``--lr``), trained on two data sets:
  the whole lifetime at MACAW's stride (``lifetime``, what MACAW's inner and outer loops read) and the last
  ``--last`` episodes at stride 1 (``last``), each evaluated every ``--steps / 4`` steps through MACAW's
  own test path (``macaw.adapt_and_evaluate``, the un-adapted "prior" row: deterministic episodes, clipped
  tanh mean) on the buffer's task.

Cloning the last episodes leaves standing still when the data, as MACAW reads them, and MACAW's
evaluation are sound; cloning the lifetime shows what imitating the data's average behaviour is worth.

    python benchmarks/offline_data.py results/quick/data/cheetah-vel/td3/seed0 --family cheetah-vel \\
        --tasks 2,15,23 --steps 4000 --lr 1e-3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from paper_repro import buffers, envs, nets, rollout
from paper_repro.algos import macaw
from paper_repro.config import cpu_model


def episode_returns(buffer) -> np.ndarray:
    starts, ends = buffers.episode_bounds(np.asarray(buffer["terminated"]), np.asarray(buffer["truncated"]))
    r = np.asarray(buffer["reward"], np.float64)
    return np.array([r[s:e].sum() for s, e in zip(starts, ends)])


def standing_still(family: str, task: dict, horizon: int, episodes: int = 3) -> float:
    env = [envs.make(family, task) for _ in range(episodes)]
    act_dim = env[0].action_space.shape[0]
    return rollout.evaluate(env, lambda obs: np.zeros((len(obs), act_dim), np.float32), list(range(episodes)),
                            horizon)["return"]


def clone(data: dict, family: str, task: dict, horizon: int, steps: int, lr: float, seed: int) -> list[float]:
    """Behaviour cloning in MACAW's policy network; the prior return at 0 and every ``steps // 4`` steps."""
    cfg = macaw.Config(loss="imitation", train_steps=0)
    params = macaw.init_params(data["obs"].shape[1], data["action"].shape[1], cfg, seed)
    opt = torch.optim.Adam(nets.leaves(params["P"], trainable=True), lr=lr)
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps + 1):
        if step % max(1, steps // 4) == 0:
            state = {"config": dataclasses.asdict(cfg), "params": nets.tree_map(lambda t: t.detach().clone(), params)}
            rows = macaw.adapt_and_evaluate(state, lambda: envs.make(family, task), horizon, adapt_data=data,
                                            eval_episodes=3, seed=seed)
            out.append(round(rows[0]["return"], 1))
        if step == steps:
            return out
        batch = {k: v[0] for k, v in buffers.sample_offline([data], cfg.outer_batch, [rng], False).items()}
        loss = macaw.policy_loss(params["P"], batch, None, torch.zeros(()), cfg, inner=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("collection", type=Path, help="a collection's folder of task<i>.npz buffers")
    ap.add_argument("--family", required=True)
    ap.add_argument("--tasks", required=True, help="task indices, comma-separated")
    ap.add_argument("--horizon", type=int, default=200)
    ap.add_argument("--steps", type=int, default=0, help="behaviour-cloning steps (0: none)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--last", type=int, default=50, help="episodes of the 'last' data set")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    stride = macaw.Config().data_stride
    results = []
    for i in (int(t) for t in args.tasks.split(",")):
        t0 = time.time()
        b = buffers.load_buffer(args.collection / f"task{i}.npz", keys=tuple(dict.fromkeys((*buffers.KEYS, "task"))))
        task = {k: v for k, v in b["task"].items() if k != "family"}
        R = episode_returns(b)
        row = {"task": i, **{k: v for k, v in task.items() if k != "task_id"}, "episodes": len(R),
               "lifetime_quarters": [round(float(q.mean()), 1) for q in np.array_split(R, 4)],
               "last10": round(float(R[-10:].mean()), 1),
               "standing_still": round(standing_still(args.family, task, args.horizon), 1)}
        if args.steps:
            sets = {"lifetime": buffers.offline_arrays(b, macaw.Config().gamma, stride),
                    "last": buffers.offline_arrays(b, macaw.Config().gamma, 1, "last", args.last)}
            for name, data in sets.items():
                row[f"clone_{name}"] = clone(data, args.family, task, args.horizon, args.steps, args.lr, args.seed)
        row["seconds"] = round(time.time() - t0, 1)
        print(row, flush=True)
        results.append(row)
    print(json.dumps({"cpu": cpu_model(), "torch_threads": torch.get_num_threads(), "args": vars(args) | {
        "collection": str(args.collection)}, "rows": results}))


if __name__ == "__main__":
    main()

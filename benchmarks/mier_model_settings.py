"""How MIER's model settings change context adaptation early in meta-training (not a speed benchmark).

Meta-trains MIER for a few epochs on the negated-joint training tasks at the quick scale's sizes,
once per setting, and reports per epoch the model's NLL on the evaluation batches before and after
context adaptation (train/model_nll_pre, train/model_nll_post: what adaptation buys), how often the
inner-gradient clip binds, and the mean inner-gradient norm. Settings: the context step size
(authors' code 0.01, paper 0.1) and the loss normalisation (per_head_mean, the authors'; sum).
NLLs of the two normalisations are on different scales; compare each with its own pre-adaptation NLL.

    .venv/bin/python benchmarks/mier_model_settings.py --tasks results/tasks/cheetah-negated-joints/mier/train.csv
"""

import argparse
import json

import pandas as pd
import torch

from paper_repro import config as prconfig
from paper_repro import envs
from paper_repro.algos import mier

SETTINGS = {"code lr 0.01, per_head_mean": {}, "paper lr 0.1, per_head_mean": {"inner_lr": 0.1},
            "paper lr 0.1, sum": {"inner_lr": 0.1, "model_loss": "sum"}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", required=True, help="a task table (train split) of cheetah-negated-joints")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--scale", default="quick")
    args = ap.parse_args()
    torch.set_num_threads(1)
    quick = prconfig.load_yaml(f"config/scales/{args.scale}.yaml")["mier"]
    tasks = pd.read_csv(args.tasks).head(10).to_dict("records")
    family = envs.get_family("cheetah-negated-joints")
    out = {}
    for name, setting in SETTINGS.items():
        cfg = prconfig.from_dict(mier.Config, {**quick, "epochs": args.epochs, **setting}, "mier")
        rows = []
        mier.train(lambda t: envs.make("cheetah-negated-joints", t), tasks, family.horizon, cfg, seed=0, log=rows.append)
        out[name] = [{k: round(r[k], 4) for k in ("train/model_nll_pre", "train/model_nll_post", "train/inner_clip_rate",
                                                  "train/inner_grad_norm", "train/meta_grad_clip_rate")} for r in rows]
        last = out[name][-1]
        print(f"{name}: last epoch NLL pre {last['train/model_nll_pre']:.3f} post {last['train/model_nll_post']:.3f}, "
              f"inner clip rate {last['train/inner_clip_rate']:.3f}, inner grad norm {last['train/inner_grad_norm']:.3f}",
              flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

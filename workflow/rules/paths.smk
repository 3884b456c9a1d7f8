# Where each result goes: results/<scale>/ for the expensive ones (data, runs, evaluations), results/ for
# the cheap shared ones (task tables, figure tables, claims, figures).


def task_table_path(family, protocol, split):
    return f"results/tasks/{family}/{protocol}/{split}.csv"


def figure_outputs(name):
    """A figure's PDF and PNG, both in `snakemake --report` (caption workflow/report/<name>.rst);
    the PNG shows inline in any browser, the PDF is the print version."""
    fig = config["figures"][name]
    return {
        kind: report(
            f"results/figures/{name}.{kind}",
            caption=f"../report/{name}.rst",
            category=fig["paper"],
            subcategory=name,
            labels={"figure": name, "format": kind.upper(), "scale": SCALE},
        )
        for kind in ("pdf", "png")
    }


def figure_table(name):
    """The tidy table a figure is drawn from."""
    return f"results/tables/{name}.csv"


def figure_rows(name):
    """The rows a figure's table aggregates (one per method, seed, test task and evaluation): what its
    claims are tested on."""
    return f"results/tables/{name}.rows.csv"


CLAIMS_REGISTRY = "config/claims.yaml"


def figure_claims(name):
    """A figure's claims (config/claims.yaml) with estimates, intervals and verdicts; shown in the report."""
    fig = config["figures"][name]
    return report(f"results/claims/{name}.csv", caption="../report/claims.rst", category=fig["paper"],
                  subcategory=name, labels={"figure": name, "format": "claims", "scale": SCALE})


def collect_dir(family, seed="{seed}"):
    return f"{SCALE_DIR}/data/{family}/{config['collect']['algo'][family]}/seed{seed}"


def eval_path(experiment, algo, seed):
    return f"{SCALE_DIR}/eval/{experiment}/{algo}/seed{seed}.csv"


def finetune_path(experiment, method, seed):
    return f"{SCALE_DIR}/eval/{experiment}/{method}-ft/seed{seed}.csv"


def admrl_run_dir(family, method, seed="{seed}"):
    """A model-based run trains on the family's task box, whatever test protocol evaluates it
    (admrl-ant-2d and admrl-ant-2d-ood share ant-2d's runs); ``init``: the seed's shared first task."""
    return f"{SCALE_DIR}/runs/admrl/{family}/{method}/seed{seed}"


def best_dir(experiment, seed=0):
    """AdMRL's reference agents (A*): one SAC agent per test task of an experiment, seed 0."""
    return f"{SCALE_DIR}/best/{experiment}/sac/seed{seed}"


def model_error_path(experiment, seed="{seed}"):
    return f"{SCALE_DIR}/model_error/{experiment}/seed{seed}.csv"

# paper-repro: MIER, AdMRL and MACAW, from per-task data collection to every figure.
# Setup and includes only; rules live in workflow/rules/, config keys in config/README.md.

configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/paths.smk"
include: "workflow/rules/params.smk"
include: "workflow/rules/inputs.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/tasks.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/minari.smk"
include: "workflow/rules/metatrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/figures.smk"


wildcard_constraints:
    family="|".join(envs.FAMILIES),
    protocol="[a-z0-9-]+",
    experiment="|".join(config["experiments"]),
    seed=r"\d+",


rule all:
    input:
        lambda wildcards: all_targets(),  # a function: asked (and its log line written) only when `all` is built
    default_target: True

# The VSSL experiment pipeline: prepare_data -> pretrain -> extract_features -> probe -> table.
#
#   snakemake --cores all results/table.csv                       # params.yaml's profile (quick)
#   snakemake --cores all --config profile=smoke                  # another profile
#   snakemake --profile workflow/profiles/slurm --config profile=paper   # on a SLURM cluster
#
# params.yaml is the config file; it is validated once, here, before any rule runs. Rules are thin:
# each calls one `vssl` sub-command. Every path is a pattern from vssl/workflow.py (shared with
# dvc.yaml, `vssl table` and the tests). A grid entry ({variant}) is a method or a variant.

import os
import re
import sys

from vssl import workflow as wf
from vssl.config import ConfigError, load_params, load_raw

PARAMS_FILE = "params.yaml"

# Read the file with the project's own loader first: Snakemake's `configfile:` reports a YAML
# error as its own WorkflowError, naming no file; this gives `vssl validate`'s message.
try:
    load_raw(PARAMS_FILE)
except ConfigError as e:
    print(f"snakemake: invalid configuration: {e}", file=sys.stderr)
    sys.exit(2)


configfile: PARAMS_FILE


try:
    wf.check_snakemake_config(config, load_raw(PARAMS_FILE))
    P = load_params(PARAMS_FILE, profile=config["profile"])
except ConfigError as e:
    print(f"snakemake: invalid configuration: {e}", file=sys.stderr)
    sys.exit(2)

PROFILE = P.profile
RUNS = wf.grid_runs(P)


wildcard_constraints:
    profile=re.escape(PROFILE),
    dataset="|".join(map(re.escape, P.grid.datasets)),
    variant="|".join(map(re.escape, P.grid.methods)),
    seed=r"\d+",


# Not sent to a cluster: `all` runs nothing, and compute nodes often lack the internet access that
# downloading a dataset needs.
localrules:
    all,
    prepare_data,


rule all:
    default_target: True
    input:
        wf.table_outputs(),


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"

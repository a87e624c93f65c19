# pretrain: self-supervised pretraining of one (dataset, variant, seed) through `accelerate launch`.
# The `gpus` resource picks the launcher flags (vssl.workflow.launch_args): 0 -> one CPU process,
# 1 -> one process on the GPU, N -> N DDP processes. On a local GPU machine:
#   snakemake --cores all --set-resources pretrain:gpus=1 --resources gpus=1
# The SLURM profile sets gpus together with `gres` (they must agree; launch_args checks).
#
# Preemption: the job always passes --resume. An unfinished run keeps its state in
# checkpoint.partial.pt beside the outputs, which is not a declared output, so Snakemake's cleanup
# of an incomplete or failed job never deletes it; SIGTERM/Ctrl-C saves the last completed epoch
# there, and the rerun (`--rerun-incomplete`) continues from it. checkpoint.pt appears only when
# the run completes. --restart-incompatible: a partial run of other settings (the job reruns
# because its inputs changed) starts over instead of failing. `trap '' TERM`: the shell and
# `accelerate launch` ignore SIGTERM (the trainer installs its own handler) and so wait for the
# trainer to save and exit, instead of exiting at once and leaving it to be killed with the
# job step (SLURM kills what is left of a step when its task exits).


rule pretrain:
    input:
        manifest=wf.pattern("manifest"),
    output:
        checkpoint=wf.pattern("checkpoint"),
        metrics=wf.pattern("metrics"),
        history=wf.pattern("history"),
    log:
        wf.pattern("run_log", stage="pretrain"),
    params:
        out=lambda wc, output: os.path.dirname(output.checkpoint),
        launch=lambda wc, resources: wf.launch_args(resources.gpus, resources.get("gres")),
        digest=lambda wc: wf.stage_digest(P, "pretrain", wc.dataset, wc.variant),
    threads: 1
    resources:
        gpus=0,
    shell:
        "trap '' TERM; accelerate launch {params.launch} -m vssl pretrain --params params.yaml"
        " --profile {wildcards.profile} --dataset {wildcards.dataset} --method {wildcards.variant}"
        " --seed {wildcards.seed} --out {params.out} --resume --restart-incompatible"
        " > {log} 2>&1"

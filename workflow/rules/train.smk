# pretrain: self-supervised pretraining of one (dataset, variant, seed) through `accelerate launch`.
# The `gpus` resource picks the launcher flags (vssl.workflow.launch_args): 0 -> one CPU process,
# 1 -> one process on the GPU, N -> N DDP processes. On a local GPU machine:
#   snakemake --cores all --set-resources pretrain:gpus=1 --resources gpus=1
# The SLURM profile sets gpus together with `gres` (they must agree; launch_args checks).


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
        "accelerate launch {params.launch} -m vssl pretrain --params params.yaml"
        " --profile {wildcards.profile} --dataset {wildcards.dataset} --method {wildcards.variant}"
        " --seed {wildcards.seed} --out {params.out} > {log} 2>&1"

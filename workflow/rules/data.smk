# prepare_data: materialise or verify one dataset in the data root and write its manifest.


rule prepare_data:
    output:
        wf.pattern("manifest"),
    log:
        wf.pattern("stage_log", stage="prepare_data", job="{dataset}"),
    params:
        digest=lambda wc: wf.stage_digest(P, "prepare_data", wc.dataset),
    threads: 1
    shell:
        "python -m vssl prepare --params params.yaml --profile {wildcards.profile}"
        " --dataset {wildcards.dataset} --out {output} > {log} 2>&1"

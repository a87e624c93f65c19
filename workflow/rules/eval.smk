# extract_features: frozen backbone features (and VSSL's mu/logvar) of the train and test splits.
# probe: linear and kNN probes (and VSSL's uncertainty AUROC) on those features; results JSON and
# the per-sample uncertainty sidecar.
# priority: with fewer cores than runs, Snakemake otherwise starts every pending pretraining before
# the first evaluation, so no run's numbers appear until the last one trains; a run that finished
# pretraining is evaluated (a minute or two) before the next hours-long pretraining starts.


rule extract_features:
    input:
        manifest=wf.pattern("manifest"),
        checkpoint=wf.pattern("checkpoint"),
    output:
        train=wf.pattern("train_features"),
        test=wf.pattern("test_features"),
    log:
        wf.pattern("run_log", stage="extract_features"),
    params:
        out=lambda wc, output: os.path.dirname(output.train),
        digest=lambda wc: wf.stage_digest(P, "extract_features", wc.dataset, wc.variant),
    priority: 1
    threads: 1
    shell:
        "python -m vssl extract --params params.yaml --profile {wildcards.profile}"
        " --checkpoint {input.checkpoint} --dataset {wildcards.dataset} --out {params.out}"
        " > {log} 2>&1"


rule probe:
    input:
        train=wf.pattern("train_features"),
        test=wf.pattern("test_features"),
    output:
        probe=wf.pattern("probe"),
        # Written by `vssl probe` beside the JSON for every run (empty variances but VSSL's).
        uncertainty=wf.pattern("uncertainty"),
    log:
        wf.pattern("run_log", stage="probe"),
    params:
        features=lambda wc, input: os.path.dirname(input.train),
        digest=lambda wc: wf.stage_digest(P, "probe", wc.dataset, wc.variant),
    priority: 1
    threads: 1
    shell:
        "python -m vssl probe --params params.yaml --profile {wildcards.profile}"
        " --features {params.features} --out {output.probe} > {log} 2>&1"

# extract_features: frozen backbone features (and VSSL's mu/logvar) of the train and test splits.
# probe: linear and kNN probes (and VSSL's uncertainty AUROC) on those features.


rule extract_features:
    input:
        manifest="data/prepared/{profile}/{dataset}.json",
        checkpoint="runs/{profile}/{dataset}/{method}/seed{seed}/checkpoint.pt",
    output:
        train="features/{profile}/{dataset}/{method}/seed{seed}/train.npz",
        test="features/{profile}/{dataset}/{method}/seed{seed}/test.npz",
    log:
        "logs/{profile}/extract_features/{dataset}/{method}/seed{seed}.log",
    params:
        out=lambda wc, output: os.path.dirname(output.train),
        digest=lambda wc: wf.stage_digest(P, "extract_features", wc.dataset, wc.method),
    threads: 1
    shell:
        "python -m vssl extract --params params.yaml --profile {wildcards.profile}"
        " --checkpoint {input.checkpoint} --dataset {wildcards.dataset} --out {params.out}"
        " > {log} 2>&1"


rule probe:
    input:
        train="features/{profile}/{dataset}/{method}/seed{seed}/train.npz",
        test="features/{profile}/{dataset}/{method}/seed{seed}/test.npz",
    output:
        "results/probes/{profile}/{dataset}/{method}/seed{seed}.json",
    log:
        "logs/{profile}/probe/{dataset}/{method}/seed{seed}.log",
    params:
        features=lambda wc, input: os.path.dirname(input.train),
        digest=lambda wc: wf.stage_digest(P, "probe", wc.dataset, wc.method),
    threads: 1
    shell:
        "python -m vssl probe --params params.yaml --profile {wildcards.profile}"
        " --features {params.features} --out {output} > {log} 2>&1"

# table: results/table.csv (mean and std over seeds per dataset x method) and the figures.


rule table:
    input:
        probes=[r.probe for r in RUNS],
        uncertainty=[r.uncertainty for r in RUNS],
        metrics=[r.metrics for r in RUNS],
        histories=[r.history for r in RUNS],
    output:
        table=wf.TABLE,
        figures=list(wf.FIGURES.values()),
    log:
        wf.log_path(PROFILE, "table", "table"),
    params:
        profile=PROFILE,
        figures=lambda wc, output: os.path.dirname(output.figures[0]),
    threads: 1
    shell:
        "python -m vssl table --params params.yaml --profile {params.profile}"
        " --out {output.table} --figures {params.figures} > {log} 2>&1"

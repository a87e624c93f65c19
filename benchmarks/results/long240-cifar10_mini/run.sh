#!/usr/bin/env bash
# VSSL, width 16, cifar10-mini, a full 240-epoch schedule (long120's settings, 2x epochs), seed 0
set -euo pipefail
cd /work/main
export OMP_NUM_THREADS=1 MPLBACKEND=Agg
o=/work/exp/long240
s=${1:-0}
python -m vssl pretrain --profile long120 --dataset cifar10_mini --method vssl --seed $s \
  --set pretrain.epochs=240 --set pretrain.checkpoint_every=10 --set pretrain.knn_every=40 \
  --out $o/vssl-s$s --no-mlflow --no-progress --resume
python -m vssl extract --checkpoint $o/vssl-s$s/checkpoint.pt --dataset cifar10_mini --profile long120 \
  --out $o/features-s$s --no-mlflow
python -m vssl probe --features $o/features-s$s --out $o/probe-s$s.json --profile long120 --no-mlflow
python benchmarks/variance_auroc.py $o/vssl-s$s/checkpoint.pt $o/probe-s$s.uncertainty.csv --draws 4 \
  --crop-levels 1.0 0.64 0.4 0.25 0.16 0.08 --out $o/auroc-s$s.json

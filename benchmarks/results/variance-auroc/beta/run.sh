#!/usr/bin/env bash
# The KL's weight beta at `long`'s settings (cifar10-mini, width 16, 30 epochs, the paper's heads
# and lr): one (beta, seed) run, then its probe and variance scores.
# Usage, from anywhere: bash benchmarks/results/variance-auroc/beta/run.sh BETA SEED [OUT]
# (OUT default /tmp/beta); writes OUT/bBETA-sSEED/{run,features,probe.json,auroc.json}.
# One thread: about 13 min per run with two runs side by side on the 2-core CPU (2026-11-28).
# PROFILE=long60 runs long60's settings instead (60 epochs, 10 warm-up): files in long60/, whose
# runs stopped after `vssl probe` (about 30 min per run, three side by side).
# beta=1 is the default: at this code seeds 0 and 1 reproduced long_ablations' vssl-rerun bit for
# bit (history.csv identical), so beta1-seed2/ holds that run's seed 2 (its history, metrics and
# probe, and variance-auroc/long-vssl-seed2-rerun-7cb3c39.json as auroc.json).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MPLBACKEND=Agg
b=$1; s=$2; o=${3:-/tmp/beta}/b$b-s$s; profile=${PROFILE:-long}
python -m vssl pretrain --profile "$profile" --dataset cifar10_mini --method vssl --seed "$s" \
  --set methods.vssl.beta="$b" --out "$o/run" --no-mlflow --no-progress --resume
python -m vssl extract --checkpoint "$o/run/checkpoint.pt" --dataset cifar10_mini \
  --profile "$profile" --out "$o/features" --no-mlflow
python -m vssl probe --features "$o/features" --out "$o/probe.json" --profile "$profile" --no-mlflow
python benchmarks/variance_auroc.py "$o/run/checkpoint.pt" "$o/probe.uncertainty.csv" \
  --draws 4 --crop-levels 1.0 0.64 0.4 0.25 0.16 0.08 --out "$o/auroc.json"

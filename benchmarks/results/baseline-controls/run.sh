#!/usr/bin/env bash
# Controls for the baselines at `long`'s settings (cifar10-mini, width 16, the paper's heads and
# lr 1.0 LARS, batch 256, 30 epochs): one (control, seed) run, then its probe.
# Usage, from anywhere: bash benchmarks/results/baseline-controls/run.sh CONTROL SEED [OUT]
# (OUT default /tmp/controls); writes OUT/CONTROL-sSEED/{run,features,probe.json}.
# CONTROL is one of:
#   byol        BYOL as configured (no gradient clipping, as in solo-learn)
#   byol_clip   BYOL with VSSL's gradient clip (global norm 1.0): the variant `byol_clip` of
#               params.yaml (pretrain.grad_clip_norm: 1.0, which methods without a clip of their
#               own take). The committed runs were made as `--method byol --set
#               pretrain.grad_clip_norm=1.0`, which resolves to the same configuration.
# One thread each (OMP_NUM_THREADS, default 1), two runs side by side on the 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MPLBACKEND=Agg
c=$1; s=$2; o=${3:-/tmp/controls}/$c-s$s
case $c in
  byol) m=byol; set_args=() ;;
  byol_clip) m=byol_clip; set_args=() ;;
  *) echo "unknown control $c (byol, byol_clip)" >&2; exit 2 ;;
esac
python -m vssl pretrain --profile long --dataset cifar10_mini --method "$m" --seed "$s" \
  ${set_args[@]+"${set_args[@]}"} --out "$o/run" --no-mlflow --no-progress --resume
python -m vssl extract --checkpoint "$o/run/checkpoint.pt" --dataset cifar10_mini \
  --profile long --out "$o/features" --no-mlflow
python -m vssl probe --features "$o/features" --out "$o/probe.json" --profile long --no-mlflow

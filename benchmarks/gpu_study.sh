#!/usr/bin/env bash
# Issue 10's study on one GPU: VSSL (the default), BYOL and the untrained floor at the paper's
# settings and width (`--profile paper`: ResNet-18 width 64, heads 4096/256/4096, LARS at base
# lr 1.0, batch 256, bf16, 10 warm-up epochs) on cifar10-mini, each a complete cosine schedule
# of --epochs epochs (default 200, against the 60 epochs a CPU affords), seeds 0, 1 and 2:
#   1. per seed, one after the other: benchmarks/paper_width.py run (the configs train side by
#      side, one process each, sharing the GPU; then `vssl extract` and `vssl probe`: linear,
#      kNN-20 and VSSL's error AUROC on the 1,000 held-out images);
#   2. per seed, on the CPU while the next seed trains: benchmarks/variance_auroc.py on the VSSL
#      checkpoint (what the posterior variance ranks, and the information-loss test);
#   3. benchmarks/paper_width.py seeds: mean ± std over seeds, VSSL minus BYOL paired by seed.
# Measured on an H100 (2026-11-27), one seed at the default took 350 s: 190 s of pretraining (the
# two runs side by side at 11,300 img/s each, 85 s of it the first epoch's compiles) and 150 s of
# extraction and probes (now side by side too), so the 540 s budget fits one seed, not three.
# --parallel runs the seeds at the same time (4 runs on the GPU for 2 seeds), each started once
# the one before has logged its first epoch, so that it compiles from the warm cache; estimated
# 6-7 minutes for --seeds "1 2" at 200 epochs, not yet measured.
#
# Usage, from the repository root:
#   bash ../shared/device/prepare.sh   # once, on a machine with network: fills .whl/ and .devdata/
#   bash benchmarks/gpu_study.sh [--epochs N] [--seeds "0 1 2"] [--configs "vssl byol random"]
#   bash benchmarks/gpu_study.sh --parallel --seeds "1 2"   # the seeds' runs side by side
#   bash benchmarks/gpu_study.sh --seeds 0 --configs "mocov3"   # the paper's other baseline
#     (`paper_width.py seeds` over its seed folder and the VSSL ones pairs VSSL with MoCo v3)
#   bash benchmarks/gpu_study.sh --parallel --seeds "0 1 2" --configs "byol_clip"
#     (BYOL with VSSL's gradient clip, paired with VSSL the same way; docs/benchmarks.md,
#     "Is VSSL's lead over BYOL the gradient clip's?")
#   bash benchmarks/gpu_study.sh --dry-run   # the same steps at toy sizes on the CPU (~2 min)
# The run stops starting seeds once $GPU_STUDY_BUDGET seconds (default 540, under the device
# tool's 600 s per call) are close to spent; each seed's training is capped to what is left.
#
# Results go to $GPU_STUDY_OUT (default: $OUT when set, the device tool's folder, else
# /tmp/vssl-gpu-study): study.tar.gz (every seed's folder without checkpoints and feature
# arrays: histories, probe JSONs and sidecars, summary.md, logs; auroc-seed*.json; seeds.md and
# seeds.csv), rewritten after every step so that a cut-off run still returns what it finished,
# and seeds.md beside it.
set -euo pipefail

dry=0
parallel=0
epochs=200
seeds="0 1 2"
configs="vssl byol random"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --parallel) parallel=1 ;;
    --epochs) epochs=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --configs) configs=$2; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    *) echo "gpu_study.sh: unknown argument $1 (use --dry-run, --parallel, --epochs N," \
            "--seeds LIST, --configs LIST)" >&2
       exit 2 ;;
  esac
  shift
done
if ! [[ "$epochs" =~ ^[1-9][0-9]*$ ]]; then
  echo "gpu_study.sh: --epochs must be a positive integer, got '$epochs'" >&2
  exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
out=${GPU_STUDY_OUT:-${OUT:-/tmp/vssl-gpu-study}}
work=${TMPDIR:-/tmp}/vssl-gpu-study-runs
budget=${GPU_STUDY_BUDGET:-540}
mkdir -p "$out"
rm -rf "$work" && mkdir -p "$work"
start=$(date +%s)
say() { printf '\n== %s (%ds)\n' "$*" "$(( $(date +%s) - start ))"; }
pack() {  # everything small enough to bring back, as one file (the device tool returns 8)
  # Runs and variance_auroc.py may still be writing: a file that changes or vanishes while tar
  # reads it (exit 1, or a failed read) leaves an archive of what was there; it is repacked
  # after every step.
  local rc=0
  tar -czf "$out/study.tar.gz.tmp" -C "$work" --exclude='*.pt' --exclude='*.npz' \
    --warning=no-file-changed --warning=no-file-removed --ignore-failed-read . || rc=$?
  if [ "$rc" -le 1 ]; then
    mv "$out/study.tar.gz.tmp" "$out/study.tar.gz"
  else
    echo "gpu_study.sh: tar failed (exit $rc); the last archive stays"
  fi
}

# shellcheck source=benchmarks/device_env.sh
source benchmarks/device_env.sh

sets=(--set "pretrain.epochs=$epochs")
if [ "$dry" = 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  precision=no
  sets+=(--set backbone.width=4 --set data.train_subset=128 --set data.test_subset=64
         --set pretrain.batch_size=32 --set pretrain.warmup_epochs=1 --set pretrain.knn_every=0
         --set 'probe.knn.k=[20]')
  crops=(--crop-levels 1.0 0.25)
  auroc_threads=1
else
  precision=bf16
  "$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  crops=(--crop-levels 1.0 0.64 0.4 0.25 0.16 0.08)
  auroc_threads=4
fi
"$py" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"
git rev-parse HEAD >"$work/commit.txt" 2>/dev/null || true
echo "epochs $epochs, seeds $seeds, configs $configs, ${sets[*]}" | tee "$work/study.txt"

# -- 1 and 2: the seeds ------------------------------------------------------------------------
auroc_pids=()
done_seeds=()
after_seed() {  # after_seed SEED EXIT: report, start variance_auroc.py on its VSSL run, pack
  local s=$1 rc=$2
  tail -n 16 "$work/seed$s.log"
  if [ "$rc" != 0 ]; then
    echo "seed $s stopped with exit $rc: see seed$s.log (and seed$s/<config>.log) in the tarball"
    pack
    return
  fi
  done_seeds+=("$work/seed$s")
  if [[ " $configs " == *" vssl "* ]]; then
    ckpt="$work/seed$s/vssl/checkpoint.pt"
    [ -f "$ckpt" ] || ckpt="$work/seed$s/vssl/checkpoint.partial.pt"
    OMP_NUM_THREADS=$auroc_threads "$py" benchmarks/variance_auroc.py "$ckpt" \
      "$work/seed$s/probes/vssl.uncertainty.csv" --draws 4 "${crops[@]}" \
      --out "$work/auroc-seed$s.json" >"$work/auroc-seed$s.log" 2>&1 &
    auroc_pids+=($!)
  fi
  pack
}
run_seed() {  # run_seed SEED CAP: paper_width.py run for one seed into seed$SEED/
  # shellcheck disable=SC2086
  timeout "$2" "$py" benchmarks/paper_width.py run --out "$work/seed$1" --seed "$1" \
    --epochs "$epochs" --configs $configs --precision "$precision" "${sets[@]}" \
    >"$work/seed$1.log" 2>&1
}
first_epoch_done() {  # first_epoch_done SEED PID: wait (at most 240 s) until the seed's
  # trained configs have logged epoch 1, or its run ended
  local c t
  for ((t = 0; t < 240; t++)); do
    kill -0 "$2" 2>/dev/null || return 0
    local all=1
    for c in $configs; do
      [ "$c" = random ] && continue
      grep -q "epoch 1/" "$work/seed$1/$c.log" 2>/dev/null || all=0
    done
    [ "$all" = 1 ] && return 0
    sleep 1
  done
}
if [ "$parallel" = 1 ]; then
  # Every seed runs at the same time, each started once the one before has compiled (its
  # first epoch logged): the later ones then find the compiled graphs in the cache (13 s
  # instead of 85 s on an H100) and the GPU, shared by all runs, stays busy.
  declare -A seed_pid
  started=()
  for s in $seeds; do
    left=$(( budget - ($(date +%s) - start) - 60 ))
    if [ "$left" -lt 60 ]; then
      echo "gpu_study.sh: ${left}s left of the ${budget}s budget: seed $s and later not started"
      break
    fi
    say "seed $s: paper_width.py run --epochs $epochs --configs $configs (cap ${left}s)"
    run_seed "$s" "$left" &
    seed_pid[$s]=$!
    started+=("$s")
    first_epoch_done "$s" "${seed_pid[$s]}"
  done
  for s in ${started[@]+"${started[@]}"}; do
    set +e
    wait "${seed_pid[$s]}"
    rc=$?
    set -e
    say "seed $s finished (exit $rc)"
    after_seed "$s" "$rc"
  done
else
  for s in $seeds; do
    left=$(( budget - ($(date +%s) - start) - 60 ))  # 60 s kept for the last AUROC and tables
    if [ "$left" -lt 60 ]; then
      echo "gpu_study.sh: ${left}s left of the ${budget}s budget: seed $s and later not started"
      break
    fi
    say "seed $s: paper_width.py run --epochs $epochs --configs $configs (cap ${left}s)"
    set +e
    run_seed "$s" "$left"
    rc=$?
    set -e
    after_seed "$s" "$rc"
  done
fi

say "waiting for variance_auroc.py"
for p in "${auroc_pids[@]}"; do wait "$p" || echo "a variance_auroc.py run failed: see auroc-seed*.log"; done
for f in "$work"/auroc-seed*.log; do
  if [ -f "$f" ]; then
    echo "-- $(basename "$f")"
    grep -E "^AUROC|^corr|decile" "$f" | head -n 16 || true
  fi
done

# -- 3. the seeds table ------------------------------------------------------------------------
if [ "${#done_seeds[@]}" -gt 0 ]; then
  say "paper_width.py seeds (${#done_seeds[@]} seed(s))"
  "$py" benchmarks/paper_width.py seeds "${done_seeds[@]}" --out "$work/seeds" \
    >"$work/seeds.log" 2>&1 || echo "paper_width.py seeds failed: see seeds.log"
  if [ -f "$work/seeds/seeds.md" ]; then
    cp "$work/seeds/seeds.md" "$out/seeds.md"
    cat "$out/seeds.md"
  fi
fi
pack
say "done; results in $out/study.tar.gz"

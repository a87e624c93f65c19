#!/usr/bin/env bash
# The GPU check of the engine, in one go (about 6.5 minutes on an H100; each step has a time cap):
#   1. benchmarks/throughput.py: VSSL, our BYOL and lightly's BYOL at width 64, batch 256 and 512,
#      bf16, channels-last, model work only ("none") and with the engine's batched augmentation
#      ("batched"); images/s, the augmentation's share, GPU busy % (nvidia-smi) and the ratios;
#      then our BYOL against lightly's as each library ships it ("shipped": ours with the
#      engine's batched augmentation, lightly's with its BYOLTransform in a DataLoader), batch 256;
#   2. `vssl pretrain` (the engine: compiled with CUDA graphs and channels-last on one CUDA
#      device by default) for 30 epochs on cifar10-mini with the paper profile, BYOL then VSSL,
#      at batch 256 then 512; prints steady-state images/s
#      (metrics.json's images_per_second_steady: every epoch but the first),
#      and the GPU busy % (nvidia-smi every 200 ms) over the epochs after the first;
#      metrics-*.json and history-*.csv (per-epoch loss, KL, spread) are copied out.
#
# Usage, from the repository root:
#   bash ../shared/device/prepare.sh   # once, on a machine with network: fills .whl/ and .devdata/
#   bash benchmarks/gpu_check.sh       # on the GPU machine (carry .whl and .devdata there)
#   bash benchmarks/gpu_check.sh --dry-run   # the same steps at toy sizes on the CPU (~1-2 min)
#   --with-profile: then 3. benchmarks/profile_step.py on BYOL and VSSL (where a step's time
#   goes: phases, device busy from the trace, top operators; ~1-2 more minutes on a GPU)
#   --with-tests: then 4. the CUDA-only tests (steps free of host syncs under
#   torch.cuda.set_sync_debug_mode("error"); the GPU augmentation against the CPU path; the
#   split path's device half without syncs, compiled = eager; ~2 min)
#   --with-epoch-costs: then 5. benchmarks/snapshot_cost.py (the host copy of the run's state
#   kept for a stop signal, old way and new, ~20 s) and benchmarks/epoch_costs.py at full
#   CIFAR-10's size (cifar10-mini tiled 12 times, BYOL, 7 epochs): each per-epoch event timed
#   after its first occurrence, its share of training time at the paper profile's cadence, and
#   the GPU busy % inside the training loops (~2 min)
#   --only-epoch-costs: step 5 alone (1 and 2 skipped; ~2.5 min with the start)
#   --with-folder: then 6. benchmarks/folder_augment.py, ImageNet-100's image-folder data path on
#   synthetic photo-sized JPEGs: per core, decode, the whole recipe per sample, and the split
#   path's worker part (decode, crop, flip); the photometric rest batched on the GPU; the
#   engine's split loader with one worker per core feeding the GPU (~1 min)
#   --only-folder: step 6 alone (1 and 2 skipped); combine with --only-epoch-costs for 5 and 6
#
# What the GPU machine lacks comes from the repository's folders (made by prepare.sh; see
# benchmarks/device_env.sh): .whl/*.whl (wheels) and .devdata/ (cifar10-mini).
# Results go to $GPU_CHECK_OUT (default: $OUT when set, the device tool's folder, else
# /tmp/vssl-gpu-check): throughput-*.json/.md, the runs' metrics-*.json, history-*.csv, logs and
# nvidia-smi samples. The device tool returns at most 8 files: point GPU_CHECK_OUT elsewhere and
# tar the folder into $OUT.
set -euo pipefail

dry=0
with_profile=0
with_tests=0
with_costs=0
with_folder=0
skip_main=0
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    --with-profile) with_profile=1 ;;
    --with-tests) with_tests=1 ;;
    --with-epoch-costs) with_costs=1 ;;
    --only-epoch-costs) with_costs=1; skip_main=1 ;;
    --with-folder) with_folder=1 ;;
    --only-folder) with_folder=1; skip_main=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^#/p}' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $a (use --dry-run, --with-profile, --with-tests," \
            "--with-epoch-costs, --only-epoch-costs, --with-folder, --only-folder)" >&2
       exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
py=${PYTHON:-python3}
out=${GPU_CHECK_OUT:-${OUT:-/tmp/vssl-gpu-check}}
mkdir -p "$out"
start=$(date +%s)
say() { printf '\n== %s (%ds)\n' "$*" "$(( $(date +%s) - start ))"; }
# nvidia-smi's utilisation every 200 ms into $1 while a step runs (benchmarks/gpu_busy.py reads it)
smi_pid=
busy_start() {
  smi_pid=
  if [ "$device" = cuda ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 200 \
      >"$1" 2>/dev/null &
    smi_pid=$!
  fi
}
busy_stop() {  # busy_stop SAMPLES LOG LABEL: stop sampling, print the busy % of the run in LOG
  [ -n "$smi_pid" ] && kill "$smi_pid" 2>/dev/null
  smi_pid=
  if [ -s "$1" ]; then "$py" benchmarks/gpu_busy.py "$1" "$2" --label "$3" || true; fi
}

# -- dependencies and data (.whl/, .devdata/) -------------------------------------------------
# shellcheck source=benchmarks/device_env.sh
source benchmarks/device_env.sh
methods="vssl byol-ours byol-lightly"
if ! "$py" -c "import lightly" 2>/dev/null; then
  echo "lightly is not installed: the throughput table leaves lightly's BYOL out"
  methods="vssl byol-ours"
fi

# -- sizes -------------------------------------------------------------------------------------
if [ "$dry" = 1 ]; then
  device=cpu
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  tp=(--device cpu --widths 4 --batch-sizes 16 32 --steps 1 --repeats 1 --warmup 1 --n-images 64)
  profile=smoke
  epochs=2
  run_sets=(--set backbone.width=4 --set data.train_subset=128 --set data.test_subset=64
            --set pretrain.batch_size=32 --set pretrain.knn_every=2)
  shipped=(--device cpu --widths 4 --batch-sizes 16 --steps 1 --repeats 1 --warmup 1 --n-images 64)
  budget_tp=300; budget_shipped=300; budget_run=300; budget_profile=300; budget_tests=300
  tile=2; budget_costs=300
  folder=(--images 8 --rounds 1 --loader-images 100 --batch 16 --workers 1); budget_folder=300
  engine_runs=(byol-b32 vssl-b32)
else
  device=cuda
  "$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  tp=(--device cuda --widths 64 --batch-sizes 256 512 --steps 15 --repeats 3 --warmup 3
      --n-images 4096 --bf16 --channels-last)
  profile=paper
  epochs=30
  run_sets=()
  shipped=(--device cuda --widths 64 --batch-sizes 256 --steps 10 --repeats 2 --warmup 2
           --n-images 4096 --bf16 --channels-last)
  budget_tp=140; budget_shipped=50; budget_run=150  # a run's first epoch compiles (cold cache)
  budget_profile=150  # compiles again; a first try with a 100 s cap ran out (2026-11-27)
  budget_tests=180  # 116 s on an H100
  tile=12; budget_costs=240  # compiles again, then 7 epochs of 51,020 images and their monitors
  folder=(--images 96 --rounds 3 --calls 5 --loader-images 16384 --batch 256 --workers "$(nproc)")
  budget_folder=150
  engine_runs=(byol-b256 vssl-b256 byol-b512 vssl-b512)
fi
"$py" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)"

if [ "$skip_main" = 0 ]; then  # steps 1 and 2 (not indented: step 2 holds a heredoc)
# -- 1. throughput table -----------------------------------------------------------------------
say "throughput ($device): $methods; augmentation none and batched"
# shellcheck disable=SC2086
timeout "$budget_tp" "$py" benchmarks/throughput.py "${tp[@]}" --methods $methods \
  --augs none batched --out "$out/throughput-$device.json" 2>&1 | tee "$out/throughput-$device.log" \
  || echo "throughput.py stopped (exit ${PIPESTATUS[0]}): see $out/throughput-$device.log"
if [[ " $methods " == *" byol-lightly "* ]]; then
  say "throughput ($device): our BYOL and lightly's, each with its own data path (shipped)"
  timeout "$budget_shipped" "$py" benchmarks/throughput.py "${shipped[@]}" \
    --methods byol-ours byol-lightly --augs shipped --out "$out/throughput-shipped-$device.json" \
    2>&1 | tee "$out/throughput-shipped-$device.log" \
    || echo "throughput.py (shipped) stopped (exit ${PIPESTATUS[0]}): see its log"
fi

# -- 2. the engine, 30 epochs on cifar10-mini --------------------------------------------------
tracking=(--no-mlflow)
if ! "$py" -m vssl pretrain --help 2>/dev/null | grep -q -- "--no-mlflow"; then
  if "$py" -c "from vssl.config import MlflowCfg; MlflowCfg.model_fields['enabled']" 2>/dev/null; then
    tracking=(--set mlflow.enabled=false)
  else  # an older checkout: a file store in a temporary folder (needs mlflow)
    tracking=()
    export MLFLOW_TRACKING_URI="file:${TMPDIR:-/tmp}/vssl-gpu-check-mlruns"
  fi
fi
for run in "${engine_runs[@]}"; do
  method=${run%-*}; batch=${run##*-b}
  say "vssl pretrain --profile $profile --dataset cifar10_mini --method $method --epochs $epochs" \
      "(batch $batch)"
  run_dir=${TMPDIR:-/tmp}/vssl-gpu-check-runs/$run
  rm -rf "$run_dir"
  busy_start "$out/busy-$run.csv"  # the GPU busy % of the steady epochs
  set +e
  timeout "$budget_run" "$py" -m vssl pretrain --params params.yaml --profile "$profile" \
    --dataset cifar10_mini --method "$method" --seed 0 --epochs "$epochs" --out "$run_dir" \
    "${tracking[@]}" "${run_sets[@]}" --set pretrain.log_every=100 \
    --set pretrain.batch_size="$batch" \
    >"$out/pretrain-$run.log" 2>&1
  rc=$?
  set -e
  busy_stop "$out/busy-$run.csv" "$out/pretrain-$run.log" "engine $run"
  tail -n 4 "$out/pretrain-$run.log"
  if [ "$rc" != 0 ] || [ ! -f "$run_dir/metrics.json" ]; then
    echo "vssl pretrain ($run) stopped with exit $rc: see $out/pretrain-$run.log"
    continue
  fi
  cp "$run_dir/metrics.json" "$out/metrics-$run.json"
  [ -f "$run_dir/history.csv" ] && cp "$run_dir/history.csv" "$out/history-$run.csv"
  "$py" - "$run_dir/metrics.json" "$run" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
def f(k, fmt="{:.0f}"):
    return "-" if m.get(k) is None else fmt.format(m[k])
print(f"engine {sys.argv[2]}: steady-state {f('images_per_second_steady')} img/s "
      f"(all epochs {f('images_per_second')}), {m['epochs']} epochs on {m['device']}, "
      f"mixed precision {m['mixed_precision']}, compile {m.get('compile')}, probe top-1 {f('online_probe_top1', '{:.1f}')}%, "
      f"kNN top-1 {f('knn_top1', '{:.1f}')}%, wall {f('wall_time_s')} s, "
      f"work between epochs {f('between_epoch_share', '{:.1%}')} of the training loops")
PY
done

fi  # steps 1 and 2

# -- 3. (--with-profile) the engine's step under torch.profiler -------------------------------
if [ "$with_profile" = 1 ]; then
  for method in byol vssl; do
    say "benchmarks/profile_step.py --profile $profile --method $method"
    timeout "$budget_profile" "$py" benchmarks/profile_step.py --profile "$profile" \
      --dataset cifar10_mini --method "$method" --warmup-epochs 1 --epochs 1 \
      --out "$out/profile-$method.json" "${run_sets[@]}" 2>&1 | grep -v '^USDT' | head -n 40 \
      || echo "profile_step.py ($method) stopped (exit ${PIPESTATUS[0]})"
  done
fi

# -- 4. (--with-tests) the CUDA-only tests (skipped on a machine without CUDA) -----------------
if [ "$with_tests" = 1 ]; then
  say "the CUDA-only tests"
  export VSSL_TEST_DATA=$VSSL_DATA_ROOT  # cifar10-mini is all they read
  timeout "$budget_tests" "$py" -m pytest -q -rs -p no:cacheprovider \
    tests/test_step_sync.py::test_cuda_steps_do_not_synchronise \
    tests/test_augment.py::test_gpu_path_on_cuda_matches_cpu_path \
    tests/test_snapshot.py::test_cuda_copies_are_pinned_asynchronous_and_see_exactly_the_updated_state \
    tests/test_split_augment.py::test_cuda_split_half_does_not_synchronise_and_compiles_to_the_same_views \
    tests/test_split_augment.py::test_cuda_split_epoch_prefetch_delivers_each_batchs_own_views \
    2>&1 \
    | tee "$out/pytest-cuda.log" | tail -n 8 || echo "the CUDA tests failed or stopped: see $out/pytest-cuda.log"
fi

# -- 5. (--with-epoch-costs) the work between epochs at full CIFAR-10's size ------------------
if [ "$with_costs" = 1 ]; then
  say "benchmarks/snapshot_cost.py --profile $profile (the state kept for a stop signal)"
  timeout 120 "$py" benchmarks/snapshot_cost.py --profile "$profile" "${run_sets[@]}" \
    --out "$out/snapshot-cost.json" 2>&1 | tee "$out/snapshot-cost.log" | tail -n 8 \
    || echo "snapshot_cost.py stopped: see $out/snapshot-cost.log"
  say "benchmarks/epoch_costs.py --profile $profile --tile $tile (full CIFAR-10's size)"
  busy_start "$out/busy-epoch-costs.csv"
  timeout "$budget_costs" "$py" benchmarks/epoch_costs.py --profile "$profile" --method byol \
    --epochs 7 --tile "$tile" "${run_sets[@]}" --set pretrain.log_every=100 2>&1 \
    | tee "$out/epoch-costs.log" | tail -n 12 || echo "epoch_costs.py stopped: see $out/epoch-costs.log"
  # epochs of 51,020 images last seconds: long enough for the busy % inside the loops
  busy_stop "$out/busy-epoch-costs.csv" "$out/epoch-costs.log" "engine byol, CIFAR-10's size"
fi

# -- 6. (--with-folder) ImageNet-100's image-folder data path --------------------------------
if [ "$with_folder" = 1 ]; then
  say "benchmarks/folder_augment.py ${folder[*]} (synthetic 375x500 JPEGs)"
  timeout "$budget_folder" "$py" benchmarks/folder_augment.py "${folder[@]}" \
    --out "$out/folder-augment-$device.json" 2>&1 | tee "$out/folder-augment-$device.log" \
    | tail -n 9 || echo "folder_augment.py stopped: see $out/folder-augment-$device.log"
fi

say "summary"
[ -f "$out/throughput-$device.md" ] && cat "$out/throughput-$device.md"
[ -f "$out/throughput-shipped-$device.md" ] && cat "$out/throughput-shipped-$device.md"
for run in "${engine_runs[@]}"; do
  [ -f "$out/metrics-$run.json" ] && "$py" -c "
import json; m = json.load(open('$out/metrics-$run.json'))
print('$run engine steady-state images/s:', m.get('images_per_second_steady'), '(' + str(m.get('compile')) + ')')"
done
say "done; results in $out"

#!/usr/bin/env bash
# One-off device script (not committed): profiles of the compiled and eager steps (VSSL, BYOL),
# the engine at batch 512, and CUDA graphs (compile_mode=reduce-overhead).
set -u
O=${OUT:-/tmp/o}; R=/tmp/gs; rm -rf $R; mkdir -p $R $O
if ! python3 -c "import kornia, pydantic, lightly" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD VSSL_DATA_ROOT=$PWD/.devdata PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [ "${DRY:-0}" = 1 ]; then
  sets=(--set backbone.width=4 --set data.train_subset=128 --set data.test_subset=64 --set pretrain.batch_size=32 --set data.num_workers=0)
  ep=3; big=64; f=1
else
  sets=(); ep=20; big=512; f=1
fi
start=$(date +%s)
t() { echo; echo "== $* ($(( $(date +%s) - start ))s)"; }
pack() { tar czf $O/gs.tgz -C /tmp gs; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $R/smi.txt
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__)" | tee -a $R/smi.txt
prof() {
  local name=$1 cap=$2; shift 2
  t "profile $name"
  timeout $cap python3 benchmarks/profile_step.py --profile paper --dataset cifar10_mini "$@" "${sets[@]}" \
    --out $R/profile-$name.json > $R/profile-$name.log 2>&1
  echo "rc=$?"; grep -v '^USDT' $R/profile-$name.log | head -n 22; pack
}
eng() {
  local name=$1 cap=$2; shift 2
  t "engine $name"
  local sp=
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 200 > $R/busy-$name.csv 2>/dev/null &
    sp=$!
  fi
  timeout $cap python3 -m vssl pretrain --params params.yaml --profile paper --dataset cifar10_mini \
    --seed 0 --epochs $ep --out /tmp/run-$name --overwrite --no-mlflow --no-progress --set pretrain.log_every=100 "$@" "${sets[@]}" \
    > $R/pretrain-$name.log 2>&1
  echo "rc=$?"
  [ -n "$sp" ] && kill $sp 2>/dev/null
  [ -s $R/busy-$name.csv ] && python3 benchmarks/gpu_busy.py $R/busy-$name.csv $R/pretrain-$name.log --label $name
  tail -n 3 $R/pretrain-$name.log
  cp /tmp/run-$name/metrics.json $R/metrics-$name.json 2>/dev/null
  cp /tmp/run-$name/history.csv $R/history-$name.csv 2>/dev/null
  python3 -c "
import json; m = json.load(open('$R/metrics-$name.json'))
print('$name', 'steady', m.get('images_per_second_steady'), 'all', m.get('images_per_second'), 'between', m.get('between_epoch_share'), 'wall', m.get('wall_time_s'))" 2>/dev/null
  pack
}
if [ "${PART:-1}" = 2 ]; then
eng vssl-cudagraphs 100 --method vssl --set pretrain.compile_mode=reduce-overhead
eng byol-cudagraphs-b$big 90 --method byol --set pretrain.compile_mode=reduce-overhead --set pretrain.batch_size=$big
eng vssl-cudagraphs-b$big 90 --method vssl --set pretrain.compile_mode=reduce-overhead --set pretrain.batch_size=$big
t done; exit 0
fi
prof vssl-compiled 140 --method vssl
prof byol-compiled 125 --method byol
eng byol-b$big 100 --method byol --set pretrain.batch_size=$big
eng byol-cudagraphs 110 --method byol --set pretrain.compile_mode=reduce-overhead
prof vssl-eager 40 --method vssl --set pretrain.compile=false
prof byol-eager 40 --method byol --set pretrain.compile=false
t done

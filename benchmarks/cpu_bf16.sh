#!/usr/bin/env bash
# bf16 against fp32 on the CPU: images/s of the engine's step (benchmarks/throughput.py: VSSL and
# our BYOL, batched augmentation, channels-last, batch 256) at widths 16 and 64, fp32 and bf16
# alternating in each round, so each round's ratio compares neighbouring measurements.
# bf16 autocast pays on CPUs with AMX (Intel Sapphire Rapids and later); elsewhere it may be
# slower. `pretrain.mixed_precision: bf16` turns it on in `vssl pretrain` (`auto` keeps fp32 on
# the CPU, so results do not depend on which CPU ran them).
#
# Usage, from the repository root: bash benchmarks/cpu_bf16.sh [OUT_DIR] [ROUNDS]
#   (defaults /tmp/vssl-cpu-bf16 and 2; ~4 min on 2 cores). Prints the per-round ratios (and
#   writes them to OUT_DIR/summary.md); each invocation's JSON and log stay in OUT_DIR.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-/tmp/vssl-cpu-bf16}
rounds=${2:-2}
py=${PYTHON:-python3}
mkdir -p "$out"
grep -qw amx_bf16 /proc/cpuinfo 2>/dev/null || echo "note: this CPU reports no AMX (amx_bf16): expect little from bf16"
for ((r = 0; r < rounds; r++)); do
  for p in no-bf16 bf16; do
    for w in 16 64; do
      steps=$([ "$w" = 16 ] && echo 3 || echo 2)
      "$py" benchmarks/throughput.py --device cpu --widths "$w" --batch-sizes 256 \
        --methods vssl byol-ours --augs batched --steps "$steps" --repeats 1 --warmup 1 \
        --channels-last "--$p" --out "$out/w$w-$p-r$r.json" >"$out/w$w-$p-r$r.log" 2>&1
    done
  done
done
"$py" - "$out" "$rounds" <<'PY' | tee "$out/summary.md"
import json
import sys

out, rounds = sys.argv[1], int(sys.argv[2])
print("| method | width | fp32 img/s per round | bf16 img/s per round | bf16 / fp32 per round |")
print("|---|---:|---|---|---|")
for w in (16, 64):
    for m in ("vssl", "byol-ours"):
        ips = {p: [] for p in ("no-bf16", "bf16")}
        for r in range(rounds):
            for p in ips:
                res = json.load(open(f"{out}/w{w}-{p}-r{r}.json"))
                row = next(x for x in res["rows"] if x["method"] == m)
                ips[p].append(row["images_per_s"]["median"])
        ratio = [b / f for f, b in zip(ips["no-bf16"], ips["bf16"], strict=True)]
        fmt = lambda v, d=1: ", ".join(f"{x:.{d}f}" for x in v)  # noqa: E731
        print(f"| {m} | {w} | {fmt(ips['no-bf16'])} | {fmt(ips['bf16'])} | {fmt(ratio, 2)} |")
PY

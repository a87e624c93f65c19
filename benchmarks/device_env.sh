# Sourced by benchmarks/gpu_check.sh and benchmarks/gpu_study.sh (from the repository root, with
# $py set): makes the project importable on a GPU machine without network and points
# VSSL_DATA_ROOT at cifar10-mini.
#   .whl/*.whl   wheels (kornia, pydantic, lightly, ...) that `bash ../shared/device/prepare.sh`
#                downloads; installed into a temporary folder when one of those packages cannot
#                be imported;
#   .devdata/    cifar10-mini; else ../shared/data or shared/data beside/inside the checkout,
#                else $VSSL_DATA_ROOT.
# Exits with status 3 when either is missing.

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import kornia, pydantic, lightly" 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    echo "installing the carried wheels (.whl/)"
    site=${TMPDIR:-/tmp}/vssl-site
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$site" .whl/*.whl
    export PYTHONPATH="$site:$PYTHONPATH"
  fi
fi
if ! "$py" -c "import kornia, pydantic" 2>/dev/null; then
  echo "$(basename "$0"): kornia/pydantic are missing and no .whl/ to install them from;" \
       "run bash ../shared/device/prepare.sh first" >&2
  exit 3
fi

for d in "$PWD/.devdata" "$PWD/../shared/data" "$PWD/shared/data" "${VSSL_DATA_ROOT:-}"; do
  if [ -n "$d" ] && [ -f "$d/cifar10-mini/train.npz" ]; then
    VSSL_DATA_ROOT=$(cd "$d" && pwd)
    export VSSL_DATA_ROOT
    break
  fi
done
if [ ! -f "${VSSL_DATA_ROOT:-/nonexistent}/cifar10-mini/train.npz" ]; then
  echo "$(basename "$0"): cifar10-mini not found (.devdata/, ../shared/data, shared/data)" >&2
  exit 3
fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg

#!/usr/bin/env bash
# The GPU check of issue 20 (bench/gpu_check.py): CUDA in use, GPU vs CPU parity per served model,
# throughput in process and through HTTP on the GPU, then the CPU provider with 1, 4 and 16 workers.
# Results: OUT/gpu_check.json and OUT/gpu_check.md (docs/benchmarks.md's GPU section takes them).
#
#   scripts/gpu_check.sh --dry-run [OUT]   anywhere, no GPU: the CPU provider stands in, short runs
#   scripts/gpu_check.sh [OUT]             on the GPU machine (OUT default: $OUT, else gpu-results),
#                                          with .gpu-bundle/ (scripts/gpu_bundle.sh) carried and any
#                                          wheel parts sent ahead into /tmp/gpu-parts (docs/gpu.md)
# Budget: ~4 minutes on the GPU machine (10 s per rate and load run).
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
if [[ ${1:-} == --dry-run ]]; then
  exec "${PYTHON:-.venv/bin/python}" -m bench.gpu_check --dry-run --out "${2:-/tmp/gpu-check-dry}"
fi
out=${1:-${OUT:-gpu-results}}
bundle=.gpu-bundle
parts=/tmp/gpu-parts
if [[ ! -f $bundle/SHA256SUMS ]]; then
  echo "gpu_check: no $bundle here: run scripts/gpu_bundle.sh and carry .gpu-bundle (docs/gpu.md)" >&2
  exit 2
fi
mkdir -p "$parts"
for part in "$bundle"/parts/*.part-*; do cp "$part" "$parts"/; done
# Join the parts of each large wheel (sent over several calls) back into the wheel, and check every
# wheel against the checksums gpu_bundle.sh wrote: a missing or broken part stops here, by name.
for first in "$parts"/*.part-00; do
  cat "${first%.part-00}".part-* >"${first%.part-00}"
done
for wheel in "$parts"/*.whl; do cp "$wheel" "$bundle"/wheels/; done
(cd "$bundle/wheels" && sha256sum --check --quiet ../SHA256SUMS)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "$bundle"/wheels/*.whl
# onnxruntime-gpu (in /tmp/site, ahead of the image's CPU onnxruntime) loads CUDA 13 and cuDNN from
# the nvidia-* packages the image's torch installed: their lib folders go on the loader's path, for
# this process and the ae-serve workers it starts.
nvidia_libs=$(python3 -c 'import glob, os, sys; print(":".join(d for p in sys.path for d in glob.glob(os.path.join(p, "nvidia", "*", "lib"))))')
export PYTHONPATH=/tmp/site:$PWD
export LD_LIBRARY_PATH=$PWD/$bundle/lib:$nvidia_libs:${LD_LIBRARY_PATH:-}
export PATH=$PWD/$bundle/bin:$PATH
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 -c 'import onnxruntime as ort; print("onnxruntime", ort.__version__, ort.get_available_providers())'
exec python3 -m bench.gpu_check --out "$out"

#!/usr/bin/env bash
# Train the GPU-sized models in one lease of a GPU machine: the five codec levels and the wide denoiser run
# in parallel on the one GPU, each for a fixed time budget, then each run is packed (weights-only best
# checkpoint, metrics, plots, log) into $OUT for `ae-train export` on any machine.
# Usage (repository root, python3 with torch): scripts/gpu_train.sh DATA_DIR SECONDS [--set k=v ...]
# The machine has no network: pydantic (used by the data code) is installed from wheels in .whl/, and
# the images travel as a copy in .gpu-data/ (both git-ignored). What the defaults were trained with:
#   cp -r ../shared/datasets/images/bsds400 .gpu-data/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     -d .whl pydantic pydantic_core annotated-types typing-inspection
#   OUT=$OUT scripts/gpu_train.sh .gpu-data/bsds400 480      # then, here: ae-train export runs/NAME ...
set -uo pipefail
data=${1:?image folder}
budget=${2:?seconds of training per run}
shift 2
out=${OUT:-gpu-out}
mkdir -p "$out" runs
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  python3 -c "import torch, onnxruntime as ort; print('torch', torch.__version__, torch.cuda.is_available())" 2>&1
  python3 -c "import onnxruntime as ort; print('onnxruntime', ort.__version__, ort.get_available_providers())" 2>&1
} >"$out/machine.txt"

# RUNS picks a subset, e.g. RUNS="image-denoise-full" (default: the six the committed models came from).
read -r -a selected <<<"${RUNS:-image-codec-q1 image-codec-q2 image-codec-q3 image-codec-q4 image-codec-q5 image-denoise}"
codec_lambdas=(0.0018 0.0035 0.0067 0.0130 0.0250)
pids=()
for name in "${selected[@]}"; do
  case $name in
    image-codec-q[1-5])
      q=${name#image-codec-q}
      python3 -m training.cli fit configs/codec.toml --run-dir "runs/$name" --no-progress \
        --set "data.path=\"$data\"" --set "model.lmbda=${codec_lambdas[$((q - 1))]}" \
        --set "optim.time_budget_s=$budget" "$@" >"runs/$name.log" 2>&1 &
      ;;
    image-denoise)
      python3 -m training.cli fit configs/image-denoise-wide.toml --run-dir runs/image-denoise --no-progress \
        --set "data.path=\"$data\"" --set "optim.time_budget_s=$budget" "$@" >runs/image-denoise.log 2>&1 &
      ;;
    image-denoise-full)  # the full-resolution denoiser, not yet trained (configs/image-denoise-gpu.toml)
      python3 -m training.cli fit configs/image-denoise-gpu.toml --run-dir runs/image-denoise-full --no-progress \
        --set "data.path=\"$data\"" --set "optim.time_budget_s=$budget" "$@" >runs/image-denoise-full.log 2>&1 &
      ;;
    *) echo "unknown run: $name" >&2; exit 2 ;;
  esac
  pids+=($!)
done

# GPU utilisation while the runs share the GPU (time-sliced between processes).
(while sleep 30; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done) \
  >>"$out/machine.txt" 2>&1 &
sampler=$!
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
kill "$sampler" 2>/dev/null

for name in "${selected[@]}"; do
  run=runs/$name
  # What comes back from the machine is capped (64 MiB in all): keep the best weights only, without the
  # optimizer state, and large weight tensors as fp16 (relative rounding 5e-4; biases, GDN and density
  # parameters stay fp32). Loading casts them back to fp32; every number reported is measured after that.
  python3 - "$run" <<'PY' || status=1
import sys
from pathlib import Path

import torch

path = Path(sys.argv[1]) / "best.pt"
state = torch.load(path, map_location="cpu", weights_only=False)
for key in ("optimizer", "scheduler"):
    state.pop(key, None)
state["model"] = {
    k: v.half() if v.is_floating_point() and v.numel() > 4096 and k.endswith("weight") else v
    for k, v in state["model"].items()
}
state["weights_note"] = "large weight tensors stored as fp16 for transfer"
torch.save(state, path)
PY
  rm -f "$run/checkpoint.pt"
  tar czf "$out/$name.tgz" -C runs "$name" "$name.log"
done
ls -la "$out"
for name in "${selected[@]}"; do
  echo "== $name"
  grep '"val"' "runs/$name/metrics.jsonl" | tail -n 4
  grep -o '"steps": [0-9]*' "runs/$name/summary.json"
done
exit $status

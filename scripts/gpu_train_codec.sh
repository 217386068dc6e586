#!/usr/bin/env bash
# Train the variable-rate codec (configs/hyperprior-codec.toml) on one GPU within 10 minutes, then pack the
# best checkpoint's weights (fp16 safetensors, training/weights_file.py), metrics, summary and log into $OUT.
# Usage (repository root, python3 with torch):
#   OUT=gpu-out scripts/gpu_train_codec.sh [--tiny] DATA_DIR [SECONDS] [--set k=v ...]
# SECONDS (default 540) is the training budget: with start-up, the untrained validation and the packing
# the whole script ends within 10 minutes. --tiny (or TINY=1): 20 steps of a small model on the CPU,
# no --init-from, to check the recipe without a GPU (tests/training/test_codec_recipes.py).
# The machine has no network: bring the images and the wheels it lacks, both git-ignored:
#   cp -r ../shared/datasets/images/bsds400 .gpu-data/
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     -d .whl pydantic pydantic_core annotated-types typing-inspection safetensors==0.8.0
#   OUT=$OUT scripts/gpu_train_codec.sh .gpu-data/bsds400 540
# Then, here: ae-train fit --init-from gpu-out/weights.safetensors ..., or ae-train export of the run.
# Environment: RUN_DIR (default runs/hyperprior-codec), PYTHON (default python3).
set -uo pipefail
tiny=${TINY:-0}
if [[ ${1:-} == --tiny ]]; then tiny=1; shift; fi
data=${1:?image folder}
shift
budget=540
if [[ ${1:-} =~ ^[0-9]+$ ]]; then budget=$1; shift; fi
out=${OUT:-gpu-out}
run=${RUN_DIR:-runs/hyperprior-codec}
python=${PYTHON:-python3}
mkdir -p "$out" "$(dirname "$run")"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
# shellcheck source=scripts/codec_start.sh
source "$(dirname "$0")/codec_start.sh"

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  "$python" -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())" 2>&1
} >"$out/machine.txt"

# Precision: fp32, as the config says (optim.mixed_precision = false); cuDNN convolutions run as TF32 by
# default on Ampere and later, which is most of what bf16 would buy. bf16 autocast (fit's only mixed mode)
# is not stable enough here even though the model computes the likelihoods in fp32: y, the means and the
# noisy y_hat come out of bf16 convolutions, and at the high-rate levels |y| reaches tens, where bf16's
# spacing (0.125 at 16..32, 0.25 at 32..64) is a large fraction of the quantization bin the rate is
# measured on, so the rate term is biased exactly where the gains are largest. To try it anyway, append
# --set optim.mixed_precision=true.
settings=(--set "data.path=\"$data\"" --set "optim.time_budget_s=$budget")
if ((tiny)); then
  settings+=(--set 'optim.device="cpu"' --set optim.steps=20 --set optim.val_every=10 --set optim.checkpoint_every=10
    --set optim.warmup_steps=0 --set optim.batch_size=2 --set optim.num_workers=0 --set data.crop_size=64
    --set model.hidden=16 --set model.latent_channels=16 --set model.hyper_channels=8)
else
  start=$(served_codec_start)
  echo "starting from $start" >>"$out/machine.txt"
  settings+=(--init-from "$start")
fi

# GPU utilisation while training (nothing on a machine without nvidia-smi).
(while sleep 30; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader || break; done) \
  >>"$out/machine.txt" 2>&1 &
sampler=$!
"$python" -m training.cli fit configs/hyperprior-codec.toml --run-dir "$run" --no-progress "${settings[@]}" "$@" \
  >"$run.log" 2>&1
status=$?
kill "$sampler" 2>/dev/null

# Weights only (fp16, ~14 MB at full size): the optimizer state stays behind, what comes back is capped.
if [[ -f $run/best.pt ]]; then
  "$python" -m training.weights_file snapshot "$run/best.pt" "$out/weights.safetensors" >/dev/null || status=1
fi
for file in "$run/metrics.jsonl" "$run/summary.json" "$run/config.json"; do
  if [[ -f $file ]]; then cp "$file" "$out/"; else status=1; fi
done
cp "$run.log" "$out/train.log"
ls -la "$out"
grep '"val"' "$run/metrics.jsonl" 2>/dev/null | tail -n 4
exit $status

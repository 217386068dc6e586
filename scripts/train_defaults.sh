#!/usr/bin/env bash
# Train and export the committed default models (reproduces models/*). CPU: about two hours in all.
# Usage: scripts/train_defaults.sh [model ...]   (default: every model below)
set -euo pipefail
cd "$(dirname "$0")/.."
AE_TRAIN=${AE_TRAIN:-ae-train}
MODELS_DIR=${MODELS_DIR:-models}

train() {  # train NAME CONFIG [export flags...]
  local name=$1 config=$2
  shift 2
  "$AE_TRAIN" fit "$config" --run-dir "runs/$name" --no-progress
  "$AE_TRAIN" export "runs/$name" --name "$name" --models-dir "$MODELS_DIR" "$@"
}

# The codec ladder: one base run at a middle lambda, then a short fine-tune per quality level.
CODEC_LAMBDAS=(0.0018 0.0035 0.0067 0.0130)
codec_ladder() {
  "$AE_TRAIN" fit configs/codec.toml --run-dir runs/codec-base --no-progress
  for q in 1 2 3 4; do
    "$AE_TRAIN" fit configs/codec.toml --run-dir "runs/image-codec-q$q" --init-from runs/codec-base --no-progress \
      --set "model.lmbda=${CODEC_LAMBDAS[$((q - 1))]}" --set optim.steps=300 --set optim.lr=5e-4 --set optim.val_every=150
    "$AE_TRAIN" export "runs/image-codec-q$q" --name "image-codec-q$q" --models-dir "$MODELS_DIR" --task compress
  done
}

selected=("${@:-ecg-embed ecg-anomaly image-conv image-denoise image-codec}")
for name in ${selected[@]}; do
  case $name in
    ecg-embed) train ecg-embed configs/ecg-embed.toml --task embed --max-length 2000 ;;
    ecg-anomaly) train ecg-anomaly configs/ecg-anomaly.toml --task reconstruct --max-length 2000 ;;
    image-conv) train image-conv configs/image-conv.toml --task reconstruct ;;
    image-denoise) train image-denoise configs/image-denoise.toml --task denoise ;;
    image-codec) codec_ladder ;;
    *) echo "unknown default model: $name" >&2; exit 2 ;;
  esac
done

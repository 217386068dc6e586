#!/usr/bin/env bash
# Train and export the committed default models (reproduces models/*). CPU: about an hour in all.
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

selected=("${@:-ecg-embed ecg-anomaly image-conv image-denoise}")
for name in ${selected[@]}; do
  case $name in
    ecg-embed) train ecg-embed configs/ecg-embed.toml --task embed --max-length 2000 ;;
    ecg-anomaly) train ecg-anomaly configs/ecg-anomaly.toml --task reconstruct --max-length 2000 ;;
    image-conv) train image-conv configs/image-conv.toml --task reconstruct ;;
    image-denoise) train image-denoise configs/image-denoise.toml --task denoise ;;
    *) echo "unknown default model: $name" >&2; exit 2 ;;
  esac
done

#!/usr/bin/env bash
# Train and export the committed default models and the seed examples (reproduces models/*).
# Usage: scripts/train_defaults.sh [model ...]   (default: every model below)
# The sequence, image-conv and image-denoise configs are CPU-sized (minutes each). The codec levels
# are GPU-sized (no step limit that a CPU reaches): the committed ones came from scripts/gpu_train.sh
# (8 minutes on one H100, then `ae-train export` here); on a CPU give them a budget, for example
# FIT_ARGS="--set optim.time_budget_s=1800" scripts/train_defaults.sh image-codec
set -euo pipefail
cd "$(dirname "$0")/.."
AE_TRAIN=${AE_TRAIN:-ae-train}
# Extra fit arguments for every run, e.g. FIT_ARGS="--set optim.time_budget_s=600".
read -r -a FIT_ARGS <<<"${FIT_ARGS:-}"
MODELS_DIR=${MODELS_DIR:-models}

train() {  # train NAME CONFIG [export flags...]
  local name=$1 config=$2
  shift 2
  "$AE_TRAIN" fit "$config" --run-dir "runs/$name" --no-progress "${FIT_ARGS[@]}"
  "$AE_TRAIN" export "runs/$name" --name "$name" --models-dir "$MODELS_DIR" "$@"
}

# The codec ladder: one run per quality level, each from scratch at its own lambda (CompressAI's
# lambdas). The committed levels were trained on one GPU with a time budget (scripts/gpu_train.sh runs
# them and the denoiser there); on a CPU pass e.g. `--set optim.steps=3000 --set data.crop_size=128`.
CODEC_LAMBDAS=(0.0018 0.0035 0.0067 0.0130 0.0250)
codec_ladder() {
  for q in 1 2 3 4 5; do
    "$AE_TRAIN" fit configs/codec.toml --run-dir "runs/image-codec-q$q" --no-progress \
      --set "model.lmbda=${CODEC_LAMBDAS[$((q - 1))]}" "${FIT_ARGS[@]}"
    "$AE_TRAIN" export "runs/image-codec-q$q" --name "image-codec-q$q" --models-dir "$MODELS_DIR" --task compress
  done
}

selected=("${@:-ecg-embed ecg-anomaly image-conv image-denoise image-codec seed-conv seed-lstm}")
for name in ${selected[@]}; do
  case $name in
    ecg-embed) train ecg-embed configs/ecg-embed.toml --task embed --max-length 2000 ;;
    ecg-anomaly) train ecg-anomaly configs/ecg-anomaly.toml --task reconstruct --max-length 2000 ;;
    image-conv)  # version 2: the fast config, 3000 steps then 6000 more from those weights
      "$AE_TRAIN" fit configs/image-conv-fast.toml --run-dir runs/image-conv-fast --no-progress "${FIT_ARGS[@]}"
      "$AE_TRAIN" fit configs/image-conv-fast.toml --run-dir runs/image-conv-fast2 --init-from runs/image-conv-fast \
        --set optim.steps=6000 --set optim.lr=1e-3 --set optim.warmup_steps=100 --set optim.val_every=500 \
        --no-progress "${FIT_ARGS[@]}"
      "$AE_TRAIN" export runs/image-conv-fast2 --name image-conv --models-dir "$MODELS_DIR" --task reconstruct
      ;;
    image-denoise)  # version 2: the v1 run (3000 steps), then 70 minutes more on 8-bit clipped noise
      "$AE_TRAIN" fit configs/image-denoise.toml --run-dir runs/image-denoise --no-progress "${FIT_ARGS[@]}"
      "$AE_TRAIN" fit configs/image-denoise.toml --run-dir runs/image-denoise-v2 --init-from runs/image-denoise \
        --set data.quantize_noisy=true --set data.crop_size=64 --set optim.steps=10000 --set optim.lr=5e-4 \
        --set optim.warmup_steps=100 --set optim.time_budget_s=4200 --set optim.val_every=1000 \
        --set optim.checkpoint_every=1000 --no-progress "${FIT_ARGS[@]}"
      "$AE_TRAIN" export runs/image-denoise-v2 --name image-denoise --models-dir "$MODELS_DIR" --task denoise
      ;;
    image-codec) codec_ladder ;;
    # The seed's own designs, kept as small examples (each config has a 20-minute time budget).
    seed-conv) train seed-conv configs/seed-conv.toml --task reconstruct ;;
    seed-lstm) train seed-lstm configs/seed-lstm.toml --task embed --max-length 2000 ;;
    *) echo "unknown default model: $name" >&2; exit 2 ;;
  esac
done

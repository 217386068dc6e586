#!/usr/bin/env bash
# Train the gray variants of the served image models and export them as new versions (issue 21).
# Usage: scripts/train_gray_variants.sh [denoise] [codec] [export]   (default: denoise codec)
#
# Each variant starts from its RGB model's weights, converted to one channel (training/init_weights.py),
# so it begins exactly where the RGB model stands on a gray image and only has to adapt:
# - denoise: configs/image-denoise-gray.toml from image-denoise version 2 (a 75-minute CPU budget);
# - codec, per level: the density model alone first (the graphs carry no copy of it, so it starts
#   fresh: `optim.train_only = ["density"]`, high learning rate), then everything at the level's lambda.
# `export` writes the new versions: image-denoise v4 (v2 + gray) and v5 (v3 + gray, 4-view ensemble),
# image-codec-q1..q4 v4 (v3 + gray) and q5 v2 (v1 + gray). CPU numbers: docs/evaluation and the cards.
set -euo pipefail
cd "$(dirname "$0")/.."
AE_TRAIN=${AE_TRAIN:-ae-train}
read -r -a FIT_ARGS <<<"${FIT_ARGS:-}"
MODELS_DIR=${MODELS_DIR:-models}
DENSITY_STEPS=${DENSITY_STEPS:-800}
JOINT_STEPS=${JOINT_STEPS:-500}
# The RGB version each codec level's gray variant joins.
declare -A CODEC_RGB=([1]=3 [2]=3 [3]=3 [4]=3 [5]=1)

lambda_of() {  # the lambda an exported codec version was trained at
  python -c "import json,sys; print(json.load(open(sys.argv[1]))['training']['config']['model']['lmbda'])" "$1/model.json"
}

denoise() {
  "$AE_TRAIN" fit configs/image-denoise-gray.toml --init-from "$MODELS_DIR/image-denoise/2" \
    --run-dir runs/image-denoise-gray --no-progress "${FIT_ARGS[@]}"
}

codec() {
  for q in 1 2 3 4 5; do
    local rgb="$MODELS_DIR/image-codec-q$q/${CODEC_RGB[$q]}"
    local lmbda
    lmbda=$(lambda_of "$rgb")
    "$AE_TRAIN" fit configs/codec-gray.toml --init-from "$rgb" --run-dir "runs/codec-gray-q$q-density" \
      --no-progress --set "model.lmbda=$lmbda" --set "optim.steps=$DENSITY_STEPS" --set optim.lr=0.01 \
      --set 'optim.train_only=["density"]' --set optim.warmup_steps=0 "${FIT_ARGS[@]}"
    "$AE_TRAIN" fit configs/codec-gray.toml --init-from "runs/codec-gray-q$q-density" --run-dir "runs/codec-gray-q$q" \
      --no-progress --set "model.lmbda=$lmbda" --set "optim.steps=$JOINT_STEPS" "${FIT_ARGS[@]}"
  done
}

export_all() {
  "$AE_TRAIN" export runs/image-denoise-gray --gray-of "$MODELS_DIR/image-denoise/2" --models-dir "$MODELS_DIR" --version 4
  "$AE_TRAIN" export runs/image-denoise-gray --gray-of "$MODELS_DIR/image-denoise/3" --models-dir "$MODELS_DIR" \
    --version 5 --self-ensemble 4
  for q in 1 2 3 4 5; do
    "$AE_TRAIN" export "runs/codec-gray-q$q" --gray-of "$MODELS_DIR/image-codec-q$q/${CODEC_RGB[$q]}" --models-dir "$MODELS_DIR"
  done
}

for step in "${@:-denoise codec}"; do
  for name in $step; do
    case $name in
      denoise) denoise ;;
      codec) codec ;;
      export) export_all ;;
      *) echo "unknown step $name (denoise, codec, export)" >&2; exit 2 ;;
    esac
  done
done

#!/usr/bin/env bash
# Train the variable-rate codec (configs/hyperprior-codec.toml) on the CPU for hours, at the lowest priority,
# and keep committable weights of it along the way. Usage (repository root), e.g. for 8 hours:
#   nohup scripts/train_codec_cpu.sh runs/hyperprior-codec-cpu 28800 [--set k=v ...] >/dev/null 2>&1 &
#   tail -f runs/hyperprior-codec-cpu.log
# Where it starts:
#   1. RUN_DIR/checkpoint.pt exists: --resume (same optimizer, schedule and step count).
#   2. else the committed snapshot training-snapshots/hyperprior-codec.safetensors: a run that outlived a
#      working period goes on from it on a fresh machine (fresh optimizer and schedule: warm-up again);
#   3. else the served default's weights.safetensors, else models/image-codec-q3/3 (scripts/codec_start.sh).
# Every SNAPSHOT_EVERY_S seconds (default 1800; 0: only at the end) the latest checkpoint is written as
# fp16 weights to the snapshot file. It is tracked: commit it a few times over a long run (not every
# snapshot: each is ~14 MB of history).
# Environment: OMP_NUM_THREADS (default 2), SNAPSHOT (the snapshot file), SNAPSHOT_EVERY_S, PYTHON.
set -uo pipefail
run=${1:?run folder}
budget=${2:?seconds of training}
shift 2
snapshot=${SNAPSHOT:-training-snapshots/hyperprior-codec.safetensors}
every=${SNAPSHOT_EVERY_S:-1800}
python=${PYTHON:-python3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export PYTHONUNBUFFERED=1
# shellcheck source=scripts/codec_start.sh
source "$(dirname "$0")/codec_start.sh"
mkdir -p "$(dirname "$run")"
log=$run.log

if [[ -f $run/checkpoint.pt ]]; then
  start=(--resume)
elif [[ -f $snapshot ]]; then
  start=(--init-from "$snapshot")
else
  start=(--init-from "$(served_codec_start)")
fi
echo "$(date -u) start: ${start[*]}; budget ${budget}s; ${OMP_NUM_THREADS} threads" >>"$log"

# Sized for two cores: 192-pixel crops (12x12 latents, still several hyper-latent positions), batch 6, a
# lower peak rate than the GPU's since it starts from trained weights; workers would only take the cores
# the convolutions need. Validation and checkpoints every 250 steps (~15 minutes) keep snapshots fresh.
settings=(--set 'optim.device="cpu"' --set optim.num_workers=0 --set data.crop_size=192 --set optim.batch_size=6
  --set optim.lr=2e-4 --set optim.val_every=250 --set optim.checkpoint_every=250 --set "optim.time_budget_s=$budget")

write_snapshot() {
  [[ -f $run/checkpoint.pt ]] || return 0
  if nice -n 19 "$python" -m training.weights_file snapshot "$run/checkpoint.pt" "$snapshot" >/dev/null 2>>"$log"; then
    echo "$(date -u) snapshot: $snapshot" >>"$log"
  fi
}

snapshotter=
if ((every > 0)); then
  (while sleep "$every"; do write_snapshot; done) &
  snapshotter=$!
fi
nice -n 19 "$python" -m training.cli fit configs/hyperprior-codec.toml --run-dir "$run" --no-progress \
  "${settings[@]}" "${start[@]}" "$@" >>"$log" 2>&1
status=$?
[[ -n $snapshotter ]] && kill "$snapshotter" 2>/dev/null
wait 2>/dev/null
write_snapshot
echo "$(date -u) fit ended with status $status" >>"$log"
exit $status

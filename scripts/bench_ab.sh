#!/usr/bin/env bash
# bench.load on a git revision and on the working tree, alternating run by run (drift on a shared
# machine then hits both), and the medians side by side (bench/ab_summary.py).
#
# usage: scripts/bench_ab.sh REV RUNS OUT [bench.load arguments...]
#   e.g. scripts/bench_ab.sh 275becd 4 /tmp/ab --duration 5 --concurrency 1 32 --only image sequence
# Needs wrk and the data sets (AE_DATASETS, else ../shared/datasets), as bench.load does.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rev=$1 runs=$2 out=$3
shift 3
export AE_DATASETS=${AE_DATASETS:-$root/../shared/datasets}
before=$(mktemp -d)/before
git -C "$root" worktree add --detach "$before" "$rev" >/dev/null
trap 'git -C "$root" worktree remove --force "$before"' EXIT
for i in $(seq "$runs"); do
  for side in before after; do
    dir=$root
    [[ $side == before ]] && dir=$before
    # PYTHONPATH: the revision's own service package, ahead of the venv's editable install.
    (cd "$dir" && PYTHONPATH=$dir "$root/.venv/bin/python" -m bench.load --rounds 1 --out "$out/$side$i" "$@") \
      >"$out.$side$i.log" 2>&1
    echo "$side $i done"
  done
done
"$root/.venv/bin/python" -m bench.ab_summary "$out"

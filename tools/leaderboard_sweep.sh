#!/usr/bin/env bash
# Reproduces the built-in track of the leaderboard (README table): every registered method over the
# whole known-label sweep on digit-scenes, 3 seeds, the defaults (frozen pretrained small-cnn,
# 20 epochs), the same learning-rate grid for every method (1e-3 ... 3e-2), chosen on the validation split of
# seed 0 (--tune-seed 0) and trained as chosen on seeds 1 and 2.
#
#   bash tools/leaderboard_sweep.sh [OUTPUT_DIR]      # default: runs-leaderboard
#   METHODS="partial-bce hst" bash tools/leaderboard_sweep.sh   # some methods only
#
# Finished runs are skipped when the script is run again (their records are already filed), so an
# interrupted sweep continues where it stopped. Then file the records with
#   mlrpl-bench leaderboard submit OUTPUT_DIR --results leaderboard/results
# and rebuild the table with `mlrpl-bench leaderboard build`.
set -euo pipefail
export OMP_WAIT_POLICY=PASSIVE  # spin-waiting OpenMP threads slow parallel workers down (perf/README.md)
out="${1:-runs-leaderboard}"
grid="lr=1e-3,3e-3,1e-2,3e-2"
methods="${METHODS:-$(mlrpl-bench plugins --json | python -c 'import json, sys; print(" ".join(m["name"] for m in json.load(sys.stdin)["methods"]))')}"
start=$(date +%s)
for method in $methods; do
    t0=$(date +%s)
    mlrpl-bench run --plugin "$method" --known all --seeds 0,1,2 --tune "$grid" --tune-seed 0 \
        --jobs 0 --no-progress --output "$out" > "$out.$method.log" 2>&1 \
        || { echo "$method: failed, see $out.$method.log" >&2; exit 1; }
    echo "$method: $(( $(date +%s) - t0 )) s"
done
echo "all methods: $(( $(date +%s) - start )) s"

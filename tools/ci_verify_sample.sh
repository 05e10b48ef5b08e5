#!/usr/bin/env bash
# Re-execute a sample of the filed built-in leaderboard and fail when a record no longer reproduces
# (issue 20.1): a change that moves the numbers cannot land with stale records.
#
#   tools/ci_verify_sample.sh [RESULTS_DIR]        # default: leaderboard/results/digit-scenes
#
# The sample: MLRPL_VERIFY_CHEAP (default 4) records of the linear-head baselines and
# MLRPL_VERIFY_SARL (default 1) record of the SARL-head methods, drawn with a seed taken from the
# commit (MLRPL_VERIFY_SEED overrides it), so successive commits cover different records and a
# failure is reproducible with the seed the log prints. About 1-3 minutes on two CPU cores (a
# linear-head record re-executes in seconds, a SARL-head one in 10-40 s). Needs the venv of
# .ci/run (mlrpl-bench installed). Families come from mlrpl_bench.leaderboard.frame.FAMILIES.
set -euo pipefail
cd "$(dirname "$0")/.."

results=${1:-leaderboard/results/digit-scenes}
cheap=${MLRPL_VERIFY_CHEAP:-4}
sarl=${MLRPL_VERIFY_SARL:-1}
seed=${MLRPL_VERIFY_SEED:-$((16#$(git rev-parse --short=7 HEAD 2>/dev/null || echo 0)))}
export OMP_WAIT_POLICY=PASSIVE

if [ ! -d "$results" ]; then
    echo "ci_verify_sample: $results: no filed records; nothing to verify"
    exit 0
fi

# The method folders of one family (<results>/<setting>/<method>/), one per line.
folders() {
    python - "$results" "$1" <<'EOF'
import sys
from pathlib import Path
from mlrpl_bench.leaderboard.frame import FAMILIES, LINEAR, SARL
family = {"linear": LINEAR, "sarl": SARL}[sys.argv[2]]
for path in sorted(Path(sys.argv[1]).glob("*/*")):
    if path.is_dir() and FAMILIES.get(path.name) == family:
        print(path)
EOF
}

echo "ci_verify_sample: seed $seed: $cheap linear-head and $sarl SARL-head record(s) of $results"
status=0
mapfile -t linear < <(folders linear)
mapfile -t heads < <(folders sarl)
if [ "${#linear[@]}" -gt 0 ]; then
    mlrpl-bench leaderboard verify "${linear[@]}" --sample "$cheap" --sample-seed "$seed" || status=1
fi
if [ "${#heads[@]}" -gt 0 ]; then
    mlrpl-bench leaderboard verify "${heads[@]}" --sample "$sarl" --sample-seed "$seed" || status=1
fi
exit $status

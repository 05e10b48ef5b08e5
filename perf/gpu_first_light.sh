#!/usr/bin/env bash
# First light on a GPU machine (perf/README.md, "GPU first light"):
#   bash perf/gpu_first_light.sh [OUT_DIR] [--smoke] [--keep-data]
# Needs only the README's install command (run inside its venv); downloads and installs nothing.
# Writes OUT_DIR/first_light.json (OUT_DIR: the argument, else $OUT, else ./first-light) and prints
# a summary. Without CUDA it says so and runs a CPU smoke of the same code path (tiny sizes).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"  # the script's own folder, whatever it is named
OUT_DIR="${OUT:-first-light}"
if [[ $# -gt 0 && "$1" != --* ]]; then OUT_DIR="$1"; shift; fi
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c "import mlrpl_bench" 2>/dev/null; then
    echo "error: mlrpl_bench is not importable with $PYTHON; run the README's install command first and activate its .venv" >&2
    exit 2
fi
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec "$PYTHON" "$HERE/gpu_first_light.py" --out "$OUT_DIR" "$@"

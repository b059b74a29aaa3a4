#!/usr/bin/env bash
# The NeoPolyp segmentation figures in README.md and docs/benchmarks.md: the bench (studio
# against a plain segmentation-models-pytorch loop, fixed split, 128 px, 12 epochs, batch 16),
# then `retrain --task segmentation` with the task's defaults over 5 grouped folds at 128 px
# (scores at the working size and at each mask's own size; SIZES="128 256" adds 256 px, about
# four times the time). Each step writes its output to OUT/<step>.log and is skipped when its log says it
# finished, so a re-run resumes. Nothing trained on NeoPolyp is kept (research licence): the
# workspace is OUT/ws, which this script makes and you may delete.
#
#     bash scripts/neopolyp_segmentation.sh [OUT]   (default: build/neopolyp-segmentation)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/neopolyp-segmentation}
DATA=../shared/data/neopolyp
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
[ -f "$DATA/labels.csv" ] || { echo "no NeoPolyp at $DATA: nothing to measure" >&2; exit 2; }

step() {  # step NAME COMMAND...: run unless OUT/NAME.log ends with "done"
    local name=$1; shift
    if tail -n 1 "$OUT/$name.log" 2>/dev/null | grep -q '^done'; then
        echo "$name: done before, skipped"; return
    fi
    echo "$name: $*"
    local start=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1
    echo "done in $((SECONDS - start)) s" >> "$OUT/$name.log"
}

step bench $PY bench/bench_segment.py --size 128 --epochs 12 --batch-size 16
WS="$OUT/ws"
if [ ! -f "$WS/datasets/neopolyp/manifest.json" ]; then
    $PY -m polyp_core --workspace "$WS" import "$DATA" --name neopolyp
fi
for size in ${SIZES:-128}; do
    step "retrain-$size" $PY -m polyp_core --workspace "$WS" retrain --task segmentation \
        --dataset neopolyp --baseline-only --folds 5 --size $size --epochs 8 --patience 3 \
        --seeds 0 --name "neopolyp-seg-$size"
done

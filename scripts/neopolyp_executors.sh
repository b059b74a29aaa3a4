#!/usr/bin/env bash
# Issue 45 on real frames: the same segmentation retrain on NeoPolyp through `--executor local`
# and `--executor ray` (a Ray of 2 CPUs started by the command), one thread per training on
# both, then a byte comparison of the two stored results and each one's wall time. 3 grouped
# folds x seed 0 x (baseline, baseline on 50% of the training groups): 6 U-Nets at 64 px for
# 3 epochs. Nothing trained is kept beyond OUT/ws (research licence: delete it when done).
#
#     bash scripts/neopolyp_executors.sh [OUT]   (default: build/neopolyp-executors)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/neopolyp-executors}
DATA=${DATA:-../shared/data/neopolyp}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
[ -f "$DATA/labels.csv" ] || { echo "no NeoPolyp at $DATA: nothing to measure" >&2; exit 2; }
WS="$OUT/ws"
if [ ! -f "$WS/datasets/neopolyp/manifest.json" ]; then
    $PY -m polyp_core --workspace "$WS" import "$DATA" --name neopolyp
fi
for executor in local ray; do
    extra=""
    [ "$executor" = ray ] && extra="--ray-cpus 2"
    start=$SECONDS
    RAY_AUTH_MODE=disabled $PY -m polyp_core --workspace "$WS" retrain --task segmentation \
        --dataset neopolyp --baseline-only --real-fractions 0.5 --folds 3 --seeds 0 --size 64 \
        --epochs 3 --cpus-per-training 1 --executor $executor $extra \
        --name "executor-$executor" > "$OUT/$executor.log" 2>&1
    echo "$executor: wall $((SECONDS - start)) s; $(grep '^trainings: .* trainings in' "$OUT/$executor.log")"
done
$PY - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
runs = {}
for executor in ("local", "ray"):
    log = (out / f"{executor}.log").read_text()
    folder = next(l for l in log.splitlines() if l.startswith("run ")).split("(")[1].split(")")[0]
    runs[executor] = json.loads((Path(folder) / "results.json").read_text())
same = json.dumps(runs["local"], sort_keys=True) == json.dumps(runs["ray"], sort_keys=True)
dice = {k: round(r["arms"]["baseline"]["summary"]["full"]["dice"]["mean"], 4) for k, r in runs.items()}
print(f"results.json equal byte for byte: {same}; Dice (mask's own size): {dice}")
sys.exit(0 if same else 1)
PY

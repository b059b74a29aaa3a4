#!/usr/bin/env bash
# One prepared GPU run (under 8 minutes on an H100/H200), everything into one results folder:
#   (a) Stable Diffusion speed: an SD-v1.5-shaped pipeline at 256 px, 25 DDIM steps with
#       guidance, batch sweep, fp16 and bf16 with channels-last, then fp16 with torch.compile,
#       against plain diffusers fp32 batch 1 in the same run (bench/bench_sd_speed.py);
#   (b) DDPM training throughput and peak memory, presets 64 and 128, bf16 through accelerate,
#       against a plain fp32 loop (bench/bench_ddpm_train.py);
#   (c) a class-conditional DDPM on NeoPolyp (AD vs REST, training split only) for 4 minutes,
#       200 samples per class, KID per class pair, contact sheet, exported checkpoint
#       (scripts/neopolyp_generator.py).
#
#   scripts/gpu_run.sh [--tiny] [RESULTS]        RESULTS defaults to $OUT or gpu-results
#   NEOPOLYP=path/to/neopolyp scripts/gpu_run.sh   (default ../shared/data/neopolyp)
#
# --tiny checks the whole script on a CPU in a few minutes (tiny shapes; numbers are not the
# GPU targets). Each part runs even if an earlier one failed; the exit code says if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
tiny=0
if [ "${1:-}" = "--tiny" ]; then tiny=1; shift; fi
out=${1:-${OUT:-gpu-results}}
mkdir -p "$out"
py=${PYTHON:-python3}
[ -x .venv/bin/python ] && py=${PYTHON:-.venv/bin/python}
neopolyp=${NEOPOLYP:-../shared/data/neopolyp}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
failed=0
run() {  # run NAME TIMEOUT COMMAND...: output to $out/NAME.log and the terminal
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee "$out/$name.log"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | grep -v -e 'it/s]' -e 'Loading' | tee -a "$out/$name.log"
  local code=${PIPESTATUS[0]}
  echo "== $name: exit $code after $((SECONDS - start)) s" | tee -a "$out/$name.log"
  [ "$code" -eq 0 ] || failed=1
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    || echo "no GPU"; $py -c 'import torch, diffusers; print("torch", torch.__version__, "cuda", torch.version.cuda, "diffusers", diffusers.__version__)'; } \
  > "$out/machine.txt"
cat "$out/machine.txt"

if [ $tiny -eq 1 ]; then
  run sd_speed 300 $py bench/bench_sd_speed.py --shape tiny --batches 1,4 --repeats 1 \
      --dtypes fp16,bf16 --channels-last --json "$out/sd_speed.json"
  run ddpm_train 300 $py bench/bench_ddpm_train.py --presets tiny --steps 4 --batch-size 4 \
      --frames 40 --json "$out/ddpm_train.json"
  run neopolyp 600 $py scripts/neopolyp_generator.py --tiny --data "$neopolyp" --out "$out"
else
  run sd_speed 150 $py bench/bench_sd_speed.py --shape sd15 --batches 1,8,32,64,128 \
      --dtypes fp16,bf16 --channels-last --json "$out/sd_speed.json"
  run sd_speed_compiled 90 $py bench/bench_sd_speed.py --shape sd15 --batches 64,128 \
      --dtypes fp16 --channels-last --compile --repeats 3 --json "$out/sd_speed_compiled.json"
  run ddpm_train 60 $py bench/bench_ddpm_train.py --presets 64,128 --batch-size 64 --steps 60 \
      --mixed-precision bf16 --json "$out/ddpm_train.json"
  run neopolyp 330 $py scripts/neopolyp_generator.py --seconds 240 --data "$neopolyp" --out "$out"
fi
rm -rf "$out/workspace"  # the NeoPolyp workspace: its export and figures are kept
ls -la "$out"
exit $failed

#!/usr/bin/env bash
# The GPU rows of BENCHMARKS.md ("Not measured yet: GPU"), on any machine with a CUDA card:
#
#   ./setup.sh && bash benchmarks/gpu_session.sh [OUT]     # OUT defaults to runs/benchmarks/gpu
#
# Python: .venv/bin/python when setup.sh made it, else $PYTHON (default python3) with torch (CUDA), s3prl 0.4.18 (the
# reference recipe's modules) and this repository importable. WavLM Base+ geometry, random weights; it measures
#   1. the training step of s3prl's DistilHuBERT recipe against our trainer's step for every student at the recipe's
#      batch (24 x 250,000 samples, mixed precision): time, loss agreement, peak GPU memory, op profiles
#      (python -m benchmarks.train_throughput --device cuda --profile)  -> OUT/train_throughput.{md,json}, profile_*.txt
#   2. inference latency, 10 s of audio, batch 1 (python -m benchmarks.inference --device cuda)  -> OUT/inference_cuda.*
#   3. the step with torch.compile, the recipe against the default GenDistiller  -> OUT/compile/train_throughput.*
# and OUT/gpu.log (the card, driver, torch version and every command's output). Each stage has a time limit
# (STEP_LIMIT_S, INFERENCE_LIMIT_S, COMPILE_LIMIT_S) so that a stage that hangs does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-runs/benchmarks/gpu}
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=${PYTHON:-python3}; fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_session.sh: $PY has no torch with a CUDA device (torch.cuda.is_available() is false)" >&2
    exit 1
fi
if ! $PY -c "import s3prl.upstream.distiller.model, distill" 2>/dev/null; then
    echo "gpu_session.sh: $PY cannot import s3prl 0.4.18 and this repository (./setup.sh installs both)" >&2
    exit 1
fi

stage() {  # stage LIMIT_S TITLE COMMAND...
    local limit=$1 title=$2; shift 2
    echo "== $title (limit ${limit} s): $*"
    timeout "$limit" "$@" || echo "== $title: exit status $?"
}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
    $PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
    stage "${STEP_LIMIT_S:-1800}" "1. training step, memory, profiles" \
        $PY -m benchmarks.train_throughput --device cuda --profile --out "$OUT"
    stage "${INFERENCE_LIMIT_S:-600}" "2. inference latency" \
        $PY -m benchmarks.inference --device cuda --out "$OUT"
    stage "${COMPILE_LIMIT_S:-1800}" "3. torch.compile" \
        $PY -m benchmarks.train_throughput --device cuda --compile --skip-checks \
        --variants s3prl-reference gendistiller --out "$OUT/compile"
    echo "== done after $SECONDS s; results in $OUT"
} 2>&1 | tee "$OUT/gpu.log"

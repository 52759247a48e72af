#!/usr/bin/env bash
# The GPU half of BENCHMARKS.md (issue §1-3) as one command that fits a 15-minute device lease with a cold start.
#
#   bash benchmarks/gpu_session.sh prepare   # here, before the device call: copies s3prl's pure-Python package
#                                            # (the reference modules need only torch and numpy) to .gpu_deps/
#   bash benchmarks/gpu_session.sh run       # on the GPU machine (device tool: carry [".gpu_deps"], timeout_s 560)
#
# `run` writes under $OUT (default runs/benchmarks/gpu): train_throughput.md, inference_cuda.md, compile.md,
# session.log and gpu_results.tgz (every JSON, profile table and log) - at most 8 files, as the device tool returns.
# Stages, each under its own time limit so a slow one cannot eat the next: step time + memory + profiles at the
# issue's batch (24 x 250,000), inference latency, then the torch.compile variant if at least 150 s are left.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "prepare" ]]; then
    site=$(.venv/bin/python -c "import os, s3prl; print(os.path.dirname(os.path.dirname(s3prl.__file__)))")
    rm -rf .gpu_deps && mkdir -p .gpu_deps
    cp -r "$site/s3prl" .gpu_deps/ && find .gpu_deps -name __pycache__ -prune -exec rm -rf {} +
    grep -qx "/.gpu_deps/" .git/info/exclude 2>/dev/null || echo "/.gpu_deps/" >> .git/info/exclude
    du -sh .gpu_deps
    exit 0
fi
[[ "${1:-}" == "run" ]] || { echo "usage: $0 prepare|run" >&2; exit 2; }

OUT=${OUT:-runs/benchmarks/gpu}
WORK=/tmp/gpu_results
PY=${PYTHON:-python3}
BUDGET=${BUDGET_S:-540}  # seconds this script may take in all
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/.gpu_deps:$PWD${PYTHONPATH:+:$PYTHONPATH}"
# distill.io.audio imports soundfile at module level; these benchmarks read no audio files on the GPU machine.
if ! $PY -c "import soundfile" 2>/dev/null; then
    mkdir -p /tmp/stubs
    printf 'def _missing(*args, **kwargs):\n    raise ImportError("soundfile is not installed on this machine")\n\nread = info = write = _missing\n' > /tmp/stubs/soundfile.py
    export PYTHONPATH="/tmp/stubs:$PYTHONPATH"
fi

{
    date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"

    echo "== 1-2. step time, memory, profiles (24 x 250,000, WavLM Base+ geometry)"
    timeout 300 $PY -m benchmarks.train_throughput --device cuda --profile --out "$WORK" 2>&1 | grep -v Warning
    echo "== 3. inference latency, 10 s, batch 1"
    timeout 120 $PY -m benchmarks.inference --device cuda --out "$WORK" 2>&1 | grep -v Warning
    left=$((BUDGET - SECONDS))
    if (( left >= 150 )); then
        echo "== torch.compile variant ($left s left)"
        timeout $((left - 20)) $PY -m benchmarks.train_throughput --device cuda --compile --skip-checks \
            --variants s3prl-reference gendistiller --out "$WORK/compile" 2>&1 | grep -v Warning
    else
        echo "== torch.compile variant skipped: $left s left"
    fi
    echo "== done after $SECONDS s"
} 2>&1 | tee "$WORK/session.log"

cp "$WORK/session.log" "$OUT/"
cp "$WORK/train_throughput.md" "$OUT/" 2>/dev/null
cp "$WORK/inference_cuda.md" "$OUT/" 2>/dev/null
cp "$WORK/compile/train_throughput.md" "$OUT/compile.md" 2>/dev/null
tar czf "$OUT/gpu_results.tgz" -C /tmp gpu_results
ls -la "$OUT"

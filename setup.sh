#!/usr/bin/env bash
# One-command setup: system packages, a virtual environment at .venv/ and every Python dependency, pinned.
# Idempotent: a second run only checks what is already there. Any failing step stops the script.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=${PYTHON:-python3}

step() { printf '\n== %s\n' "$*"; }

# System packages: espeak-ng/sox build the local corpora, libsox-dev gives torchaudio.sox_effects its libsox.so.
need_apt=()
for pkg in espeak-ng sox libsox-dev ffmpeg; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  step "create $VENV"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

stamp=$VENV/.gendistiller-deps
deps_hash=$(cat setup.sh setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$deps_hash" ]; then
  step "pip: torch, torchaudio, s3prl and their undeclared needs"
  "${PIP[@]}" --upgrade "pip<24.1" "setuptools<81" wheel "cython<3.1" "numpy<2.3"
  "${PIP[@]}" torch==2.8.0 torchaudio==2.8.0
  # pandas, librosa, editdistance, h5py, dtw-python and sox: imported by s3prl's SUPERB experts (IC, SID, PR/ASR, SD, QbE, ASV)
  "${PIP[@]}" s3prl==0.4.18 soundfile tensorboardX tensorboard "huggingface_hub<1" "transformers<5" \
    pyyaml tqdm matplotlib pytest pandas librosa editdistance h5py dtw-python sox
  # scikit-learn: k-means units for teacher pretraining; onnx + onnxruntime: ONNX export, int8 and the torch-free runtime;
  # ctranslate2: tests only, its converter writes the faster-whisper model.bin files our own reader is checked against;
  # hypothesis: tests only, the property tests of the config boundary (tests/test_config_properties.py)
  "${PIP[@]}" scikit-learn==1.9.1 onnx==1.23.2 onnxruntime==1.32.0 ctranslate2==4.8.5 hypothesis==6.170.27
  # catalyst is imported by s3prl's KS expert; its pinned deps clash with ours, so install it alone.
  "${PIP[@]}" --no-deps catalyst==22.4
  "${PIP[@]}" hydra-slayer
  step "pip: fairseq-fixed (built against the installed torch)"
  "${PIP[@]}" --no-build-isolation fairseq-fixed==0.12.3.1
  step "pip: this package (editable)"
  "${PIP[@]}" --no-build-isolation --no-deps -e .
  echo "$deps_hash" > "$stamp"
fi

step "check imports"
check_log=$(mktemp)
if ! "$VENV/bin/python" - >"$check_log" 2>&1 <<'PY'
import torch, torchaudio, s3prl.hub, fairseq, catalyst, soundfile, tensorboardX, sklearn, onnx, onnxruntime, distill, gendistiller_upstream
print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, fairseq {fairseq.__version__}: ok")
PY
then
  cat "$check_log"; echo "setup.sh: the import check failed (output above)" >&2; exit 1
fi
tail -n 1 "$check_log"; rm -f "$check_log"

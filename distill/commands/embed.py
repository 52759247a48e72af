"""`gendistiller embed --model STUDENT.onnx AUDIO... [--out DIR] [--layer K]`: features of many files with an exported
student, through onnxruntime (distill.deploy; torch is not imported), one .npy per file: (hidden states, frames,
dim), or (frames, dim) for one hidden state. A file that cannot be read is named and skipped; the exit status is 1
if any was."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from distill.audio import AudioError, audio_files, read_audio
from distill.deploy import OnnxStudent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="an ONNX file written by `gendistiller export --to onnx`")
    parser.add_argument("audio", nargs="+", type=Path, help="16 kHz mono audio files (or folders, searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("features"), help="folder for the .npy files (default features/)")
    parser.add_argument("--layer", type=int, help="keep only this hidden state, by index (default: all; the model's "
                                                   "names are printed)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: onnxruntime's choice)")


def run(args: argparse.Namespace) -> int:
    student = OnnxStudent(args.model, args.threads)
    names = student.names
    if args.layer is not None and not 0 <= args.layer < len(names):
        raise ValueError(f"--layer {args.layer}: {args.model} has hidden states 0 to {len(names) - 1} ({', '.join(names)})")
    files = [path for item in args.audio for path in (audio_files([item]) if item.is_dir() else [item])]
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path, name in tqdm(list(zip(files, _unique_names(files))), desc="embed", unit="file"):
        try:
            wav = read_audio(path)
        except AudioError as error:
            tqdm.write(f"[embed] skipped: {error}", file=sys.stderr)
            failed += 1
            continue
        out = student([wav])
        states = np.stack([state[0, : int(out.lengths[0])] for state in out.hidden_states])
        np.save(args.out / f"{name}.npy", states if args.layer is None else states[args.layer])
    kept = "all hidden states: " + ", ".join(names) if args.layer is None else f"hidden state {names[args.layer]}"
    print(f"[embed] {len(files) - failed} of {len(files)} files -> {args.out} ({kept}; width {student.metadata['dim']})")
    return 1 if failed else 0


def _unique_names(files: list[Path]) -> list[str]:
    """File stems, with the parent folders prefixed where two files share a stem."""
    counts = Counter(path.stem for path in files)
    return [path.stem if counts[path.stem] == 1 else "_".join(path.with_suffix("").parts[-3:]) for path in files]

"""`gendistiller embed --model STUDENT.onnx AUDIO... [--out DIR] [--layer K]`: features of many files with an exported
student, through onnxruntime (distill.deploy), one .npy per file: (hidden states, frames, dim), or (frames, dim)
for one layer."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from distill.deploy import OnnxStudent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="an ONNX file written by `gendistiller export --to onnx`")
    parser.add_argument("audio", nargs="+", type=Path, help="16 kHz mono audio files (or folders, searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("features"), help="folder for the .npy files (default features/)")
    parser.add_argument("--layer", type=int, help="keep only this hidden state (default: all)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: onnxruntime's choice)")


def run(args: argparse.Namespace) -> int:
    from distill.audio import read_audio
    from distill.fidelity import audio_files

    student = OnnxStudent(args.model, args.threads)
    num_states = int(student.metadata["num_hidden_states"])
    if args.layer is not None and not 0 <= args.layer < num_states:
        raise ValueError(f"--layer {args.layer}: {args.model} has hidden states 0 to {num_states - 1}")
    files = [path for item in args.audio for path in (audio_files([item]) if item.is_dir() else [item])]
    args.out.mkdir(parents=True, exist_ok=True)
    names = _unique_names(files)
    for path, name in tqdm(list(zip(files, names)), desc="embed", unit="file"):
        out = student([read_audio(path)])
        frames = int(out.lengths[0])
        states = np.stack([state[0, :frames] for state in out.hidden_states])
        np.save(args.out / f"{name}.npy", states if args.layer is None else states[args.layer])
    print(f"[embed] {len(files)} files -> {args.out} ({num_states} hidden states of width {student.metadata['dim']})")
    return 0


def _unique_names(files: list[Path]) -> list[str]:
    """File stems, with the parent folders prefixed where two files share a stem."""
    stems = [path.stem for path in files]
    return [stem if stems.count(stem) == 1 else "_".join(path.with_suffix("").parts[-3:]) for stem, path in zip(stems, files)]

"""`gendistiller embed --model STUDENT.onnx AUDIO... [--out DIR] [--layer K]`: features of many files with an exported
student, through onnxruntime (distill.deploy.runtime; torch is not imported), one .npy per file: (hidden states, frames,
dim), or (frames, dim) for one hidden state.

Long recordings are read, run and written window by window (distill.nn.chunking): memory holds one window whatever the
length, and the progress bar counts seconds of audio. `--layer K` computes hidden states 0..K only (GenDistiller stops
generating at K). A file that cannot be read, or is shorter than one frame, is named on one line and skipped; the exit
status is 1 if any was."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from distill.deploy.runtime import OnnxStudent
from distill.io.audio import SAMPLE_RATE, AudioError, AudioFile, audio_files
from distill.io.run_folder import blocking_file
from distill.nn.chunking import Chunking, NpyWriter


def add_arguments(parser: argparse.ArgumentParser) -> None:
    default = Chunking()
    parser.add_argument("--model", required=True, type=Path, help="an ONNX file written by `gendistiller export --to onnx`")
    parser.add_argument("audio", nargs="+", type=Path, help="16 kHz mono audio files (or folders, searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("features"), help="folder for the .npy files (default features/)")
    parser.add_argument("--layer", type=int, help="keep only this hidden state, by index, and compute none after it "
                                                   "(default: all; the model's names are printed)")
    parser.add_argument("--float16", action="store_true", help="write float16 (half the disk; default float32)")
    parser.add_argument("--window", type=float, default=default.window_seconds,
                        help=f"seconds of frames kept per window for long recordings (default {default.window_seconds:g})")
    parser.add_argument("--context", type=float, default=default.context_seconds,
                        help=f"seconds of context run on each side of a window (default {default.context_seconds:g})")
    parser.add_argument("--whole", action="store_true", help="run every recording whole, however long (memory grows "
                                                            "with the square of the length)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (default: onnxruntime's choice)")


def run(args: argparse.Namespace) -> int:
    _check_out(args.out)
    student = OnnxStudent(args.model, args.threads, layers=args.layer,
                          chunking=None if args.whole else Chunking(args.window, args.context))
    files = [path for item in args.audio for path in (audio_files([item]) if item.is_dir() else [item])]
    args.out.mkdir(parents=True, exist_ok=True)
    readable = {}
    for path in files:  # headers only: checks every file and sizes the progress bar
        try:
            with AudioFile(path) as audio:
                readable[path] = len(audio)
        except AudioError as error:
            print(f"[embed] skipped: {error}", file=sys.stderr)
    failed = len(files) - len(readable)
    with tqdm(total=sum(readable.values()) / SAMPLE_RATE, desc="embed", unit="s audio",
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]") as bar:
        for path, name in zip(files, _unique_names(files)):
            if path not in readable:
                continue
            try:
                _embed_file(student, path, args.out / f"{name}.npy", args.layer, np.float16 if args.float16 else np.float32, bar)
            except AudioError as error:
                tqdm.write(f"[embed] skipped: {error}", file=sys.stderr)
                failed += 1
    kept = "all hidden states: " + ", ".join(student.names) if args.layer is None else f"hidden state {student.names[-1]}"
    print(f"[embed] {len(files) - failed} of {len(files)} files -> {args.out} ({kept}; width {student.metadata['dim']})")
    return 1 if failed else 0


def _check_out(out: Path) -> None:
    """--out must be a folder, or a path where one can be made (not a file, not under a file)."""
    blocking = blocking_file(out)
    if blocking is not None:
        raise ValueError(f"--out {out}: {blocking} is a file; give a folder for the .npy files")


def _embed_file(student: OnnxStudent, path: Path, out: Path, layer: int | None, dtype: type, bar: tqdm) -> None:
    """One recording, window by window, into `out` (nothing is left behind if it fails)."""
    with AudioFile(path) as audio:
        frames = student.grid.frames(len(audio))
        shape = (frames, int(student.metadata["dim"])) if layer is not None else (len(student.names), frames,
                                                                                  int(student.metadata["dim"]))
        writer = NpyWriter(out, shape, dtype)
        try:
            for window, states in student.windows(audio):
                writer.write(window.keep_start, states if layer is None else states[layer:])
                bar.update((window.keep_stop - window.keep_start) * student.grid.hop / SAMPLE_RATE)
        except BaseException:
            writer.discard()
            raise
        writer.close()


def _unique_names(files: list[Path]) -> list[str]:
    """File stems, with the parent folders prefixed where two files share a stem."""
    counts = Counter(path.stem for path in files)
    return [path.stem if counts[path.stem] == 1 else "_".join(path.with_suffix("").parts[-3:]) for path in files]

"""ONNX fidelity: how close the exported students come to PyTorch, per hidden state, on held-out audio.

    python -m benchmarks.deploy                  # the students of `python -m benchmarks.fidelity` (trained, tiny)
    python -m benchmarks.deploy --base-geometry  # also both students at WavLM Base+ geometry (random weights)
    python -m benchmarks.deploy --checkpoints gendistiller=G.pt distilhubert=D.pt --heldout DIR --calibration DIR

For each student: export fp32 and every --quantize choice (int8: linear layers and per-frame int8 CNN convolutions;
int8-linear: linear layers only; int8-cnn: static int8 CNN convolutions calibrated on --calibration), run each with
onnxruntime on every held-out file alone, and report per hidden state the largest |fp32 - PyTorch| and each quantized
model's frame cosine to fp32: the mean over files of each file's mean, and the 1st percentile over all frames (quiet
frames are where a quantised CNN loses precision). The Base-geometry students
are the ones `benchmarks.inference` times (initialised from a random WavLM Base+ like a real distillation run starts).
Target (issues #13, #18): int8 cosine >= 0.99 on every hidden state.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.common import fmt, machine_info, markdown_table, set_threads, teachers, write_outputs
from distill.deploy.onnx_export import QUANTIZATIONS, export_student
from distill.deploy.runtime import OnnxStudent
from distill.io.audio import audio_files, read_audio
from distill.models import Student
from distill.models.student_checkpoint import load_student

COSINE_TARGET = 0.99
DEFAULT_RUNS = Path("runs/benchmarks/fidelity/runs")
DEFAULT_CORPUS = Path("runs/benchmarks/corpus/librispeech")
CALIBRATION_FILES = 8


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", metavar="LABEL=CKPT", help="student checkpoints (default: the "
                        f"gendistiller and distilhubert runs under {DEFAULT_RUNS})")
    parser.add_argument("--base-geometry", action="store_true",
                        help="also measure both students at WavLM Base+ geometry, random weights (the timed geometry)")
    parser.add_argument("--heldout", type=Path, default=DEFAULT_CORPUS / "test-clean", help="held-out audio folder")
    parser.add_argument("--calibration", type=Path, default=DEFAULT_CORPUS / "dev-clean", help="audio for int8-cnn ranges")
    parser.add_argument("--max-files", type=int, default=40, help="held-out files used (spread over the folder)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/deploy"))
    return parser.parse_args(argv)


def students(args: argparse.Namespace) -> dict[str, Student]:
    """label -> student in eval mode: the given (or default) checkpoints, then the Base-geometry pair if asked."""
    if args.checkpoints:
        paths = {label: Path(path) for label, path in (item.split("=", 1) for item in args.checkpoints)}
    else:
        found = {kind: sorted((DEFAULT_RUNS / kind / "checkpoints").glob("step_*.pt")) for kind in ("gendistiller", "distilhubert")}
        if not all(found.values()):
            raise SystemExit(f"no student checkpoints under {DEFAULT_RUNS}: run `python -m benchmarks.fidelity` first or "
                             "pass --checkpoints")
        paths = {kind: files[-1] for kind, files in found.items()}
    models = {label: load_student(path)[0] for label, path in paths.items()}
    if args.base_geometry:
        from benchmarks.inference import build_student

        _, teacher = teachers("base")
        for kind in ("gendistiller", "distilhubert"):
            models[f"{kind}-base-random"] = build_student(kind, teacher, [4, 8, 12])
    return models


def frame_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def measure(student: Student, folder: Path, wavs: list[np.ndarray], calibration: list[np.ndarray], threads: int
            ) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    models = {quantize or "fp32": OnnxStudent(export_student(student, folder / f"{quantize or 'fp32'}.onnx", quantize,
                                                             calibration), threads)
              for quantize in (None, *QUANTIZATIONS)}
    errors: list[list[float]] = []
    cosines: dict[str, list[list[np.ndarray]]] = {name: [] for name in QUANTIZATIONS}  # [file][state] -> (frames,)
    for wav in tqdm(wavs, desc=folder.name, unit="file"):
        with torch.inference_mode():
            reference = [state[0].numpy() for state in student.infer([torch.from_numpy(wav)]).hidden_states]
        outputs = {name: [state[0] for state in model([wav]).hidden_states] for name, model in models.items()}
        errors.append([float(np.abs(a - b).max()) for a, b in zip(outputs["fp32"], reference)])
        for name in QUANTIZATIONS:
            cosines[name].append([frame_cosines(a, b) for a, b in zip(outputs[name], outputs["fp32"])])
    states = range(len(models["fp32"].names))
    return {"names": models["fp32"].names, "fp32_max_abs_error": np.max(errors, axis=0).tolist(),
            "cosine_to_fp32": {name: [float(np.mean([file[k].mean() for file in values])) for k in states]
                               for name, values in cosines.items()},
            "cosine_to_fp32_p1": {name: [float(np.percentile(np.concatenate([file[k] for file in values]), 1)) for k in states]
                                  for name, values in cosines.items()}}


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    files = audio_files([args.heldout], args.max_files)
    wavs = [read_audio(path) for path in files]
    calibration = [read_audio(path) for path in audio_files([args.calibration], CALIBRATION_FILES)]
    measured = {label: measure(student, args.out / label, wavs, calibration, args.threads)
                for label, student in students(args).items()}
    verdicts = {}
    for quantize in QUANTIZATIONS:
        worst = min(min(m["cosine_to_fp32"][quantize]) for m in measured.values())
        worst_p1 = min(min(m["cosine_to_fp32_p1"][quantize]) for m in measured.values())
        verdicts[quantize] = (f"{'met' if worst >= COSINE_TARGET else 'not met'}: {quantize} mean cosine to fp32 >= "
                              f"{worst:.4f} on every hidden state (target {COSINE_TARGET}); 1st percentile >= {worst_p1:.4f}")
    results = {"benchmark": "deploy", "machine": machine_info(torch.device("cpu")),
               "setup": {"heldout": str(args.heldout), "files": len(files), "calibration": str(args.calibration),
                         "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))},
               "students": measured, "target": verdicts["int8"], "verdicts": verdicts}
    rows = [[label, m["names"][k], fmt(m["fp32_max_abs_error"][k], 8),
             *(f"{fmt(m['cosine_to_fp32'][q][k], 4)} / {fmt(m['cosine_to_fp32_p1'][q][k], 4)}" for q in QUANTIZATIONS)]
            for label, m in measured.items() for k in range(len(m["names"]))]
    markdown = (f"ONNX vs PyTorch on {len(files)} held-out files ({args.heldout}), {results['machine']['date']}.\n\n"
                + markdown_table(["student", "hidden state", "fp32: max |ONNX - PyTorch|",
                                  *(f"{q}: cosine to fp32, mean / 1st pct" for q in QUANTIZATIONS)], rows)
                + "".join(f"- {verdict}\n" for verdict in verdicts.values()))
    json_path, md_path = write_outputs(args.out, "deploy", results, markdown)
    print(markdown)
    print(f"[deploy] wrote {json_path} and {md_path}")
    return results


if __name__ == "__main__":
    main()

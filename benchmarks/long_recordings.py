"""Long recordings: fidelity of chunked inference, memory and time against length, early stopping.

    # chunked vs whole-recording inference (PyTorch, trained students), recordings made of held-out files
    python -m benchmarks.long_recordings fidelity --checkpoints A.pt B.pt --audio HELDOUT_DIR --seconds 30 60 90
    # peak RSS and wall of `gendistiller embed`'s path (int8 ONNX) and PyTorch's, Base geometry, random weights
    python -m benchmarks.long_recordings memory --minutes 1 10 30 60 [--audio CORPUS_DIR]
    # latency of early-stopped GenDistiller against all steps and DistilHuBERT (10 s, 2 threads)
    python -m benchmarks.long_recordings latency

fidelity: per hidden state, cosine per frame of chunked against whole-recording inference, mean and 1st percentile
over every frame of every recording, for a grid of window W and context C (seconds). memory: each case in its own
process, measured alone (benchmarks.measure: wall, CPU time, peak RSS), the recording read and the states written window by
window at the default chunking (int8 ONNX: `gendistiller embed` itself, a process without torch; PyTorch:
Student.windows, the same rule); the audio is speech from --audio concatenated (or tones, without it). latency: median of interleaved
rounds; Base geometry, random weights (latency does not depend on them).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from benchmarks.common import (
    machine_info,
    markdown_table,
    median,
    paired_ratio,
    set_threads,
    time_interleaved,
    write_outputs,
)
from distill.io.audio import AudioFile, audio_files, read_audio
from distill.models import build_student, distilhubert_base_config, gendistiller_base_config
from distill.models.student_checkpoint import load_student
from distill.nn.chunking import Chunking, NpyWriter

WINDOWS, CONTEXTS = (10.0, 20.0, 30.0), (0.5, 1.0, 2.0, 4.0)
MEAN_TARGET, P1_TARGET = 0.995, 0.98


def recording(files: list[Path], seconds: float, offset: int = 0) -> np.ndarray:
    """Files one after another from `offset` (cyclically) until `seconds` of audio; tones without files."""
    if not files:
        t = np.arange(int(seconds * 16000)) / 16000
        f0 = 150 * (1 + 0.3 * np.sin(2 * np.pi * 0.7 * t))
        return (0.1 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) + 0.01 * np.random.default_rng(0).standard_normal(len(t))
                ).astype(np.float32)
    pieces, total, index = [], 0, offset
    while total < seconds * 16000:
        pieces.append(read_audio(files[index % len(files)]))
        total, index = total + len(pieces[-1]), index + 1
    return np.concatenate(pieces)[: int(seconds * 16000)]


def _cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return (torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1, eps=1e-12)).numpy()


def fidelity(args: argparse.Namespace) -> dict[str, Any]:
    files = audio_files([args.audio])
    wavs = [torch.from_numpy(recording(files, seconds, offset=40 * i)) for i, seconds in enumerate(args.seconds)]
    results = {}
    for checkpoint in args.checkpoints:
        student, _ = load_student(checkpoint)
        student.eval()
        whole = [student.infer([wav], None).hidden_states for wav in wavs]
        rows = {}
        for window in args.windows:
            for context in args.contexts:
                chunked = [student.infer([wav], Chunking(window, context)).hidden_states for wav in wavs]
                states = []
                for index in range(len(whole[0])):
                    cosines = np.concatenate([_cosines(w[index][0], c[index][0]) for w, c in zip(whole, chunked)])
                    states.append({"mean": float(cosines.mean()), "p1": float(np.percentile(cosines, 1))})
                rows[f"W={window:g} C={context:g}"] = states
                print(f"[long] {Path(checkpoint).name} W={window:g} C={context:g}: "
                      + ", ".join(f"{s['mean']:.4f}/{s['p1']:.4f}" for s in states), flush=True)
        results[str(checkpoint)] = {"kind": student.config.kind, "dim": student.geometry.dim, "rows": rows}
    return {"recordings_seconds": args.seconds, "files_from": str(args.audio), "students": results}


def _base_student(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = gendistiller_base_config() if kind == "gendistiller" else distilhubert_base_config()
    return build_student(config).eval()


def _onnx_file(kind: str, folder: Path) -> Path:
    from distill.deploy.onnx_export import export_student

    path = folder / f"{kind}-base-int8.onnx"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        export_student(_base_student(kind), path, "int8")
    return path


def embed_with_pytorch(args: argparse.Namespace) -> None:
    """`gendistiller embed`'s path with a PyTorch student (`args.model`: its kind): `args.wav` read, run and written
    window by window (Student.windows, the default chunking) to a .npy in `args.out`."""
    set_threads(args.threads)
    model = _base_student(args.model)
    with AudioFile(args.wav) as audio, torch.inference_mode():
        count = len(model(torch.zeros(1, 400), torch.tensor([400])).hidden_states)
        writer = NpyWriter(Path(args.out) / "features.npy", (count, model.frame_grid.frames(len(audio)), model.geometry.dim))
        for window, output in model.windows(audio, Chunking()):
            writer.write(window.keep_start, [state[0].numpy() for state in output.hidden_states])
        writer.close()


def _measured(command: list[str], log: Path) -> dict[str, float]:
    """Runs `command` through benchmarks.measure (its output to `log`): wall time, CPU time (less sensitive than wall to
    other processes on the machine) and the peak RSS of that process alone."""
    with open(log, "w") as output:
        done = subprocess.run([sys.executable, "-m", "benchmarks.measure", *command], stdout=subprocess.PIPE,
                              stderr=output, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): see {log}")
    return json.loads(done.stdout)


def memory(args: argparse.Namespace) -> dict[str, Any]:
    files = audio_files([args.audio]) if args.audio else []
    rows = []
    args.out.mkdir(parents=True, exist_ok=True)  # each case's log
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:  # exported once, before anything is timed
            if model.endswith("-int8"):
                _onnx_file(model.rsplit("-", 1)[0], args.out / "onnx")
        for minutes in args.minutes:
            wav = Path(scratch) / f"{minutes:g}min.wav"
            with __import__("soundfile").SoundFile(str(wav), "w", 16000, 1, "PCM_16") as sink:
                for block in range(int(minutes)):  # a minute at a time: the writer's memory stays small
                    sink.write(recording(files, 60.0, offset=25 * block))
            for model in args.models:
                kind, runtime = model.rsplit("-", 1)
                if runtime == "int8":  # the user's path: the CLI, which imports no torch
                    command = [sys.executable, "-m", "distill.cli", "embed", "--model", str(_onnx_file(kind, args.out / "onnx")),
                               str(wav), "--out", scratch, "--threads", str(args.threads)]
                else:
                    command = [sys.executable, "-m", "benchmarks.long_recordings", "embed-pytorch", "--model", kind,
                               "--wav", str(wav), "--out", scratch, "--threads", str(args.threads)]
                result = _measured(command, args.out / f"{minutes:g}min_{model}.log")
                rows.append({"minutes": minutes, "model": model, **result})
                print(f"[long] {minutes:g} min {model}: {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU, "
                      f"{result['peak_rss_gb']:.2f} GB", flush=True)
            wav.unlink()
    return {"audio": str(args.audio) if args.audio else "tones", "threads": args.threads, "rows": rows}


def latency(args: argparse.Namespace) -> dict[str, Any]:
    """10 s, batch 1: GenDistiller computing states 0..k for each k, against all and DistilHuBERT; PyTorch and int8."""
    from distill.deploy.runtime import OnnxStudent

    set_threads(args.threads)
    wav = 0.1 * torch.randn(int(args.seconds * 16000), generator=torch.Generator().manual_seed(0))
    students = {kind: _base_student(kind) for kind in ("gendistiller", "distilhubert")}
    steps = len(students["gendistiller"].config.target_layers)
    fns = {f"pytorch gendistiller layer {k}": (lambda k=k: students["gendistiller"].infer([wav], layers=k)) for k in range(1, steps)}
    fns["pytorch gendistiller all"] = lambda: students["gendistiller"].infer([wav])
    fns["pytorch distilhubert all"] = lambda: students["distilhubert"].infer([wav])
    for kind in students:
        path = _onnx_file(kind, args.out / "onnx")
        for k in (range(1, steps) if kind == "gendistiller" else []):
            session = OnnxStudent(path, args.threads, layers=k)
            fns[f"int8 gendistiller layer {k}"] = lambda s=session: s([wav.numpy()])
        session = OnnxStudent(path, args.threads)
        fns[f"int8 {kind} all"] = lambda s=session: s([wav.numpy()])
    with torch.inference_mode():
        times = time_interleaved(fns, torch.device("cpu"), args.repeats, warmup=1)
    reference = {name: times[f"{name.split()[0]} gendistiller all"] for name in times}
    return {"seconds": args.seconds, "threads": args.threads, "rounds": args.repeats,
            "rows": {name: {"median_s": median(values), "x_all_steps": paired_ratio(values, reference[name]),
                            "x_distilhubert": paired_ratio(values, times[f"{name.split()[0]} distilhubert all"])}
                     for name, values in times.items()}}


def render(part: str, results: dict[str, Any]) -> str:
    if part == "fidelity":
        text = ""
        for checkpoint, student in results["students"].items():
            text += f"\n{student['kind']} ({student['dim']} wide), `{checkpoint}`: cosine mean / 1st percentile per hidden state\n\n"
            rows = [[setting, *[f"{s['mean']:.4f} / {s['p1']:.4f}" for s in states],
                     "yes" if all(s["mean"] >= MEAN_TARGET and s["p1"] >= P1_TARGET for s in states) else "no"]
                    for setting, states in student["rows"].items()]
            count = len(next(iter(student["rows"].values())))
            text += markdown_table(["chunking", *[f"state {i}" for i in range(count)], "meets 0.995 / 0.98"], rows)
        return text
    if part == "memory":
        return markdown_table(["minutes", "model", "wall s", "CPU s", "peak RSS GB"],
                              [[f"{r['minutes']:g}", r["model"], f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}",
                                f"{r['peak_rss_gb']:.2f}"] for r in results["rows"]])
    return markdown_table(["model", "median s", "x all steps (per-round)", "x distilhubert (per-round)"],
                          [[name, f"{r['median_s']:.4f}", f"{r['x_all_steps']:.3f}", f"{r['x_distilhubert']:.3f}"]
                           for name, r in results["rows"].items()])


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("fidelity", "memory", "latency", "embed-pytorch"))
    parser.add_argument("--checkpoints", nargs="+", type=Path, help="fidelity: trained student checkpoints")
    parser.add_argument("--audio", type=Path, help="fidelity (required), memory: a folder of speech recordings")
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 60.0, 90.0],
                        help="fidelity: recording lengths (default 30 60 90); latency: one length (default 10)")
    parser.add_argument("--windows", type=float, nargs="+", default=list(WINDOWS), help="fidelity: W values in seconds")
    parser.add_argument("--contexts", type=float, nargs="+", default=list(CONTEXTS), help="fidelity: C values in seconds")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 30, 60], help="memory: recording lengths")
    parser.add_argument("--models", nargs="+", default=["gendistiller-int8", "gendistiller-pytorch", "distilhubert-int8",
                                                        "distilhubert-pytorch"], help="memory: KIND-{int8,pytorch}")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="latency: interleaved rounds (default 5)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"), help="output folder (default runs/benchmarks)")
    parser.add_argument("--model", help=argparse.SUPPRESS)  # embed-pytorch: the case run in its own process by `memory`
    parser.add_argument("--wav", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part == "embed-pytorch":
        embed_with_pytorch(args)
        return {}
    if args.part == "latency" and args.seconds == parser.get_default("seconds"):
        args.seconds = 10.0
    results = {"fidelity": fidelity, "memory": memory, "latency": latency}[args.part](args)
    payload = {"benchmark": f"long_recordings_{args.part}", "machine": machine_info(torch.device("cpu")),
               "command": " ".join(["python -m benchmarks.long_recordings"] + (argv if argv is not None else sys.argv[1:])),
               **results}
    markdown = render(args.part, results)
    paths = write_outputs(args.out, f"long_recordings_{args.part}", payload, markdown)
    print(markdown)
    print(f"[long] wrote {paths[0]} and {paths[1]}")
    return payload


if __name__ == "__main__":
    main()

"""Upstream forward latency: 10 s of audio per utterance, batch 1 (what s3prl's runner does per utterance at
evaluation) and batch 8, on 1 and 2 CPU threads.

    python -m benchmarks.inference --device cpu --threads 1 2 --batch-sizes 1 8     # the issues' CPU settings
    python -m benchmarks.inference --device cuda
    python -m benchmarks.inference --device cpu --geometry tiny --seconds 1 --repeats 1   # CI size

Timed, interleaved in one process (median over rounds), all in inference mode with every hidden state returned:
- ours: `gendistiller` and `distilhubert` (Student.infer, the call the s3prl upstream makes), GenDistiller with the
  cheaper front-end (`gendistiller-narrow-fe-C`: `student.front_end_channels=C`, with the early steps' own
  feed-forward blocks that the shipped configs give it), the `wavlm-teacher` (our implementation, all layers);
- the same two students exported to ONNX (`gendistiller export --to onnx`) and run by onnxruntime through
  `distill.deploy.runtime.OnnxStudent` (`onnx-KIND-fp32`, and one per `--quantize` choice: `onnx-KIND-int8`: int8 linear
  layers and per-frame int8 CNN convolutions, `onnx-KIND-int8-linear`: int8 linear layers only, `onnx-KIND-int8-cnn`:
  static int8 CNN convolutions, calibrated on the timed noise: ranges do not change the time; their fidelity is
  `benchmarks.deploy`'s), CPU only;
- context, s3prl's own modules: `s3prl-wavlm` (its WavLM, all layers) and `s3prl-distilhubert` (its DistillerModel);
- the CNN front-ends alone: `cnn-teacher` (the teacher's, shared by the default students) and `cnn-narrow-C`.
At batch sizes above 1 only the students (ours in PyTorch and ONNX, s3prl's DistilHuBERT) are timed.
Weights are random (WavLM Base+ geometry by default): latency does not depend on them.
Targets (CPU, 2 threads, 10 s, batch 1): GenDistiller <= 1.1x the baseline's time; ONNX int8
GenDistiller <= 0.45x the PyTorch GenDistiller's (issue #18: #13's 0.5x with a margin for other CPUs).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor, nn

from benchmarks.common import (
    GEOMETRIES,
    count_parameters,
    fmt,
    machine_info,
    markdown_table,
    median,
    paired_ratio,
    pick_device,
    s3prl_distiller_from,
    s3prl_teacher_states,
    set_threads,
    teachers,
    time_interleaved,
    write_outputs,
)
from distill.deploy.runtime import OnnxStudent
from distill.io.audio import pad_waveforms
from distill.models import student_config
from distill.nn.components import FeatureExtractor
from distill.training.trainer import DistillConfig, prepare_student

TARGET_RATIO = 1.1
ONNX_TARGET_RATIO = 0.45
# s3prl's modules on 2 CPU threads, 10 s of audio (another machine; context only).
ISSUE_CPU_REFERENCE_S = {"s3prl-wavlm": 0.965, "s3prl-distilhubert": 0.570, "cnn-teacher": 0.415}


def build_student(kind: str, teacher, target_layers: list[int], **overrides: Any) -> nn.Module:
    config = DistillConfig(teacher="(random weights)")
    config.student = student_config(kind, target_layers=list(target_layers), **overrides)
    torch.manual_seed(0)
    return prepare_student(config, teacher).eval()


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="CPU thread counts to time (default 2)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1], help="utterances per call (default 1)")
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default="base", help="teacher geometry (default base = WavLM Base+)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length per utterance (default 10 s)")
    parser.add_argument("--narrow-channels", type=int, nargs="*", default=None,
                        help="front_end_channels values to time (default: 1/4 and 1/2 of the teacher's CNN channels)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per model first (default 1)")
    parser.add_argument("--no-s3prl", action="store_true", help="skip s3prl's modules")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX exports")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"), help="output folder (default runs/benchmarks)")
    return parser.parse_args(argv)


def build_models(args: argparse.Namespace) -> tuple[dict[str, nn.Module], Any, list[int], list[int]]:
    """Every PyTorch model timed, the s3prl reference teacher's config, the target layers and the narrow widths."""
    reference_teacher, teacher = teachers(args.geometry)
    config = teacher.model.config
    target_layers = [4, 8, 12] if config.num_layers == 12 else [max(1, config.num_layers * i // 3) for i in (1, 2, 3)]
    channels = config.conv_layers[0][0]
    narrow = args.narrow_channels if args.narrow_channels is not None else [channels // 4, channels // 2]
    models: dict[str, nn.Module] = {
        "gendistiller": build_student("gendistiller", teacher, target_layers),
        "distilhubert": build_student("distilhubert", teacher, target_layers),
    }
    for c in narrow:
        models[f"gendistiller-narrow-fe-{c}"] = build_student("gendistiller", teacher, target_layers, front_end_channels=c,
                                                              cnn_grad_mult=1.0)
    models["wavlm-teacher"] = teacher
    if not args.no_s3prl:
        models["s3prl-wavlm"] = reference_teacher
        models["s3prl-distilhubert"] = s3prl_distiller_from(models["distilhubert"]).eval()
    models["cnn-teacher"] = teacher.model.feature_extractor
    for c in narrow:
        models[f"cnn-narrow-{c}"] = models[f"gendistiller-narrow-fe-{c}"].feature_extractor
    return models, config, target_layers, narrow


def export_students(models: dict[str, nn.Module], folder: Path, calibration: list[np.ndarray]) -> dict[str, Path]:
    """ONNX files of both students: fp32 and each quantization (calibration: the timed audio)."""
    from distill.deploy.onnx_export import QUANTIZATIONS, export_student

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind in ("gendistiller", "distilhubert"):
        for quantize in (None, *QUANTIZATIONS):
            name = f"onnx-{kind}-{quantize or 'fp32'}"
            files[name] = export_student(models[kind], folder / f"{name}.onnx", quantize, calibration)
    return files


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = pick_device(args.device)
    models, config, target_layers, narrow = build_models(args)
    for model in models.values():
        model.to(device).eval()
    samples = int(args.seconds * 16000)
    generator = torch.Generator().manual_seed(0)
    clips = [0.1 * torch.randn(samples, generator=generator) for _ in range(max(args.batch_sizes))]
    onnx_files = {} if args.no_onnx or device.type != "cpu" else export_students(
        models, args.out / "onnx", [clip.numpy() for clip in clips[:8]])

    settings = []
    for threads in args.threads:
        set_threads(threads)
        sessions = {name: OnnxStudent(path, threads) for name, path in onnx_files.items()}
        for batch in args.batch_sizes:
            wavs = [clip.to(device) for clip in clips[:batch]]
            fns = _calls(models if batch == 1 else {n: m for n, m in models.items() if n in BATCHED}, sessions, wavs, config)
            print(f"[inference] timing {len(fns)} models: {batch} x {args.seconds:g} s of audio, {device}, {threads} threads, "
                  f"{args.repeats} rounds", flush=True)
            with torch.inference_mode():
                times = time_interleaved(fns, device, args.repeats, inner=1, warmup=args.warmup)
            settings.append({"threads": threads, "batch": batch, "models": _rows(times, models, onnx_files)})

    results: dict[str, Any] = {
        "benchmark": "inference", "machine": machine_info(device),
        "setup": {"geometry": args.geometry, "audio_seconds": args.seconds, "threads": args.threads,
                  "batch_sizes": args.batch_sizes, "rounds": args.repeats, "warmup": args.warmup, "narrow_channels": narrow,
                  "target_layers": target_layers,
                  "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))},
        "settings": settings,
        "targets": _targets(settings, device, args),
    }
    markdown = render_markdown(results)
    json_path, md_path = write_outputs(args.out, f"inference_{device.type}", results, markdown)
    print(markdown)
    print(f"[inference] wrote {json_path} and {md_path}")
    return results


BATCHED = ("gendistiller", "distilhubert", "s3prl-distilhubert")  # PyTorch models timed at batch sizes above 1


def _calls(models: dict[str, nn.Module], sessions: dict[str, OnnxStudent], wavs: list[Tensor], config: Any
           ) -> dict[str, Callable[[], Any]]:
    waveforms, lengths = pad_waveforms(wavs)
    ones = torch.ones_like(waveforms)
    numpy_wavs = [wav.cpu().numpy() for wav in wavs]

    def call(name: str, model: nn.Module) -> Callable[[], Any]:
        if name.startswith(("gendistiller", "distilhubert")):
            return lambda: model.infer(wavs)
        if name == "wavlm-teacher":
            return lambda: model(wavs)
        if name == "s3prl-wavlm":
            return lambda: s3prl_teacher_states(model, waveforms, lengths, config.num_layers)
        if name == "s3prl-distilhubert":
            return lambda: model(waveforms, ones, get_hidden=True)
        if isinstance(model, FeatureExtractor):
            return lambda: model(waveforms, lengths)
        raise KeyError(name)

    fns = {name: call(name, model) for name, model in models.items()}
    fns.update({name: (lambda s=session: s(numpy_wavs)) for name, session in sessions.items()})
    return fns


def _rows(times: dict[str, list[float]], models: dict[str, nn.Module], onnx_files: dict[str, Path]) -> dict[str, Any]:
    baseline, baseline_min = median(times["distilhubert"]), min(times["distilhubert"])
    teacher_time = median(times["wavlm-teacher"]) if "wavlm-teacher" in times else None
    rows: dict[str, Any] = {}
    for name, values in times.items():
        seconds = median(values)
        parameters = count_parameters(models[name]) if name in models else \
            count_parameters(models[name.split("-")[1]])  # an ONNX file holds its student's weights
        rows[name] = {"latency_s_median": seconds, "latency_s_min": min(values), "latency_s_rounds": values,
                      "parameters": parameters, "ratio_vs_distilhubert": seconds / baseline,
                      "ratio_vs_distilhubert_min": min(values) / baseline_min,
                      "ratio_vs_distilhubert_paired": paired_ratio(values, times["distilhubert"]),
                      "ratio_vs_gendistiller_paired": paired_ratio(values, times["gendistiller"]),
                      "speedup_vs_teacher": teacher_time / seconds if teacher_time else None}
        if name in onnx_files:
            rows[name]["file_mib"] = onnx_files[name].stat().st_size / 2**20
    return rows


def _targets(settings: list[dict[str, Any]], device: torch.device, args: argparse.Namespace) -> dict[str, str]:
    """The issues' targets, read in their setting (CPU, base geometry, 10 s, batch 1, 2 threads) where it was timed."""
    setting = next((s for s in settings if s["threads"] == 2 and s["batch"] == 1), settings[0])
    rows = setting["models"]
    applicable = device.type == "cpu" and args.geometry == "base" and args.seconds == 10.0 and setting["threads"] == 2 \
        and setting["batch"] == 1
    where = "" if applicable else (f"not applicable to this setting ({device.type}, {args.geometry}, {args.seconds:g} s, "
                                   f"{setting['threads']} threads, batch {setting['batch']}): ")

    def verdict(ratio: float, limit: float, what: str) -> str:
        return where + (f"{'met' if ratio <= limit else 'not met'}: " if applicable else "") + f"{ratio:.3f}x {what}"

    targets = {"gendistiller_le_1.1x_baseline_cpu": verdict(rows["gendistiller"]["ratio_vs_distilhubert_paired"],
                                                            TARGET_RATIO, "the baseline (median of per-round ratios)")}
    if "onnx-gendistiller-int8" in rows:
        targets["onnx_int8_le_0.45x_pytorch_gendistiller_cpu"] = verdict(
            rows["onnx-gendistiller-int8"]["ratio_vs_gendistiller_paired"], ONNX_TARGET_RATIO,
            "the PyTorch GenDistiller (median of per-round ratios)")
    return targets


def render_markdown(results: dict[str, Any]) -> str:
    setup, machine = results["setup"], results["machine"]
    where = machine.get("gpu") or machine["cpu"]
    text = (f"Upstream forward, {setup['audio_seconds']:g} s of audio per utterance, {setup['geometry']} geometry, {where} "
            f"({machine['date']}); median of {setup['rounds']} interleaved rounds per setting.\n\n")
    rows = [[name, str(s["threads"]), str(s["batch"]), f"{r['parameters'] / 1e6:.2f}", fmt(r["latency_s_median"], 4),
             fmt(r["latency_s_min"], 4), fmt(r["ratio_vs_distilhubert_paired"], 3), fmt(r["ratio_vs_gendistiller_paired"], 3),
             fmt(r["speedup_vs_teacher"], 2) if r["speedup_vs_teacher"] else "–"]
            for s in results["settings"] for name, r in s["models"].items()]
    text += markdown_table(["model", "threads", "batch", "params (M)", "latency s (median)", "latency s (min)",
                            "x distilhubert (per-round)", "x gendistiller (per-round)", "speed-up vs teacher"], rows)
    for key, value in results["targets"].items():
        text += f"- target {key}: {value}\n"
    return text


if __name__ == "__main__":
    main()

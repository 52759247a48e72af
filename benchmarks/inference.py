"""Upstream forward latency: 10 s of audio, batch 1 (what s3prl's runner does per utterance at evaluation).

    python -m benchmarks.inference --device cpu --threads 2          # the issue's CPU setting
    python -m benchmarks.inference --device cuda
    python -m benchmarks.inference --device cpu --geometry tiny --seconds 1 --repeats 1   # CI size

Timed, interleaved in one process (median over rounds), all in inference mode with every hidden state returned:
- ours: `gendistiller` and `distilhubert` (Student.infer, the call the s3prl upstream makes), GenDistiller with the
  cheaper front-end (`gendistiller-narrow-fe-C`: `student.front_end_channels=C`), the `wavlm-teacher` (our
  implementation, all layers);
- context, s3prl's own modules: `s3prl-wavlm` (its WavLM, all layers) and `s3prl-distilhubert` (its DistillerModel);
- the CNN front-ends alone: `cnn-teacher` (the teacher's, shared by the default students) and `cnn-narrow-C`.
Weights are random (WavLM Base+ geometry by default): latency does not depend on them.
Target (issue §3): GenDistiller <= 1.1x the baseline's time on CPU.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

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
from distill.components import FeatureExtractor
from distill.models import StudentConfig
from distill.train import DistillConfig, prepare_student

TARGET_RATIO = 1.1
# Issue §3, s3prl's modules on 2 CPU threads, 10 s of audio (another machine; context only).
ISSUE_CPU_REFERENCE_S = {"s3prl-wavlm": 0.965, "s3prl-distilhubert": 0.570, "cnn-teacher": 0.415}


def build_student(kind: str, teacher, target_layers: list[int], **overrides: Any) -> nn.Module:
    config = DistillConfig(teacher="(random weights)")
    config.student = StudentConfig(kind=kind, target_layers=list(target_layers), **overrides)
    torch.manual_seed(0)
    return prepare_student(config, teacher).eval()


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, the issue's setting)")
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default="base", help="teacher geometry (default base = WavLM Base+)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length (default 10 s)")
    parser.add_argument("--narrow-channels", type=int, nargs="*", default=None,
                        help="front_end_channels values to time (default: 1/4 and 1/2 of the teacher's CNN channels)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per model first (default 1)")
    parser.add_argument("--no-s3prl", action="store_true", help="skip s3prl's modules")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"), help="output folder (default runs/benchmarks)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
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
                                                              cnn_grad_mult=1.0, layer0_loss=True)
    models["wavlm-teacher"] = teacher
    if not args.no_s3prl:
        models["s3prl-wavlm"] = reference_teacher
        models["s3prl-distilhubert"] = s3prl_distiller_from(models["distilhubert"]).eval()
    models["cnn-teacher"] = teacher.model.feature_extractor
    for c in narrow:
        models[f"cnn-narrow-{c}"] = models[f"gendistiller-narrow-fe-{c}"].feature_extractor
    for model in models.values():
        model.to(device).eval()

    samples = int(args.seconds * 16000)
    wav = (0.1 * torch.randn(samples, generator=torch.Generator().manual_seed(0))).to(device)
    length = torch.tensor([samples], device=device)
    ones = torch.ones(1, samples, device=device)

    def call(name: str, model: nn.Module) -> Callable[[], Any]:
        if name.startswith(("gendistiller", "distilhubert")):
            return lambda: model.infer([wav])
        if name == "wavlm-teacher":
            return lambda: model([wav])
        if name == "s3prl-wavlm":
            return lambda: s3prl_teacher_states(model, wav[None], length, config.num_layers)
        if name == "s3prl-distilhubert":
            return lambda: model(wav[None], ones, get_hidden=True)
        if isinstance(model, FeatureExtractor):
            return lambda: model(wav[None], length)
        raise KeyError(name)

    fns = {name: call(name, model) for name, model in models.items()}

    def timed() -> dict[str, list[float]]:
        with torch.inference_mode():
            return time_interleaved(fns, device, args.repeats, inner=1, warmup=args.warmup)

    print(f"[inference] timing {len(fns)} models: {args.seconds:g} s of audio, batch 1, {device}, "
          f"{torch.get_num_threads()} threads, {args.repeats} rounds", flush=True)
    times = timed()
    baseline, baseline_min = median(times["distilhubert"]), min(times["distilhubert"])
    teacher_time = median(times["wavlm-teacher"])
    rows: dict[str, Any] = {}
    for name, values in times.items():
        seconds = median(values)
        rows[name] = {"latency_s_median": seconds, "latency_s_min": min(values), "latency_s_rounds": values,
                      "parameters": count_parameters(models[name]), "ratio_vs_distilhubert": seconds / baseline,
                      "ratio_vs_distilhubert_min": min(values) / baseline_min,
                      "ratio_vs_distilhubert_paired": paired_ratio(values, times["distilhubert"]),
                      "speedup_vs_teacher": teacher_time / seconds}
    results: dict[str, Any] = {
        "benchmark": "inference", "machine": machine_info(device),
        "setup": {"geometry": args.geometry, "audio_seconds": args.seconds, "batch": 1, "rounds": args.repeats,
                  "warmup": args.warmup, "narrow_channels": narrow, "target_layers": target_layers,
                  "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))},
        "models": rows,
    }
    ratio = rows["gendistiller"]["ratio_vs_distilhubert_paired"]
    on_cpu = device.type == "cpu" and args.geometry == "base" and args.seconds == 10.0
    results["targets"] = {"gendistiller_le_1.1x_baseline_cpu": (
        f"{'met' if ratio <= TARGET_RATIO else 'not met'}: {ratio:.3f}x (median of per-round ratios)" if on_cpu else
        f"not applicable to this setting ({device.type}, {args.geometry}, {args.seconds:g} s): {ratio:.3f}x")}
    markdown = render_markdown(results)
    json_path, md_path = write_outputs(args.out, f"inference_{device.type}", results, markdown)
    print(markdown)
    print(f"[inference] wrote {json_path} and {md_path}")
    return results


def render_markdown(results: dict[str, Any]) -> str:
    setup, machine = results["setup"], results["machine"]
    where = machine.get("gpu") or f"{machine['cpu']}, {machine['torch_threads']} threads"
    rows = [[name, f"{r['parameters'] / 1e6:.2f}", fmt(r["latency_s_median"], 4), fmt(r["latency_s_min"], 4),
             fmt(r["ratio_vs_distilhubert"], 3), fmt(r["ratio_vs_distilhubert_min"], 3),
             fmt(r["ratio_vs_distilhubert_paired"], 3), fmt(r["speedup_vs_teacher"], 2)]
            for name, r in results["models"].items()]
    text = (f"Upstream forward, {setup['audio_seconds']:g} s of audio, batch 1, {setup['geometry']} geometry, {where} "
            f"({machine['date']}); median of {setup['rounds']} interleaved rounds.\n\n")
    text += markdown_table(["model", "params (M)", "latency s (median)", "latency s (min)", "x distilhubert (median)",
                            "x distilhubert (min)", "x distilhubert (per-round)", "speed-up vs teacher (median)"], rows)
    for key, value in results["targets"].items():
        text += f"- target {key}: {value}\n"
    return text


if __name__ == "__main__":
    main()

"""Shared pieces of the benchmarks: devices and threads, machine description, interleaved timing, the s3prl
reference models built with the same weights as ours, and result files (JSON + a markdown table)."""
from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from distill.nn.components import valid_mask
from distill.teachers import CheckpointTeacher
from distill.teachers.fairseq_format import import_wavlm
from distill.teachers.tiny import TINY_WAVLM_CFG, WAVLM_BASE_PLUS_CFG, build_reference_wavlm

# Teacher geometries the speed benchmarks build with random weights: WavLM Base+ (the setting) and the
# tiny WavLM of the tests (CI).
GEOMETRIES: dict[str, dict[str, Any]] = {"base": WAVLM_BASE_PLUS_CFG, "tiny": TINY_WAVLM_CFG}
SAMPLE_RATE = 16000


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    return torch.device(name)


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.strip().lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return info


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], Any]], device: torch.device, repeats: int, inner: int = 1,
                     warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function: `warmup` untimed calls each, then `repeats` rounds in which every function
    runs `inner` times back to back; the order rotates every round so no function always runs first (noisy,
    shared machines: compare medians of the same round structure, never runs from different processes)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(device)
            start = time.perf_counter()
            for _ in range(inner):
                fns[name]()
            synchronize(device)
            times[name].append((time.perf_counter() - start) / inner)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator[r] / denominator[r]: both ran in the same round, minutes apart at most, so
    slow drifts of a shared machine's load cancel (the most robust of the ratios reported)."""
    return median([a / b for a, b in zip(numerator, denominator)])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def peak_rss_gib() -> float:
    """The process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# ---- teachers: s3prl's reference WavLM and ours, with the same weights ------------------------------------------

def teachers(geometry: str, seed: int = 0) -> tuple[nn.Module, CheckpointTeacher]:
    """s3prl's `WavLM` with random weights (eval mode) and our teacher imported from its state dict, through the
    importer `load_teacher` uses for official WavLM checkpoints."""
    cfg = dict(GEOMETRIES[geometry])
    reference = build_reference_wavlm(cfg, seed)
    state = reference.state_dict()
    ours = CheckpointTeacher(f"wavlm:random-{geometry}-seed{seed}", import_wavlm({"cfg": cfg, "model": state}, "random WavLM"),
                             sum(v.numel() for v in state.values()))
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference, ours


def s3prl_teacher_states(reference: nn.Module, waveforms: Tensor, lengths: Tensor, num_layers: int) -> list[Tensor]:
    """Hidden states 0..num_layers of s3prl's WavLM as (B, T, D), the way s3prl's wavlm expert calls it (padding
    mask of the waveform, no masking)."""
    padding_mask = ~valid_mask(lengths, waveforms.shape[1])
    (_, layer_results), _ = reference.extract_features(waveforms, padding_mask=padding_mask, mask=False,
                                                       output_layer=num_layers, ret_layer_results=True)
    return [x.transpose(0, 1) for x, _ in layer_results]


def s3prl_distiller_from(student: nn.Module, recipe_dropout: bool = True) -> nn.Module:
    """s3prl's `DistillerModel` holding the weights of our DistilHuBERT `student` (through the export rename table).
    `recipe_dropout`: activation dropout 0.1 as in s3prl's DistilHuBERT recipe (our layers have none there)."""
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    from distill.deploy.s3prl_distiller import distiller_config, distiller_rules
    from distill.io.weight_names import map_state_dict

    section = distiller_config(student.config)  # type: ignore[arg-type]
    if recipe_dropout:
        section["activation_dropout"] = float(student.config.dropout)  # type: ignore[union-attr]
    model = DistillerModel(DistillerConfig(section))
    weights = map_state_dict(student.state_dict(), "benchmark", distiller_rules(student.geometry.extractor_mode))  # type: ignore[union-attr]
    model.load_state_dict(weights)
    return model


# ---- output --------------------------------------------------------------------------------------------------

def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, stem: str, payload: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown)
    return json_path, md_path


def fmt(value: Optional[float], digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def parse_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`gendistiller-NAME=key:value,key:value` -> {label: {key: value}} (values read as YAML): a GenDistiller whose
    exposed hidden states the options choose (`gendistiller_upstream`'s -g), evaluated without retraining."""
    import yaml

    options = {}
    for item in items:
        label, sep, pairs = item.partition("=")
        if not sep or not label.startswith("gendistiller-"):
            raise SystemExit(f"--options item {item!r} must look like gendistiller-NAME=key:value,...")
        options[label] = {key: yaml.safe_load(value) for key, value in (pair.split(":", 1) for pair in pairs.split(","))}
    return options

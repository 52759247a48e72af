"""Distillation step throughput and memory: s3prl's DistilHuBERT recipe vs our trainer's step.

    python -m benchmarks.train_throughput --device cuda                      # the issue's setting (24 x 250,000)
    python -m benchmarks.train_throughput --device cpu --geometry tiny --batch-size 2 --samples 16000   # CI size

Variants, all on the same batch in one process, timed interleaved (see `common.time_interleaved`):
- `s3prl-reference`: s3prl's own modules under s3prl's precision policy, as its pretrain runner and
  `DistillerForPretrain` run them: teacher `s3prl.upstream.wavlm.WavLM.WavLM` in fp32 under autocast(False) and
  no_grad; student `s3prl.upstream.distiller.model.DistillerModel` (DistilHuBERT, heads for layers 4-8-12) under
  fp16 autocast with a GradScaler; loss = mean L1 + mean -log σ(cos) over the stacked layers; AdamW; clip 5; a step
  whose gradient norm is NaN is skipped. (torch's AdamW stands in for s3prl's own Python `AdamW_with_schedule`.)
- ours: `distill.training.trainer.train_step`, the function the trainer runs, with our teacher: bf16 autocast on CUDA, fp32 on
  CPU (the trainer's `run.precision=auto`).
  - `distilhubert`: the baseline, same weights as the reference student;
  - `gendistiller`: the default GenDistiller (shipped config: CNN trainable with gradient x0.1);
  - `gendistiller-frozen-cnn`: `student.cnn_grad_mult=0`; the teacher's CNN output is then shared with the
    student (`distill.training.trainer.shares_teacher_cnn`), so the CNN runs once per step;
  - `gendistiller-narrow-fe`: the cheaper front-end (`student.front_end_channels`, trained from scratch,
    `optim.layer0_loss`), with the early steps' own feed-forward blocks the shipped configs give it;
  - `gendistiller-compiled` (with `--compile`): the default GenDistiller with `torch.compile` on the student and on
    the teacher's model.

Teacher weights are random in WavLM Base+ geometry (or `--geometry tiny`); every student starts from that teacher
as the trainer initialises it; the reference student gets the baseline's initial weights. The batch holds equal
crops (no padding, as the recipe's 250,000-sample crops) and stays on the device: data loading is not timed.

Loss agreement (before any update, dropout off, each model's own precision policy, through the same step functions
with a zero learning rate): s3prl reference vs our baseline (s3prl averages the layers, we sum them: ours / K is
compared), and ours in bf16 vs fp32 on CUDA.

Memory (CUDA): peak memory allocated during a variant's steps, minus what other variants keep resident (their weights
and optimizer state): i.e. this variant's weights, optimizer state, gradients and activations. CPU: only the
process's peak RSS (all variants together), since per-variant CPU memory cannot be separated in one process.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import (
    GEOMETRIES,
    count_parameters,
    fmt,
    machine_info,
    markdown_table,
    median,
    paired_ratio,
    peak_rss_gib,
    pick_device,
    s3prl_distiller_from,
    s3prl_teacher_states,
    set_threads,
    synchronize,
    teachers,
    time_interleaved,
    write_outputs,
)
from distill.models import student_config
from distill.teachers import CheckpointTeacher
from distill.training.runs import resolve_autocast_dtype
from distill.training.trainer import DistillConfig, prepare_student, teacher_history, train_step

REFERENCE = "s3prl-reference"
OURS = ("distilhubert", "gendistiller", "gendistiller-frozen-cnn", "gendistiller-narrow-fe")
COMPILED = "gendistiller-compiled"
# DESIGN.md §4: s3prl's modules, this batch, one H200, torch 2.11.
REFERENCE_H200 = {"s_per_step": 0.147, "peak_gib": 10.8}
TARGET_SPEEDUP = 3.0
GIB = 2**30


# ---- the reference step (s3prl's recipe) ----------------------------------------------------------------------

@dataclass
class Reference:
    teacher: nn.Module  # s3prl WavLM
    student: nn.Module  # s3prl DistillerModel
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    pred_layer_id: list[int]
    cosine_weight: float = 1.0

    def modules(self) -> list[nn.Module]:
        return [self.teacher, self.student]


def reference_loss(pred: Tensor, target: Tensor, cosine_weight: float) -> Tensor:
    """`DistillerForPretrain.compute_loss`: L1 averaged over B x N x T x D, plus the cosine term averaged over
    B x N x T (padded frames included), feature penalty 0."""
    rec_loss = F.l1_loss(pred, target, reduction="none").mean()
    sim_loss = -F.logsigmoid(F.cosine_similarity(pred, target, dim=-1)).mean()
    return rec_loss + cosine_weight * sim_loss


def reference_step(ref: Reference, waveforms: Tensor, lengths: Tensor, optimizer: Optional[torch.optim.Optimizer] = None,
                   clip_norm: float = 5.0) -> float:
    """One step of s3prl's pretrain runner on `DistillerForPretrain`. Returns the loss (a host sync, as s3prl's
    runner does with `math.isnan(grad_norm)` anyway)."""
    optimizer = optimizer or ref.optimizer
    device_type = waveforms.device.type
    amp = ref.scaler.is_enabled()
    pad_mask = torch.ones_like(waveforms)  # s3prl's dataset: 1 on valid samples
    pad_mask[~torch.arange(waveforms.shape[1], device=waveforms.device)[None].lt(lengths[:, None])] = 0
    with torch.autocast(device_type, dtype=torch.float16, enabled=amp):
        _, _, pred, _ = ref.student(waveforms, pad_mask)
        with torch.no_grad():
            with torch.autocast(device_type, enabled=False):
                states = s3prl_teacher_states(ref.teacher, waveforms, lengths, max(ref.pred_layer_id))
            target = torch.stack([states[i] for i in ref.pred_layer_id], dim=1)  # B x N x T x D
        loss = reference_loss(pred, target, ref.cosine_weight)
    ref.scaler.scale(loss).backward()
    ref.scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(ref.student.parameters(), clip_norm)
    if not math.isnan(grad_norm):
        ref.scaler.step(optimizer)
        ref.scaler.update()
    optimizer.zero_grad()
    return loss.item()


# ---- our variants ------------------------------------------------------------------------------------------

@dataclass
class Ours:
    name: str
    config: DistillConfig
    teacher: CheckpointTeacher
    student: nn.Module
    model: nn.Module  # what train_step calls (the student, or its compiled wrapper)
    optimizer: torch.optim.Optimizer


def our_config(kind: str, target_layers: list[int], layer0_loss: bool = False, **student: Any) -> DistillConfig:
    config = DistillConfig(teacher="(random weights)")
    config.student = student_config(kind, target_layers=list(target_layers), **student)
    config.optim.layer0_loss = layer0_loss
    return config


def build_ours(name: str, teacher: CheckpointTeacher, target_layers: list[int], narrow_channels: int, device: torch.device,
               seed: int) -> Ours:
    overrides: dict[str, Any] = {}
    kind = "distilhubert" if name == "distilhubert" else "gendistiller"
    if name == "gendistiller-frozen-cnn":
        overrides = {"cnn_grad_mult": 0.0}
    elif name == "gendistiller-narrow-fe":
        overrides = {"front_end_channels": narrow_channels, "cnn_grad_mult": 1.0, "layer0_loss": True}
    config = our_config(kind, target_layers, **overrides)
    torch.manual_seed(seed)
    student = prepare_student(config, teacher).to(device).train()
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=config.optim.lr,
                                  betas=tuple(config.optim.betas), weight_decay=config.optim.weight_decay)  # type: ignore[arg-type]
    return Ours(name, config, teacher, student, student, optimizer)


def compiled_variant(base: Ours, device: torch.device, seed: int) -> Ours:
    """The default GenDistiller (a fresh copy) with torch.compile on the student and on the teacher's model."""
    built = build_ours("gendistiller", base.teacher, base.config.student.target_layers, 0, device, seed)
    teacher = CheckpointTeacher(base.teacher.spec, base.teacher.model, base.teacher.source_parameters)
    teacher.model = torch.compile(base.teacher.model)  # type: ignore[assignment]
    return Ours(COMPILED, built.config, teacher, built.student, torch.compile(built.student), built.optimizer)  # type: ignore[arg-type]


def our_step(ours: Ours, waveforms: Tensor, lengths: Tensor, autocast_dtype: Optional[torch.dtype], step: int = 0,
             optimizer: Optional[torch.optim.Optimizer] = None) -> Tensor:
    """`distill.training.trainer.train_step` with the history the trainer would draw at `step` (step 0: teacher forcing)."""
    use_teacher = teacher_history(ours.config.training, len(ours.config.student.target_layers), step,
                                  ours.config.optim.total_steps, ours.config.run.seed)
    result = train_step(ours.model, ours.student, ours.teacher, optimizer or ours.optimizer, waveforms, lengths,
                        ours.config, use_teacher, autocast_dtype)
    return result.losses.total


# ---- checks ------------------------------------------------------------------------------------------------

def _frozen_step(modules: list[nn.Module], fn: Callable[[torch.optim.Optimizer], Any], params: list[nn.Parameter]) -> float:
    """Runs fn once in eval mode (no dropout) with a zero-learning-rate optimizer; returns its loss as a float."""
    for module in modules:
        module.eval()
    try:
        loss = fn(torch.optim.SGD(params, lr=0.0))
    finally:
        for module in modules:
            module.train()
    return float(loss.detach()) if isinstance(loss, Tensor) else float(loss)


def loss_agreement(reference: Optional[Reference], ours: dict[str, Ours], waveforms: Tensor, lengths: Tensor,
                   autocast_dtype: Optional[torch.dtype]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    trainable = lambda module: [p for p in module.parameters() if p.requires_grad]  # noqa: E731
    if reference is not None and "distilhubert" in ours:
        baseline = ours["distilhubert"]
        ref_loss = _frozen_step(reference.modules(), lambda opt: reference_step(reference, waveforms, lengths, opt),
                                trainable(reference.student))
        our_loss = _frozen_step([baseline.student], lambda opt: our_step(baseline, waveforms, lengths, autocast_dtype, 0, opt),
                                trainable(baseline.student))
        k = len(baseline.config.student.target_layers)
        checks["reference_vs_distilhubert"] = {
            "reference_loss_mean_over_layers": ref_loss, "ours_loss_sum_over_layers": our_loss,
            "ours_divided_by_layers": our_loss / k, "relative_difference": abs(our_loss / k - ref_loss) / abs(ref_loss)}
    if autocast_dtype is not None:
        for name in ("gendistiller", "distilhubert"):
            if name not in ours:
                continue
            variant = ours[name]
            losses = {label: _frozen_step([variant.student], lambda opt, d=dtype: our_step(variant, waveforms, lengths, d, 0, opt),
                                          trainable(variant.student))
                      for label, dtype in (("bf16", autocast_dtype), ("fp32", None))}
            checks[f"{name}_bf16_vs_fp32"] = {**losses, "relative_difference": abs(losses["bf16"] - losses["fp32"]) / abs(losses["fp32"])}
    return checks


def teacher_agreement(reference_teacher: nn.Module, teacher: CheckpointTeacher, waveforms: Tensor, lengths: Tensor,
                      layers: list[int]) -> dict[str, float]:
    """Max abs difference between s3prl's WavLM and ours (both fp32) on the target layers, relative to their scale."""
    with torch.no_grad(), torch.autocast(waveforms.device.type, enabled=False):
        theirs = s3prl_teacher_states(reference_teacher, waveforms, lengths, max(layers))
        mine = teacher.forward_padded(waveforms, lengths, max(layers)).hidden_states
    return {f"layer_{layer}": float((mine[layer] - theirs[layer]).abs().max() / theirs[layer].abs().max()) for layer in layers}


# ---- memory and profile ------------------------------------------------------------------------------------

def resident_bytes(modules: list[nn.Module], optimizer: torch.optim.Optimizer) -> int:
    """Weights and buffers of the modules plus the optimizer's state tensors, on the GPU."""
    seen: set[int] = set()
    total = 0
    tensors: list[Tensor] = []
    for module in modules:
        tensors += list(module.parameters()) + list(module.buffers())
    for state in optimizer.state.values():
        tensors += [v for v in state.values() if isinstance(v, Tensor)]
    for tensor in tensors:
        if tensor.is_cuda and tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            total += tensor.numel() * tensor.element_size()
    return total


def measure_peak(step: Callable[[], Any], own_bytes: Callable[[], int], device: torch.device, steps: int = 2) -> dict[str, float]:
    synchronize(device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    own_before = own_bytes()
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(steps):
        step()
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_gib": (peak - (before - own_before)) / GIB, "peak_process_gib": peak / GIB,
            "peak_reserved_process_gib": torch.cuda.max_memory_reserved(device) / GIB}


def saved_for_backward_bytes(step: Callable[[], Any], parameters: list[nn.Parameter]) -> int:
    """Bytes of the distinct tensors autograd keeps for backward during one step (weights excluded; their
    half-precision copies made by autocast included): the activation memory of the step, on any device."""
    weights = {p.untyped_storage().data_ptr() for p in parameters}
    kept: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(kept.values())


def profile_variant(name: str, step: Callable[[], Any], device: torch.device, out_dir: Path, steps: int = 2,
                    trace: bool = False) -> Path:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path = out_dir / f"profile_{name}.txt"
    path.write_text(f"{name}: {steps} steps on {device}\n" + prof.key_averages().table(sort_by=sort_by, row_limit=40))
    if trace:
        prof.export_chrome_trace(str(out_dir / f"trace_{name}.json"))
    return path


# ---- main --------------------------------------------------------------------------------------------------

def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    parser.add_argument("--geometry", choices=sorted(GEOMETRIES), default="base", help="teacher geometry (default base = WavLM Base+)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 24 on CUDA, 2 on CPU")
    parser.add_argument("--samples", type=int, default=None, help="samples per crop; default 250000 on CUDA, 32000 on CPU")
    parser.add_argument("--target-layers", type=int, nargs="+", default=None, help="default 4 8 12 (base), 2 3 4 (tiny)")
    parser.add_argument("--variants", nargs="+", default=[REFERENCE, *OURS], choices=[REFERENCE, *OURS],
                        help="variants to run (default: all); --compile adds gendistiller-compiled")
    parser.add_argument("--narrow-channels", type=int, default=None, help="front_end_channels of gendistiller-narrow-fe "
                        "(default: a quarter of the teacher's CNN channels)")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variant (compilation is not timed)")
    parser.add_argument("--steps", type=int, default=None, help="steps per variant per round (default 5 CUDA, 1 CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds (default 5 CUDA, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per variant first (default 3 CUDA, 1 CPU)")
    parser.add_argument("--precision", choices=("auto", "mixed", "fp32"), default="auto",
                        help="auto: mixed on CUDA, fp32 on CPU; mixed: ours bf16 autocast, reference fp16 autocast + "
                        "GradScaler (on CPU too, to check those code paths); fp32: everything in fp32")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-checks", action="store_true", help="skip the loss and teacher agreement checks")
    parser.add_argument("--profile", action="store_true", help="torch.profiler over 2 steps per variant after timing: "
                        "profile_<variant>.txt in --out (ops by self device time on CUDA, self CPU time on CPU)")
    parser.add_argument("--trace", action="store_true", help="with --profile: also trace_<variant>.json (chrome trace)")
    parser.add_argument("--saved-bytes", action="store_true", help="also count, per variant, the bytes autograd keeps for "
                        "backward in one step (activation memory; works on CPU, scales linearly with the batch size)")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True (all variants)")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks"), help="output folder (default runs/benchmarks)")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    args = parse_args(argv)
    set_threads(args.threads)
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    batch_size = args.batch_size or (24 if cuda else 2)
    samples = args.samples or (250_000 if cuda else 32_000)
    steps, repeats, warmup = args.steps or (5 if cuda else 1), args.repeats or (5 if cuda else 3), args.warmup or (3 if cuda else 1)
    target_layers = args.target_layers or ([4, 8, 12] if args.geometry == "base" else [2, 3, 4])
    mixed = args.precision == "mixed" or (args.precision == "auto" and cuda)
    autocast_dtype = resolve_autocast_dtype("bf16" if mixed else "fp32", device)

    reference_teacher, teacher = teachers(args.geometry, args.seed)
    teacher = teacher.to(device)
    cnn_channels = teacher.model.config.conv_layers[0][0]
    narrow = args.narrow_channels or max(8, cnn_channels // 4)
    names = [n for n in OURS if n in args.variants]
    if REFERENCE in args.variants and "distilhubert" not in names:
        names.insert(0, "distilhubert")  # the reference student is built from the baseline's initial weights
    ours = {name: build_ours(name, teacher, target_layers, narrow, device, args.seed) for name in names}
    reference = None
    if REFERENCE in args.variants:
        ref_student = s3prl_distiller_from(ours["distilhubert"].student).to(device).train()
        reference = Reference(reference_teacher.to(device), ref_student,
                              torch.optim.AdamW(ref_student.parameters(), lr=2e-4), torch.amp.GradScaler(device.type, enabled=mixed),
                              target_layers)
    else:
        del reference_teacher
    if args.compile:
        base = ours.get("gendistiller") or build_ours("gendistiller", teacher, target_layers, narrow, device, args.seed)
        ours[COMPILED] = compiled_variant(base, device, args.seed)

    generator = torch.Generator().manual_seed(args.seed)
    waveforms = (0.1 * torch.randn(batch_size, samples, generator=generator)).to(device)
    lengths = torch.full((batch_size,), samples, device=device)

    results: dict[str, Any] = {
        "benchmark": "train_throughput", "machine": machine_info(device),
        "setup": {"geometry": args.geometry, "batch_size": batch_size, "samples": samples, "target_layers": target_layers,
                  "our_precision": "bf16 autocast" if autocast_dtype else "fp32",
                  "reference_precision": "teacher fp32, student fp16 autocast + GradScaler" if mixed else
                  "fp32" + ("" if cuda else " (s3prl's runner autocasts on CUDA only)"),
                  "steps_per_round": steps, "rounds": repeats, "warmup_steps": warmup, "narrow_channels": narrow,
                  "cudnn_benchmark": args.cudnn_benchmark, "compile": args.compile,
                  "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:]))},
    }

    if not args.skip_checks:
        print("[throughput] checking that the losses agree on a fixed batch ...", flush=True)
        checks = loss_agreement(reference, ours, waveforms, lengths, autocast_dtype)
        if reference is not None:
            checks["teacher_s3prl_vs_ours_fp32_max_rel_error"] = teacher_agreement(reference.teacher, teacher, waveforms, lengths,
                                                                                   target_layers)
        results["loss_checks"] = checks

    steps_fns: dict[str, Callable[[], Any]] = {}
    if reference is not None:
        steps_fns[REFERENCE] = lambda: reference_step(reference, waveforms, lengths)
    for name, variant in ours.items():
        if name in args.variants or name == COMPILED:
            steps_fns[name] = (lambda v=variant: our_step(v, waveforms, lengths, autocast_dtype))
    if args.compile:
        print("[throughput] compiling (untimed) ...", flush=True)
        steps_fns[COMPILED]()

    print(f"[throughput] timing {list(steps_fns)}: {repeats} rounds x {steps} steps, batch {batch_size} x {samples} on {device}", flush=True)
    times = time_interleaved(steps_fns, device, repeats, inner=steps, warmup=warmup)

    memory: dict[str, dict[str, float]] = {}
    if cuda:
        for name, fn in steps_fns.items():
            if name == REFERENCE:
                own = lambda: resident_bytes(reference.modules(), reference.optimizer)  # noqa: E731
            else:
                v = ours[name]
                own = lambda v=v: resident_bytes([v.student, v.teacher], v.optimizer)  # noqa: E731
            memory[name] = measure_peak(fn, own, device)
    saved: dict[str, float] = {}
    if args.saved_bytes:
        for name, fn in steps_fns.items():
            if name == COMPILED:  # compiled graphs keep their tensors outside autograd's hooks
                continue
            modules = reference.modules() if name == REFERENCE else [ours[name].student, ours[name].teacher]
            saved[name] = saved_for_backward_bytes(fn, [p for m in modules for p in m.parameters()]) / GIB
    if args.profile:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, fn in steps_fns.items():
            print(f"[throughput] profile: {profile_variant(name, fn, device, args.out, trace=args.trace)}", flush=True)

    audio_seconds = batch_size * samples / 16000
    reference_time = median(times[REFERENCE]) if REFERENCE in times else None
    reference_min = min(times[REFERENCE]) if REFERENCE in times else None
    variants: dict[str, Any] = {}
    for name, values in times.items():
        seconds = median(values)
        params = count_parameters(reference.student) if name == REFERENCE else count_parameters(ours[name].student)
        variants[name] = {
            "s_per_step_median": seconds, "s_per_step_min": min(values), "s_per_step_rounds": values,
            "audio_seconds_per_second": audio_seconds / seconds, "student_parameters": params,
            "speedup_vs_reference": (reference_time / seconds) if reference_time else None,
            "speedup_vs_reference_min": (reference_min / min(values)) if reference_min else None,
            "speedup_vs_reference_paired": paired_ratio(times[REFERENCE], values) if reference_time else None,
            **memory.get(name, {}),
        }
        if name in saved:
            variants[name]["saved_for_backward_gib"] = saved[name]
    results["variants"] = variants
    if not cuda:
        results["memory_note"] = (f"CPU: per-variant memory is not separable in one process; peak RSS of the whole process "
                                  f"(all variants) {peak_rss_gib():.2f} GiB")
    results["targets"] = targets(results, cuda)
    markdown = render_markdown(results)
    json_path, md_path = write_outputs(args.out, "train_throughput", results, markdown)
    print(markdown)
    print(f"[throughput] wrote {json_path} and {md_path}")
    return results


def targets(results: dict[str, Any], cuda: bool) -> dict[str, str]:
    """The training-speed targets (>= 1.5x s3prl's step rate, <= its memory); decided only on a GPU at the recipe's
    setting (WavLM Base+ geometry, 24 x 250,000, mixed precision)."""
    variants, setup = results["variants"], results["setup"]
    issue_setting = (cuda and setup["geometry"] == "base" and setup["batch_size"] == 24 and setup["samples"] == 250_000
                     and setup["our_precision"] == "bf16 autocast")
    where = results["machine"].get("gpu") or results["machine"]["device"]

    def status(ok: bool) -> str:
        if not cuda:
            return "pending GPU"
        return ("met" if ok else "not met") if issue_setting else "not decided (not the issue's setting)"

    out: dict[str, str] = {}
    if "gendistiller" in variants and REFERENCE in variants:
        speedup = variants["gendistiller"]["speedup_vs_reference_paired"]
        best = max((v["speedup_vs_reference_paired"], name) for name, v in variants.items() if name != REFERENCE)
        out["speed_3x"] = (f"{status(speedup >= TARGET_SPEEDUP)}: gendistiller {speedup:.2f}x the reference's step rate (per-round) "
                           f"(best variant {best[1]} {best[0]:.2f}x) on {where}")
    if "gendistiller" in variants and "peak_gib" in variants["gendistiller"]:
        ours = variants["gendistiller"]["peak_gib"]
        limit = variants.get(REFERENCE, {}).get("peak_gib", REFERENCE_H200["peak_gib"])
        out["memory"] = f"{status(ours <= limit)}: gendistiller {ours:.2f} GiB vs reference {limit:.2f} GiB"
    elif not cuda:
        out["memory"] = "pending GPU"
    return out


def render_markdown(results: dict[str, Any]) -> str:
    setup, machine = results["setup"], results["machine"]
    where = machine.get("gpu") or f"{machine['cpu']}, {machine['torch_threads']} threads"
    rows = []
    for name, v in results["variants"].items():
        rows.append([name, f"{v['student_parameters'] / 1e6:.2f}", fmt(v["s_per_step_median"], 4), fmt(v["s_per_step_min"], 4),
                     fmt(v["speedup_vs_reference"], 2), fmt(v["speedup_vs_reference_min"], 2),
                     fmt(v["speedup_vs_reference_paired"], 2),
                     f"{v['audio_seconds_per_second']:.1f}", fmt(v.get("peak_gib"), 2), fmt(v.get("saved_for_backward_gib"), 3)])
    text = (f"Step time, {setup['geometry']} teacher geometry, batch {setup['batch_size']} x {setup['samples']} samples, "
            f"{where} ({machine['date']}); median of {setup['rounds']} interleaved rounds x {setup['steps_per_round']} steps; "
            f"ours {setup['our_precision']}, reference {setup['reference_precision']}.\n\n")
    text += markdown_table(["variant", "student params (M)", "s/step (median)", "s/step (min)", "speed-up vs ref (median)",
                            "speed-up vs ref (min)", "speed-up vs ref (per-round)", "audio s/s", "peak GiB",
                            "kept for backward GiB"], rows)
    checks = results.get("loss_checks", {})
    if checks:
        text += "\nLoss checks (fixed batch, no dropout, before any update):\n"
        for name, check in checks.items():
            if "relative_difference" in check:
                text += f"- {name}: relative difference {check['relative_difference']:.2e}\n"
            else:
                text += f"- {name}: " + ", ".join(f"{k} {v:.1e}" for k, v in check.items()) + "\n"
    if "memory_note" in results:
        text += f"\n{results['memory_note']}\n"
    for key, value in results["targets"].items():
        text += f"- target {key}: {value}\n"
    return text


if __name__ == "__main__":
    main()

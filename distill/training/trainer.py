"""Distillation training: `gendistiller distill --config FILE.yaml [key.sub=value ...] [--resume]`.

Reads top to bottom: config, distributed setup, teacher/student/data, optimiser and schedule, checkpoints,
then one loop (lr -> batch -> teacher -> student -> loss -> clip -> step -> log -> checkpoint).
Single process, or `torchrun --nproc_per_node N -m distill.cli distill ...` (DDP; gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from distill.io.configuration import from_dict
from distill.models import Student, StudentConfig, build_student
from distill.models.student_checkpoint import CHECKPOINT_FORMAT, read_student_checkpoint
from distill.nn.components import conv_output_lengths, valid_mask
from distill.nn.ssl_encoder import model_input
from distill.teachers import CheckpointTeacher, Teacher, TeacherOutput, load_teacher
from distill.teachers.base import align_to_student, check_hop
from distill.training.data import BucketBatchSampler, CropDataset, collate, index_corpus
from distill.training.loss import DistillLoss, compute_loss
from distill.training.runs import (
    MetricsLog,
    adamw_with_schedule,
    pick_device,
    read_config,
    resolve_autocast_dtype,
    restore,
    rng_state,
    save_checkpoint,
    start_run,
)

# ---- config ------------------------------------------------------------------------------------------------

@dataclass
class DataConfig:
    train: str = ""  # directory of .flac/.wav (recursive) or fairseq .tsv manifest
    crop_samples: int = 250_000  # random crop length (DistilHuBERT: 250,000 samples)
    batch_size: int = 24  # global batch, split across processes
    num_workers: int = 2  # data-loading worker processes per training process
    bucket_batches: int = 50  # batches per length-sorted bucket


@dataclass
class OptimConfig:
    lr: float = 2e-4  # peak learning rate (AdamW)
    total_steps: int = 200_000
    warmup_fraction: float = 0.07  # linear warm-up, then linear decay to 0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    clip_norm: float = 5.0  # gradient clipping (max global norm)
    cosine_weight: float = 1.0  # λ of the cosine term
    # Weights of the first target layers' losses, in student.target_layers order; the target layers after them (and
    # the layer-0 term of student.layer0_loss) weigh 1. The shipped GenDistiller configs weigh the first target, the
    # base of the chain whose error every later step carries, twice: [2.0] (BENCHMARKS.md §4.2).
    layer_weights: list[float] = field(default_factory=list)


@dataclass
class RunConfig:
    output_dir: str = "runs/distill"  # checkpoints/, tensorboard/, metrics.jsonl go here
    seed: int = 0
    device: str = "auto"  # auto: cuda if available, else cpu
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or "bf16" / "fp32"
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # newest step checkpoints kept (older ones are removed)
    progress: bool = True  # tqdm progress bar


@dataclass
class DistillConfig:
    teacher: str = ""  # teacher spec, see distill.teachers.load_teacher
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        weights = self.optim.layer_weights
        if len(weights) > len(self.student.target_layers) or min(weights, default=0) < 0:
            raise ValueError(f"optim.layer_weights must give weights >= 0 for at most the "
                             f"{len(self.student.target_layers)} target layers, got {weights}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SECTIONS = {"student": StudentConfig, "data": DataConfig, "optim": OptimConfig, "run": RunConfig}


def config_from_dict(raw: dict[str, Any]) -> DistillConfig:
    unknown = sorted(set(raw) - {"teacher", *_SECTIONS})
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; top-level keys are teacher, {', '.join(_SECTIONS)}")
    teacher = raw.get("teacher", "")
    if not isinstance(teacher, str):
        raise ValueError(f"config key teacher: expected a string spec, got {teacher!r}")
    sections = {name: from_dict(cls, raw.get(name) or {}, name) for name, cls in _SECTIONS.items()}
    return DistillConfig(teacher=teacher, **sections)


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> DistillConfig:
    return config_from_dict(read_config(name_or_path, overrides))


# ---- distributed -------------------------------------------------------------------------------------------

@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_type: str) -> Distributed:
    if "RANK" not in os.environ:
        return Distributed()
    env = Distributed(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return env


# ---- training ----------------------------------------------------------------------------------------------

def teacher_history(config: StudentConfig, step: int, total_steps: int, seed: int) -> list[bool]:
    """Per generation step: True = the next step's history is the teacher's layer. Same on every rank."""
    steps = len(config.target_layers)
    if config.history == "teacher_forcing":
        return [True] * steps
    if config.history == "free_running":
        return [False] * steps
    progress = min(1.0, step / max(1, total_steps))
    probability = config.teacher_forcing_start + (config.teacher_forcing_end - config.teacher_forcing_start) * progress
    rng = random.Random(seed * 1_000_003 + step)
    return [rng.random() < probability for _ in range(steps)]


def prepare_student(config: DistillConfig, teacher: Teacher) -> Student:
    """The student config takes the teacher's geometry; weights are copied from the teacher where configured."""
    student_config = config.student
    if isinstance(teacher, CheckpointTeacher):
        geometry = teacher.model.config.to_dict()
        geometry.update(relative_position=False, gated_relative_position=False)  # student layers use plain attention
        student_config.geometry = geometry
    elif student_config.init_from_teacher:
        raise ValueError(f"student.init_from_teacher needs a checkpoint teacher (WavLM, fairseq or HF); {teacher.spec} "
                         "is not one: set student.init_from_teacher=false and give student.geometry")
    check_hop(teacher, math.prod(stride for _, _, stride in student_config.front_end_conv_layers()))
    if max(student_config.target_layers) > teacher.num_layers:
        raise ValueError(f"student.target_layers {student_config.target_layers} ask for layers the teacher {teacher.spec} "
                         f"lacks: it has {teacher.num_layers}; choose target layers from 1 to {teacher.num_layers}")
    student_config.decide_by_teacher(teacher.layers_end_in_layer_norm)
    width = student_config.geometry_config().dim
    if width != teacher.dim:
        raise ValueError(f"the student is {width} wide but the teacher {teacher.spec} is {teacher.dim} wide; the "
                         f"students predict the teacher's states as they are: set the width to {teacher.dim} "
                         "(student.geometry's dim)")
    student = build_student(StudentConfig(**student_config.to_dict()))
    if student_config.init_from_teacher:
        student.init_from_teacher(teacher.model)  # type: ignore[union-attr]
    if student_config.cnn_grad_mult == 0:
        student.feature_extractor.requires_grad_(False)
    return student


TARGET_STATISTICS_BATCHES = 32  # training batches whose valid frames give the target statistics


@torch.no_grad()
def measure_target_statistics(teacher: Teacher, dataset: CropDataset, sampler: BucketBatchSampler,
                              target_layers: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per target layer and dimension, the mean and standard deviation (floored at 1e-3 of the layer's mean std) of the
    teacher's states over the valid frames of the first TARGET_STATISTICS_BATCHES batches of epoch 0 of `sampler`."""
    total, square, frames = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64), 0
    for batch_keys in sampler.global_batches(0)[:TARGET_STATISTICS_BATCHES]:
        batch = collate([dataset[key] for key in batch_keys])
        if batch["waveforms"] is None:
            continue
        out = teacher.forward_padded(batch["waveforms"].to(device), batch["lengths"].to(device), max(target_layers))
        mask = valid_mask(out.lengths, out.hidden_states[0].shape[1])[..., None].double()
        states = torch.stack([out.hidden_states[layer] for layer in target_layers]).double() * mask  # (K, B, T, D)
        total, square = total + states.sum((1, 2)), square + (states ** 2).sum((1, 2))
        frames += int(mask.sum())
    if not frames:
        raise ValueError("student.target_standardization: no readable training audio to measure the target statistics on")
    mean = total / frames
    std = (square / frames - mean ** 2).clamp(min=0).sqrt()
    std = torch.maximum(std, 1e-3 * std.mean(-1, keepdim=True))
    return mean.float(), std.float()


def shares_teacher_cnn(student_config: StudentConfig, teacher: Teacher) -> bool:
    """Whether the student's CNN is, for the whole run, an exact copy of the teacher's: copied at initialisation,
    frozen (cnn_grad_mult=0) and not narrowed. Then the CNN runs once per batch for both."""
    return (isinstance(teacher, CheckpointTeacher) and student_config.init_from_teacher
            and student_config.cnn_grad_mult == 0 and not student_config.front_end_channels)


@dataclass
class StepResult:
    losses: DistillLoss  # per_layer / l1 / cosine aligned with `layers`
    layers: list[int]  # teacher layer of each loss term (0 = the front-end output, with student.layer0_loss)
    grad_norm: torch.Tensor  # global gradient norm before clipping


def train_step(model: torch.nn.Module, student: Student, teacher: Teacher, optimizer: torch.optim.Optimizer,
               waveforms: torch.Tensor, lengths: torch.Tensor, config: DistillConfig, use_teacher: list[bool],
               autocast_dtype: Optional[torch.dtype], world_size: int = 1) -> StepResult:
    """One optimisation step: teacher targets -> student -> masked loss -> backward -> clip -> optimizer step.

    `model` is the student as called (possibly DDP-wrapped or compiled), `student` the bare module. The learning
    rate schedule is the caller's. benchmarks/train_throughput.py times this very function.
    """
    target_layers = config.student.target_layers
    device_type = waveforms.device.type
    student_lengths = conv_output_lengths(lengths, config.student.front_end_conv_layers())
    with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        cnn_features = None
        with torch.no_grad():
            if shares_teacher_cnn(config.student, teacher):
                cnn_features = _teacher_cnn(teacher, waveforms, lengths)
                hidden_states = teacher.model.encoder(teacher.model.projection(cnn_features[0]), cnn_features[1],  # type: ignore[union-attr]
                                                      max(target_layers))
                teacher_out = TeacherOutput(hidden_states, cnn_features[1])
            else:
                teacher_out = teacher.forward_padded(waveforms, lengths, num_layers=max(target_layers))
        teacher_out = align_to_student(teacher_out, student_lengths, int(student_lengths.max()))
        targets = [teacher_out.hidden_states[layer] for layer in target_layers]
        out = model(waveforms, lengths, targets, use_teacher, cnn_features=cnn_features)
    total_frames = teacher_out.lengths.sum().float()
    if world_size > 1:  # normalise by the global frame count so DDP's gradient mean equals one big batch
        dist.all_reduce(total_frames)
        total_frames = total_frames / world_size
    predictions, layers = list(out.predictions), list(target_layers)
    weights = list(config.optim.layer_weights) + [1.0] * (len(layers) - len(config.optim.layer_weights))
    if config.student.layer0_loss:
        predictions, targets, layers = [out.layer0] + predictions, [teacher_out.hidden_states[0]] + targets, [0] + layers
        weights = [1.0] + weights
    losses = compute_loss(predictions, targets, teacher_out.lengths, config.optim.cosine_weight, total_frames, weights)

    optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), config.optim.clip_norm)
    optimizer.step()
    return StepResult(losses, layers, grad_norm)


def _teacher_cnn(teacher: Teacher, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's CNN output (B, T, C) and frame lengths (the first half of `SSLModel.front_end`)."""
    model = teacher.model  # type: ignore[attr-defined]
    return model.feature_extractor(model_input(model.config, waveforms, lengths), lengths)


def train(config: DistillConfig, resume: bool = False, teacher: Optional[Teacher] = None) -> Path:
    """Runs distillation; returns the path of the last checkpoint. `teacher`: a teacher built in Python (e.g.
    `ModuleTeacher(my_model)`) instead of the one `config.teacher` names."""
    output_dir = Path(config.run.output_dir)
    device = pick_device(config.run.device, int(os.environ.get("LOCAL_RANK", 0)))
    env = setup_distributed(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    autocast_dtype = resolve_autocast_dtype(config.run.precision, device)

    checkpoint = start_run(output_dir, resume, read_student_checkpoint, config.run.seed)
    if checkpoint is not None:
        config.student = from_dict(StudentConfig, checkpoint["config"]["student"], "student")  # architecture from the checkpoint

    teacher = load_teacher(config.teacher, device) if teacher is None else teacher.to(device)
    config.teacher = teacher.spec
    if checkpoint is not None and checkpoint["teacher"]["num_parameters"] != teacher.num_parameters():
        raise ValueError(f"--resume: the checkpoint was distilled from {checkpoint['teacher']['spec']}, "
                         f"which differs from the configured teacher {config.teacher}")
    student = prepare_student(config, teacher).to(device)
    model: torch.nn.Module = student
    if env.world_size > 1:
        model = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)

    optimizer, scheduler = adamw_with_schedule((p for p in student.parameters() if p.requires_grad), config.optim)
    total_steps = config.optim.total_steps

    corpus = index_corpus(config.data.train)
    sampler = BucketBatchSampler(corpus.items, config.data.batch_size, config.data.crop_samples, config.run.seed,
                                 env.rank, env.world_size, config.data.bucket_batches)
    loader = DataLoader(CropDataset(corpus.items, config.data.crop_samples), batch_sampler=sampler, collate_fn=collate,
                        num_workers=config.data.num_workers, generator=torch.Generator().manual_seed(config.run.seed),
                        pin_memory=device.type == "cuda")

    step, epoch, batch_in_epoch = 0, 0, 0
    if checkpoint is not None:
        step, epoch, batch_in_epoch = restore(checkpoint, "student", student, optimizer, scheduler)
    elif config.student.target_standardization is True:  # a draw of its own (seed + 1): the training batches stay the same
        statistics_sampler = BucketBatchSampler(corpus.items, config.data.batch_size, config.data.crop_samples,
                                                config.run.seed + 1, bucket_batches=config.data.bucket_batches)
        student.set_target_statistics(*measure_target_statistics(
            teacher, CropDataset(corpus.items, config.data.crop_samples), statistics_sampler,
            config.student.target_layers, device))

    metrics: Optional[MetricsLog] = None
    if env.is_main:
        (output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        metrics = MetricsLog(output_dir, step)
        print(f"[distill] teacher {teacher.spec}: {teacher.num_layers} layers, width {teacher.dim}")
        print(f"[distill] student {config.student.kind}: {sum(p.numel() for p in student.parameters()):,} parameters")
        print(f"[distill] data {config.data.train}: {len(corpus.items)} files, {corpus.hours:.2f} h; "
              f"{len(corpus.problems)} files left out")
        for problem in corpus.problems:
            print(f"[distill] skipped {problem}")

    def save() -> None:
        if env.is_main:
            save_checkpoint(output_dir, step, {
                "format": CHECKPOINT_FORMAT, "config": config.to_dict(), "student": student.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch,
                "batch_in_epoch": batch_in_epoch, "rng": rng_state(), "teacher": teacher.identity(),
            }, config.run.keep_checkpoints)

    failed_reads: set[str] = set()
    progress = tqdm(total=total_steps, initial=step, disable=not (env.is_main and config.run.progress), desc="distill",
                    dynamic_ncols=True)
    last_log_time, audio_since_log = time.time(), 0.0
    model.train()
    while step < total_steps:
        sampler.set_position(epoch, batch_in_epoch)
        for batch in loader:
            for message in batch["failed"]:
                if message not in failed_reads and env.is_main:
                    print(f"[distill] skipped {message}")
                failed_reads.add(message)
            batch_in_epoch += 1
            if batch["waveforms"] is None:
                continue
            waveforms, lengths = batch["waveforms"].to(device, non_blocking=True), batch["lengths"].to(device)
            use_teacher = teacher_history(config.student, step, total_steps, config.run.seed)
            result = train_step(model, student, teacher, optimizer, waveforms, lengths, config, use_teacher, autocast_dtype,
                                env.world_size)
            losses, grad_norm = result.losses, result.grad_norm
            scheduler.step()
            step += 1
            progress.update(1)
            audio_since_log += float(batch["lengths"].sum()) * env.world_size / 16000  # host copy: no device sync

            if env.is_main and (step % config.run.log_every == 0 or step in (1, total_steps)):
                elapsed = time.time() - last_log_time
                record = {"step": step, "loss": losses.total.item(), "lr": scheduler.get_last_lr()[0],
                          "grad_norm": float(grad_norm), "audio_seconds_per_second": audio_since_log / max(elapsed, 1e-9)}
                for layer, total, l1, cosine in zip(result.layers, losses.per_layer, losses.l1, losses.cosine):
                    record.update({f"loss_layer_{layer}": total.item(), f"l1_layer_{layer}": l1.item(), f"cos_layer_{layer}": cosine.item()})
                metrics.log(record)  # type: ignore[union-attr]
                progress.set_postfix(loss=f"{record['loss']:.3f}", audio_s_per_s=f"{record['audio_seconds_per_second']:.1f}")
                last_log_time, audio_since_log = time.time(), 0.0
            if step % config.run.checkpoint_every == 0 or step == total_steps:
                save()
            if step >= total_steps:
                break
        else:
            epoch, batch_in_epoch = epoch + 1, 0
    progress.close()
    if env.is_main:
        if failed_reads:
            print(f"[distill] {len(failed_reads)} files failed to read and were skipped")
        metrics.close()  # type: ignore[union-attr]
    if env.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return output_dir / "checkpoints" / f"step_{step:08d}.pt"

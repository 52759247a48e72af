"""Distillation training: `gendistiller distill --config FILE.yaml [key.sub=value ...] [--resume]`.

Reads top to bottom: distributed setup, teacher/student/data, optimiser and schedule, checkpoints, then the step
(teacher -> student -> loss -> clip -> optimizer step) that the shared loop (`distill.training.loop`) runs. The config
is distill.training.config.
Single process, or `torchrun --nproc_per_node N -m distill.cli distill ...` (DDP; gloo on CPU, nccl on GPU).
"""
from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from distill.io.configuration import ConfigError
from distill.io.run_folder import RunLock
from distill.models import GenDistillerConfig, Student, StudentConfig, TeacherFacts, build_student, resolve_student
from distill.models.resolve import PARAMETER_BUDGET, share_of_distilhubert
from distill.models.student_checkpoint import CHECKPOINT_FORMAT, read_student_checkpoint
from distill.nn.components import conv_output_lengths, valid_mask
from distill.nn.ssl_encoder import model_input
from distill.teachers import CheckpointTeacher, Teacher, TeacherOutput, load_teacher
from distill.teachers.base import align_to_student
from distill.training.config import (  # noqa: F401  (load_config: with train)
    DistillConfig,
    TrainingConfig,
    check_config,
    check_data,
    load_config,
)
from distill.training.data import BucketBatchSampler, CorpusIndex, CropDataset, collate, index_corpus
from distill.training.guards import check_finite_state, step_is_finite
from distill.training.loop import LoopSettings, Position, run_loop
from distill.training.loss import DistillLoss, compute_loss
from distill.training.resumption import resumed_config
from distill.training.runs import (
    MetricsLog,
    adamw_with_schedule,
    checkpoint_path,
    latest_checkpoint,
    pick_device,
    resolve_autocast_dtype,
    restore,
    rng_state,
    save_checkpoint,
    start_run,
)

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

def teacher_history(training: TrainingConfig, num_steps: int, step: int, total_steps: int, seed: int) -> list[bool]:
    """Per generation step (of `num_steps`): True = the next step's history is the teacher's layer. The same on every
    rank."""
    if training.history == "teacher_forcing":
        return [True] * num_steps
    if training.history == "free_running":
        return [False] * num_steps
    progress = min(1.0, step / max(1, total_steps))
    start, end = training.teacher_forcing_start, training.teacher_forcing_end
    probability = start + (end - start) * progress
    rng = random.Random(seed * 1_000_003 + step)
    return [rng.random() < probability for _ in range(num_steps)]


def teacher_facts(teacher: Teacher) -> TeacherFacts:
    """What the student config is resolved against; a checkpoint teacher also gives the student its geometry."""
    geometry = teacher.model.config.to_dict() if isinstance(teacher, CheckpointTeacher) else None
    return TeacherFacts(teacher.spec, teacher.dim, teacher.num_layers, teacher.layers_end_in_layer_norm,
                        teacher.downsample_rate, geometry)


def prepare_student(config: DistillConfig, teacher: Teacher) -> Student:
    """The student of `config.student`, resolved for `teacher` (the student's `config` is the resolved one); weights
    are copied from the teacher where configured. `config` is left as it is."""
    student = build_student(resolve_student(config.student, teacher_facts(teacher)))
    if student.config.init_from_teacher:
        student.init_from_teacher(teacher.model)  # type: ignore[union-attr]
    if student.config.cnn_grad_mult == 0:
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
    layers: list[int]  # teacher layer of each loss term (0 = the front-end output, with optim.layer0_loss)
    grad_norm: torch.Tensor  # global gradient norm before clipping
    applied: bool = True  # False: the loss or gradient norm was not finite and the optimizer step was skipped

    @property
    def loss(self) -> torch.Tensor:
        return self.losses.total


def train_step(model: torch.nn.Module, student: Student, teacher: Teacher, optimizer: torch.optim.Optimizer,
               waveforms: torch.Tensor, lengths: torch.Tensor, config: DistillConfig, use_teacher: list[bool],
               autocast_dtype: Optional[torch.dtype], world_size: int = 1) -> StepResult:
    """One optimisation step: teacher targets -> student -> masked loss -> backward -> clip -> optimizer step, the
    last only when the loss and gradient norm are finite (`StepResult.applied`).

    `model` is the student as called (possibly DDP-wrapped or compiled), `student` the bare module, whose resolved
    config gives the architecture; `config` gives the training schedule and the loss. The learning rate schedule is the
    caller's. benchmarks/train_throughput.py times this very function.
    """
    target_layers = student.config.target_layers
    device_type = waveforms.device.type
    student_lengths = conv_output_lengths(lengths, student.config.front_end_conv_layers())
    with torch.autocast(device_type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        cnn_features = None
        with torch.no_grad():
            if shares_teacher_cnn(student.config, teacher):
                cnn_features = _teacher_cnn(teacher, waveforms, lengths)
                hidden_states = teacher.model.encoder(teacher.model.projection(cnn_features[0]), cnn_features[1],  # type: ignore[union-attr]
                                                      max(target_layers))
                teacher_out = TeacherOutput(hidden_states, cnn_features[1])
            else:
                teacher_out = teacher.forward_padded(waveforms, lengths, num_layers=max(target_layers))
        teacher_out = align_to_student(teacher_out, student_lengths, int(student_lengths.max()))
        targets = [teacher_out.hidden_states[layer] for layer in target_layers]
        out = model(waveforms, lengths, targets, use_teacher, cnn_features=cnn_features,
                    history_gradient=config.training.history_gradient)
    total_frames = teacher_out.lengths.sum().float()
    if world_size > 1:  # normalise by the global frame count so DDP's gradient mean equals one big batch
        dist.all_reduce(total_frames)
        total_frames = total_frames / world_size
    predictions, layers = list(out.predictions), list(target_layers)
    weights = list(config.optim.layer_weights) + [1.0] * (len(layers) - len(config.optim.layer_weights))
    if config.optim.layer0_loss:
        predictions, targets, layers = [out.layer0] + predictions, [teacher_out.hidden_states[0]] + targets, [0] + layers
        weights = [1.0] + weights
    losses = compute_loss(predictions, targets, teacher_out.lengths, config.optim.cosine_weight, total_frames, weights)

    optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), config.optim.clip_norm)
    applied = step_is_finite(losses.total, grad_norm, world_size)
    if applied:  # a NaN or infinite step would poison every weight: it is not taken
        optimizer.step()
    return StepResult(losses, layers, grad_norm, applied)


def _teacher_cnn(teacher: Teacher, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's CNN output (B, T, C) and frame lengths (the first half of `SSLModel.front_end`)."""
    model = teacher.model  # type: ignore[attr-defined]
    return model.feature_extractor(model_input(model.config, waveforms, lengths), lengths)


def train(config: DistillConfig, resume: bool = False, teacher: Optional[Teacher] = None) -> Path:
    """Runs distillation; returns the path of the last checkpoint. `teacher`: a teacher built in Python (e.g.
    `ModuleTeacher(my_model)`) instead of the one `config.teacher` names. Every config value is checked before any
    work (`check_config`), and the run holds its output folder (`RunLock`: one run per folder) until it ends. On
    SIGINT or SIGTERM the current step finishes, a checkpoint is written and `RunStopped` is raised."""
    check_config(config, teacher_given=teacher is not None)
    main_process = int(os.environ.get("RANK", 0)) == 0  # the one that writes: the folder is its to hold
    with RunLock.folder(config.run.output_dir, "run.output_dir") if main_process else contextlib.nullcontext():
        return _loop(_start(config, resume, teacher))


@dataclass
class _Run:
    """A started run: what the loop reads and where it stands."""

    config: DistillConfig
    env: Distributed
    device: torch.device
    autocast_dtype: Optional[torch.dtype]
    teacher: Teacher
    student: Student
    model: torch.nn.Module  # the student as called (DDP-wrapped on several processes)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: BucketBatchSampler
    loader: DataLoader
    metrics: Optional[MetricsLog]  # the main process's
    position: Position = field(default_factory=Position)
    data: dict[str, Any] = field(default_factory=dict)  # the training data's files and hours (a model card reports them)

    @property
    def output_dir(self) -> Path:
        return Path(self.config.run.output_dir)

    def save(self) -> Path:
        """A checkpoint of the current step (never of non-finite weights), then `latest` points to it; the main
        process writes it, every process returns its path."""
        at = self.position
        if not self.env.is_main:
            return checkpoint_path(self.output_dir, at.step)
        check_finite_state(self.student.state_dict(), at.step, at.last_checkpoint)
        return save_checkpoint(self.output_dir, at.step, {
            "format": CHECKPOINT_FORMAT, "config": self.config.to_dict(), "student": self.student.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "step": at.step,
            "epoch": at.epoch, "batch_in_epoch": at.batch_in_epoch, "rng": rng_state(),
            "teacher": self.teacher.identity(), "data": self.data,
        }, self.config.run.keep_checkpoints)


def _start(config: DistillConfig, resume: bool, teacher: Optional[Teacher]) -> _Run:
    """Device, processes, teacher, student, optimiser, data and the resumed state: a run ready for its first step."""
    output_dir = Path(config.run.output_dir)
    device = pick_device(config.run.device, int(os.environ.get("LOCAL_RANK", 0)))
    env = setup_distributed(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    autocast_dtype = resolve_autocast_dtype(config.run.precision, device)

    checkpoint = start_run(output_dir, resume, read_student_checkpoint, config.run.seed)
    teacher = _load_teacher(config.teacher, device) if teacher is None else teacher.to(device)
    if checkpoint is not None:
        config = resumed_config(config, checkpoint, teacher_facts(teacher), teacher.identity(), output_dir, env.is_main)
    student = prepare_student(config, teacher).to(device)
    config = replace(config, teacher=teacher.spec, student=student.config)  # what the run's files record
    check_data(config.data, student.config.front_end_conv_layers())  # the resolved CNN: the teacher's may differ
    model: torch.nn.Module = student
    if env.world_size > 1:
        model = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)

    optimizer, scheduler = adamw_with_schedule((p for p in student.parameters() if p.requires_grad), config.optim)
    corpus = _index(config.data.train)
    sampler = BucketBatchSampler(corpus.items, config.data.batch_size, config.data.crop_samples, config.run.seed,
                                 env.rank, env.world_size, config.data.bucket_batches)
    loader = DataLoader(CropDataset(corpus.items, config.data.crop_samples), batch_sampler=sampler, collate_fn=collate,
                        num_workers=config.data.num_workers, generator=torch.Generator().manual_seed(config.run.seed),
                        pin_memory=device.type == "cuda")
    run = _Run(config, env, device, autocast_dtype, teacher, student, model, optimizer, scheduler, sampler, loader, None,
               data={"files": len(corpus.items), "hours": corpus.hours})
    if checkpoint is not None:
        step, epoch, batch_in_epoch = restore(checkpoint, "student", student, optimizer, scheduler)
        run.position = Position(step, epoch, batch_in_epoch, latest_checkpoint(output_dir))
    elif config.student.target_standardization:  # a draw of its own (seed + 1): the training batches stay the same
        statistics_sampler = BucketBatchSampler(corpus.items, config.data.batch_size, config.data.crop_samples,
                                                config.run.seed + 1, bucket_batches=config.data.bucket_batches)
        student.set_target_statistics(*measure_target_statistics(
            teacher, CropDataset(corpus.items, config.data.crop_samples), statistics_sampler,
            config.student.target_layers, device))
    if env.is_main:
        _announce(run, corpus)
    return run


def _load_teacher(spec: str, device: torch.device) -> Teacher:
    """The configured teacher; a spec that names no usable teacher is an error of the `teacher` key."""
    try:
        return load_teacher(spec, device)
    except (ValueError, OSError, ImportError) as error:
        raise ConfigError("teacher", str(error)) from None


def _index(source: str) -> CorpusIndex:
    """The training corpus; one with no usable audio is an error of the `data.train` key."""
    try:
        return index_corpus(source)
    except (ValueError, OSError) as error:
        raise ConfigError("data.train", str(error)) from None


def _announce(run: _Run, corpus: CorpusIndex) -> None:
    """The run's config.yaml and metrics log, and what it trains on (the main process)."""
    config, teacher = run.config, run.teacher
    (run.output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run.output_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    at = run.position
    run.metrics = MetricsLog(run.output_dir, at.step)
    if at.last_checkpoint is not None:
        print(f"[distill] resuming from step {at.step} of {config.optim.total_steps} ({at.last_checkpoint})")
    print(f"[distill] teacher {teacher.spec}: {teacher.num_layers} layers, width {teacher.dim}")
    print(f"[distill] student {config.student.kind}: {sum(p.numel() for p in run.student.parameters()):,} parameters"
          f"{_budget_note(run.student.config, teacher)}")
    print(f"[distill] data {config.data.train}: {len(corpus.items)} files, {corpus.hours:.2f} h; "
          f"{len(corpus.problems)} files left out")
    for problem in corpus.problems:
        print(f"[distill] skipped {problem}")


def _budget_note(student: StudentConfig, teacher: Teacher) -> str:
    """A GenDistiller's share of the parameters of the DistilHuBERT of the same teacher and front-end, and what to do
    when it is over PARAMETER_BUDGET."""
    if not isinstance(student, GenDistillerConfig):
        return ""
    share = share_of_distilhubert(student, teacher_facts(teacher))
    note = f" ({100 * share:.1f}% of the DistilHuBERT of this teacher and front-end)"
    if share <= PARAMETER_BUDGET:
        return note
    return (f"{note}\n[distill] warning: over the {100 * PARAMETER_BUDGET:.0f}% budget: let student.step_ffn_dims=auto "
            "size the step blocks, or narrow the front-end (student.front_end_channels, e.g. 128; below 768 wide a "
            "copied 512-channel CNN is most of both students)")


def _loop(run: _Run) -> Path:
    """Trains to optim.total_steps (`distill.training.loop`: a step is applied only if finite; SIGINT / SIGTERM stop
    after the current step, with a checkpoint); returns the last checkpoint's path."""
    config, env = run.config, run.env
    settings = LoopSettings("distill", config.optim.total_steps, config.run.log_every, config.run.checkpoint_every,
                            run.output_dir, config.data.train, config.run.max_nonfinite_steps, config.run.progress,
                            {"loss": "loss", "audio_s_per_s": "audio_seconds_per_second"}, env.is_main, env.world_size)

    def take_step(batch: dict[str, Any]) -> StepResult:
        waveforms, lengths = batch["waveforms"].to(run.device, non_blocking=True), batch["lengths"].to(run.device)
        use_teacher = teacher_history(config.training, len(config.student.target_layers), run.position.step,
                                      config.optim.total_steps, config.run.seed)
        return train_step(run.model, run.student, run.teacher, run.optimizer, waveforms, lengths, config, use_teacher,
                          run.autocast_dtype, env.world_size)

    run.model.train()
    failed_reads = run_loop(settings, run.position, run.sampler, run.loader, run.scheduler, take_step,
                            lambda result, audio_per_second: _record(run, result, audio_per_second), run.save,
                            run.metrics)
    _finish(run, failed_reads)
    return checkpoint_path(run.output_dir, run.position.step)


def _record(run: _Run, result: StepResult, audio_per_second: float) -> dict[str, float]:
    """One metrics record of the step just made."""
    losses = result.losses
    record = {"step": run.position.step, "loss": losses.total.item(), "lr": run.scheduler.get_last_lr()[0],
              "grad_norm": float(result.grad_norm), "audio_seconds_per_second": audio_per_second}
    for layer, total, l1, cosine in zip(result.layers, losses.per_layer, losses.l1, losses.cosine):
        record.update({f"loss_layer_{layer}": total.item(), f"l1_layer_{layer}": l1.item(),
                       f"cos_layer_{layer}": cosine.item()})
    return record


def _finish(run: _Run, failed_reads: set[str]) -> None:
    if run.env.is_main:
        if failed_reads:
            print(f"[distill] {len(failed_reads)} files failed to read and were skipped")
        run.metrics.close()  # type: ignore[union-attr]
    if run.env.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()

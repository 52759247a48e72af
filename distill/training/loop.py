"""The loop every training run here shares (distillation, teacher pretraining): batch -> step (applied only when its
loss and gradient norm are finite) -> schedule -> log -> checkpoint, until `total_steps`. A run resumes exactly from
its (epoch, batch in epoch); SIGINT / SIGTERM stop it after the current step with a checkpoint (`RunStopped`). What a
step is, what a log record holds and what a checkpoint keeps are the caller's: `take_step`, `record`, `save`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

import torch
from tqdm import tqdm

from distill.io.audio import SAMPLE_RATE
from distill.io.run_folder import RunStopped
from distill.training.data import BucketBatchSampler
from distill.training.guards import StepGuard, stop_on_signals
from distill.training.runs import MetricsLog, checkpoint_path


@dataclass
class Position:
    """Where a run stands: what its checkpoints record and a resumed run starts from."""

    step: int = 0  # optimizer steps applied
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of `epoch` drawn so far (taken, skipped or not applied)
    last_checkpoint: Optional[Path] = None  # the newest checkpoint of the run (written or resumed from)


class StepOutcome(Protocol):
    loss: torch.Tensor
    grad_norm: torch.Tensor  # before clipping
    applied: bool  # False: not finite, and the optimizer step was skipped


@dataclass
class LoopSettings:
    label: str  # the log prefix and progress bar's name (`distill`, `pretrain`)
    total_steps: int
    log_every: int
    checkpoint_every: int
    output_dir: Path  # the run folder
    data: str  # the training data, named in errors
    max_nonfinite_steps: int
    progress: bool  # show the progress bar
    postfix: Mapping[str, str]  # progress bar label -> key of the log record it shows
    is_main: bool = True  # this process logs, prints and writes
    world_size: int = 1


def run_loop(settings: LoopSettings, position: Position, sampler: BucketBatchSampler, loader: Iterable[dict[str, Any]],
             scheduler: Any, take_step: Callable[[dict[str, Any]], StepOutcome],
             record: Callable[[StepOutcome, float], dict[str, float]], save: Callable[[], Path],
             metrics: Optional[MetricsLog]) -> set[str]:
    """Trains from `position` (updated in place) to `settings.total_steps`; returns the messages of the files that
    failed to read. `take_step(batch)` makes one step at `position.step`; `record(outcome, audio seconds per second)`
    is a log record of the step just made (the main process's, into `metrics`); `save()` writes a checkpoint of
    `position` (not of non-finite weights) and returns its path, which becomes `position.last_checkpoint`."""
    guard = StepGuard(settings.max_nonfinite_steps, settings.data, settings.label, log=settings.is_main)
    failed_reads: set[str] = set()
    total_steps = settings.total_steps
    progress = tqdm(total=total_steps, initial=position.step, disable=not (settings.is_main and settings.progress),
                    desc=settings.label, dynamic_ncols=True)
    last_log_time, audio_since_log = time.time(), 0.0
    with stop_on_signals() as stop:
        while position.step < total_steps:
            sampler.set_position(position.epoch, position.batch_in_epoch)
            for batch in loader:
                signum = stop.requested(settings.world_size)
                if signum:
                    progress.close()
                    if position.last_checkpoint != checkpoint_path(settings.output_dir, position.step):
                        position.last_checkpoint = save()
                    raise RunStopped(position.step, signum, position.last_checkpoint)
                position.batch_in_epoch += 1
                for message in sorted(set(batch["failed"]) - failed_reads):
                    if settings.is_main:
                        print(f"[{settings.label}] skipped {message}")
                failed_reads.update(batch["failed"])
                if batch["waveforms"] is None:
                    guard.skipped_batch(batch["failed"])
                    continue
                outcome = take_step(batch)
                if not outcome.applied:
                    guard.nonfinite_step(position.step, outcome.loss.item(), outcome.grad_norm.item(), batch["paths"],
                                         position.last_checkpoint)
                    continue
                guard.applied_step()
                scheduler.step()
                position.step += 1
                progress.update(1)
                audio_since_log += float(batch["lengths"].sum()) * settings.world_size / SAMPLE_RATE  # no device sync

                if settings.is_main and (position.step % settings.log_every == 0 or position.step in (1, total_steps)):
                    entry = record(outcome, audio_since_log / max(time.time() - last_log_time, 1e-9))
                    if guard.nonfinite_total:
                        entry["nonfinite_steps"] = guard.nonfinite_total
                    metrics.log(entry)  # type: ignore[union-attr]
                    progress.set_postfix({label: f"{entry[key]:.3f}" for label, key in settings.postfix.items()})
                    last_log_time, audio_since_log = time.time(), 0.0
                if position.step % settings.checkpoint_every == 0 or position.step == total_steps:
                    position.last_checkpoint = save()
                if position.step >= total_steps:
                    break
            else:
                guard.end_of_epoch()
                position.epoch, position.batch_in_epoch = position.epoch + 1, 0
    progress.close()
    return failed_reads

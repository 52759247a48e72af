"""What keeps a training loop (distillation, teacher pretraining) from corrupting its run or spinning without end.

- `StepGuard`: a step whose loss or gradient norm is not finite is not applied (the caller skips the optimizer step
  and the step count stays); it is printed with the files of its batch, and `max_nonfinite_steps` of them in a row
  stop the run with an error naming those files. Batches whose every file fails to read make no progress:
  `SKIPPED_BATCHES` of them in a row, or an epoch without a step, stop the run with an error naming the data folder.
- `check_finite_state`: a checkpoint is written only when every weight is finite.
- `stop_on_signals`: SIGINT and SIGTERM ask the loop to stop after the current step; the loop writes its checkpoint
  and raises `RunStopped`. A second signal stops at once (KeyboardInterrupt).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
import torch.distributed as dist

from distill.io.checkpoint_files import non_finite_tensors

SKIPPED_BATCHES = 20  # batches in a row whose every file failed to read before a run gives up on its data


class NonFiniteError(ValueError):
    """Training produced NaN or infinite values the run cannot go on from."""


class NoProgressError(ValueError):
    """The training data yields no batch a step can be made on."""


def step_is_finite(loss: torch.Tensor, grad_norm: torch.Tensor, world_size: int = 1) -> bool:
    """Whether a step's loss and gradient norm are both finite, agreed by every process (one device sync)."""
    finite = (torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)).float()
    if world_size > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite)


@dataclass
class StepGuard:
    """Counts what went wrong in a row; raises once it is too much. `data`: the training data, named in errors;
    `label`: the loop's log prefix (`distill`, `pretrain`)."""

    max_nonfinite_steps: int
    data: str
    label: str
    log: bool = True  # this process prints (the main one)
    nonfinite_total: int = 0
    _nonfinite_batches: list[str] = field(default_factory=list)
    _skipped_in_a_row: int = 0
    _failures: list[str] = field(default_factory=list)
    _tried_this_epoch: int = 0  # batches a step was computed on (applied or not: max_nonfinite_steps ends those)
    _epochs_without_step: int = 0

    def skipped_batch(self, failed: Sequence[str]) -> None:
        """A batch of which no file could be read."""
        self._skipped_in_a_row += 1
        self._failures = (self._failures + list(failed))[-3:]
        if self._skipped_in_a_row >= SKIPPED_BATCHES:
            raise NoProgressError(f"{self._skipped_in_a_row} batches in a row of {self.data} had no readable file; "
                                  f"nothing to train on (last reasons: {'; '.join(self._failures)})")

    def nonfinite_step(self, step: int, loss: float, grad_norm: float, paths: Sequence[str], checkpoint: Any) -> None:
        """A step that was not applied; `checkpoint`: the latest one, which stays `latest` if the run stops."""
        self.nonfinite_total += 1
        self._tried_this_epoch += 1
        self._nonfinite_batches.append(", ".join(paths))
        if self.log:
            print(f"[{self.label}] step {step + 1}: loss {loss:g}, gradient norm {grad_norm:g}: not applied "
                  f"({len(self._nonfinite_batches)} in a row); batch: {', '.join(paths)}", flush=True)
        if len(self._nonfinite_batches) >= self.max_nonfinite_steps:
            raise NonFiniteError(
                f"{len(self._nonfinite_batches)} batches in a row gave a non-finite loss or gradient norm at step "
                f"{step + 1} and were not applied (run.max_nonfinite_steps); their files: "
                f"[{'], ['.join(self._nonfinite_batches)}]; the last checkpoint stays latest "
                f"({checkpoint or 'none written'}); check these files or lower optim.lr")

    def applied_step(self) -> None:
        self._nonfinite_batches.clear()
        self._skipped_in_a_row = 0
        self._tried_this_epoch += 1

    def end_of_epoch(self) -> None:
        """Two epochs in a row without a batch to compute a step on (the first may be the rest of a resumed one) mean
        none will come."""
        self._epochs_without_step = 0 if self._tried_this_epoch else self._epochs_without_step + 1
        if self._epochs_without_step >= 2:
            raise NoProgressError(f"a whole epoch of {self.data} gave no batch to train on (every file was skipped; "
                                  f"last reasons: {'; '.join(self._failures) or 'none'})")
        self._tried_this_epoch = 0


def check_finite_state(weights: Mapping[str, Any], step: int, checkpoint: Any) -> None:
    """NonFiniteError before a checkpoint of non-finite weights is written; the earlier one stays `latest`."""
    bad = non_finite_tensors(weights)
    if bad:
        raise NonFiniteError(f"the weights are not finite after step {step} ({', '.join(bad[:3])}"
                             f"{' and more' if len(bad) > 3 else ''}); nothing written, the last checkpoint stays "
                             f"latest ({checkpoint or 'none written'}); lower optim.lr")


class StopFlag:
    """Set by the first SIGINT or SIGTERM; `requested` is agreed by every process."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None

    def requested(self, world_size: int = 1) -> Optional[int]:
        """The signal that asked to stop (on any process), or None."""
        if world_size == 1:
            return self.signum
        flag = torch.tensor(float(self.signum or 0))
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag) or None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopFlag]:
    """While the loop runs, SIGINT and SIGTERM set the flag instead of ending the process; a second one raises
    KeyboardInterrupt. The previous handlers come back afterwards. Outside the main thread, signals are left alone."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handle(signum: int, frame: Any) -> None:
        if flag.signum is not None:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopping now")
        flag.signum = signum

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

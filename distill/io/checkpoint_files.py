"""Checkpoint files: reading with errors that name the file and the problem, and crash-safe writing."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch


class CheckpointError(ValueError):
    """A file that is not the checkpoint it should be: missing, unreadable, or of the wrong format/family."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load with errors that name the file and the problem. Teacher files are trusted user files
    (as in s3prl), so full unpickling is allowed; fairseq checkpoints hold argparse/omegaconf objects."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file (.pt)")
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, ModuleNotFoundError,
            OSError) as error:  # a truncated zip archive is an OSError
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found a {type(checkpoint).__name__}")
    return checkpoint


def non_finite_tensors(weights: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or infinite values."""
    return [name for name, value in weights.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.isfinite().all())]


def check_finite_weights(weights: Mapping[str, Any], path: str | Path) -> None:
    """CheckpointError naming the file and its first non-finite tensors, if any: such weights compute only NaN."""
    bad = non_finite_tensors(weights)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise CheckpointError(f"{path}: non-finite weights (NaN or inf) in {', '.join(bad[:3])}{more}; this checkpoint "
                              "cannot be used: take an earlier one")


def save_atomically(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: a crash never leaves a torn file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)

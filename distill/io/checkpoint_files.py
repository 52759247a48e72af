"""Checkpoint files: reading with errors that name the file and the problem, and crash-safe writing."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

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
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, ModuleNotFoundError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, found a {type(checkpoint).__name__}")
    return checkpoint


def save_atomically(obj: Any, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: a crash never leaves a torn file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)

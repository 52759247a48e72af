"""Student checkpoints written by `gendistiller distill`: one dict with the format tag, the resolved config, the
student's weights and the training state. Reading one needs only the students, not the trainer or a teacher."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from distill.io.checkpoint_files import CheckpointError, read_checkpoint
from distill.io.configuration import from_dict
from distill.models import Student, StudentConfig, build_student

CHECKPOINT_FORMAT = "gendistiller-checkpoint-1"


def read_student_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint written by `gendistiller distill`, with a clear error for anything else."""
    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = "a WavLM/fairseq teacher checkpoint" if "cfg" in checkpoint else f"a dict with keys {sorted(checkpoint)[:8]}"
        raise CheckpointError(f"{path}: not a GenDistiller student checkpoint (format {CHECKPOINT_FORMAT!r}); found {found}")
    return checkpoint


def load_student(path: str | Path, device: str | torch.device = "cpu") -> tuple[Student, dict[str, Any]]:
    """A trained student from its checkpoint, in eval mode, with the checkpoint dict."""
    checkpoint = read_student_checkpoint(path)
    student = build_student(from_dict(StudentConfig, checkpoint["config"]["student"], "student"))
    student.load_state_dict(checkpoint["student"])
    return student.to(device).eval(), checkpoint

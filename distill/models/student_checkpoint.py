"""Student checkpoints written by `gendistiller distill`: one dict with the format tag, the resolved config, the
student's weights and the training state. Reading one needs only the students, not the trainer or a teacher."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from distill.io.checkpoint_files import CheckpointError, check_finite_weights, read_checkpoint
from distill.models import Student, build_student, student_config_from_dict
from distill.models.student_config import STUDENT_CONFIGS, field_names

CHECKPOINT_FORMAT = "gendistiller-checkpoint-1"

# Keys of the flat `student` section that checkpoints written before the per-kind configs hold besides the students'
# own fields: the training schedule (now the `training` section) and the layer-0 loss term (now in `optim`).
_TRAINING_KEYS = ("history", "history_gradient", "teacher_forcing_start", "teacher_forcing_end")
# What GenDistiller checkpoints written before these options exposed: h0, then the generated layers in the teacher's units.
_EXPOSED_BEFORE = {"front_end_state": False, "states_in_teacher_units": True, "generator_states": False}


def read_student_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint written by `gendistiller distill`, with a clear error for anything else (a checkpoint whose
    weights are not all finite included). Its config is in the current layout (`upgrade_config`)."""
    checkpoint = read_checkpoint(path)
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = "a WavLM/fairseq teacher checkpoint" if "cfg" in checkpoint else f"a dict with keys {sorted(checkpoint)[:8]}"
        raise CheckpointError(f"{path}: not a GenDistiller student checkpoint (format {CHECKPOINT_FORMAT!r}); "
                              f"found {found}")
    check_finite_weights(checkpoint.get("student", {}), path)
    return {**checkpoint, "config": upgrade_config(checkpoint["config"])}


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's config dict in the current layout. Checkpoints written before the per-kind student configs hold
    one flat `student` dict with the fields of both kinds, the training schedule and `layer0_loss`; it becomes the
    kind's own fields, a `training` section and `optim.layer0_loss`. A config already in the current layout is
    returned as it is. A GenDistiller written before the exposed states were an option keeps exposing what it did
    (`_EXPOSED_BEFORE`)."""
    student = config.get("student") or {}
    if "history" in student:
        kind = student.get("kind", "gendistiller")
        own = field_names(STUDENT_CONFIGS[kind]) if kind in STUDENT_CONFIGS else set(student)
        config = {
            **config,
            "student": {"kind": kind, **{key: value for key, value in student.items() if key in own}},
            "training": {key: student[key] for key in _TRAINING_KEYS if key in student},
            "optim": {**config.get("optim", {}), "layer0_loss": bool(student.get("layer0_loss", False))},
        }
        student = config["student"]
    if student.get("kind", "gendistiller") == "gendistiller" and not _EXPOSED_BEFORE.keys() <= student.keys():
        config = {**config, "student": {**_EXPOSED_BEFORE, **student}}
    return config


def load_student(path: str | Path, device: str | torch.device = "cpu") -> tuple[Student, dict[str, Any]]:
    """A trained student from its checkpoint, in eval mode, with the checkpoint dict."""
    checkpoint = read_student_checkpoint(path)
    student = build_student(student_config_from_dict(checkpoint["config"]["student"]))
    student.load_state_dict(checkpoint["student"])
    return student.to(device).eval(), checkpoint

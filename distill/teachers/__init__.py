"""Teachers: `load_teacher(spec)` returns a frozen, eval-mode model whose `forward(wavs)` gives every hidden state.

Spec forms:
- `PATH`: an official WavLM checkpoint or a fairseq HuBERT / wav2vec 2.0 checkpoint (family detected);
- `wavlm:PATH`, `hubert:PATH`, `wav2vec2:PATH`: the same, insisting on that family;
- `s3prl:NAME` or `s3prl:NAME:CKPT`: any s3prl upstream, through its `hidden_states`.
"""
from __future__ import annotations

from typing import Callable

import torch

from distill.encoder import SSLModel, SSLModelConfig
from distill.serialization import CheckpointError
from distill.teachers.base import Teacher, TeacherOutput
from distill.teachers.checkpoint import CheckpointTeacher, load_checkpoint_teacher

__all__ = ["load_teacher", "Teacher", "TeacherOutput", "CheckpointTeacher", "CheckpointError", "SSLModel", "SSLModelConfig"]


def _s3prl(rest: str) -> Teacher:
    from distill.teachers.s3prl_teacher import S3PRLTeacher

    name, _, ckpt = rest.partition(":")
    if not name:
        raise ValueError("s3prl teacher spec needs an upstream name: 's3prl:NAME' or 's3prl:NAME:CKPT'")
    return S3PRLTeacher(f"s3prl:{rest}", name, ckpt or None)


# spec prefix -> loader for the rest of the spec. An explicit table; a bare path is auto-detected.
_LOADERS: dict[str, Callable[[str], Teacher]] = {
    "wavlm": lambda path: load_checkpoint_teacher(path, "wavlm"),
    "hubert": lambda path: load_checkpoint_teacher(path, "hubert"),
    "wav2vec2": lambda path: load_checkpoint_teacher(path, "wav2vec2"),
    "s3prl": _s3prl,
}


def load_teacher(spec: str, device: str | torch.device = "cpu") -> Teacher:
    prefix, sep, rest = spec.partition(":")
    loader = _LOADERS.get(prefix) if sep else None
    teacher = loader(rest) if loader is not None else load_checkpoint_teacher(spec)
    return teacher.to(device)

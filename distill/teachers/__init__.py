"""Teachers: `load_teacher(spec)` returns a frozen, eval-mode model whose `forward(wavs)` gives every hidden state.

Spec forms:
- `PATH`: an official WavLM checkpoint, a fairseq HuBERT / wav2vec 2.0 checkpoint, or a HuggingFace `save_pretrained`
  folder (config.json) of a WavLMModel / HubertModel / Wav2Vec2Model (format and family detected);
- `wavlm:PATH`, `hubert:PATH`, `wav2vec2:PATH`: a checkpoint file, insisting on that family; `hf:DIR`: a HF folder;
- `whisper:PATH` / `whisper-30s:PATH`: a Whisper encoder (openai-whisper .pt, HF folder or CTranslate2 model.bin), per
  utterance or padded to 30 s as Whisper runs (see `distill/teachers/whisper.py`); a bare PATH of an openai-whisper
  .pt, a HF folder with model_type "whisper" or a CTranslate2 Whisper model.bin / folder loads as `whisper:PATH`;
- `s3prl:NAME` or `s3prl:NAME:CKPT`: any s3prl upstream, through its `hidden_states`;
- `module:package.module:factory`: the nn.Module that `factory()` returns (see `ModuleTeacher` for its contract).
From Python, `ModuleTeacher(model)` wraps a model directly (pass it to `distill.training.trainer.train(config, teacher=...)`).
"""
from __future__ import annotations

from typing import Callable

import torch

from distill.io.checkpoint_files import CheckpointError
from distill.nn.ssl_encoder import SSLModel, SSLModelConfig
from distill.teachers.base import FrameAlignmentError, Teacher, TeacherOutput
from distill.teachers.checkpoint import CheckpointTeacher, load_checkpoint_teacher, load_hf_teacher
from distill.teachers.module_teacher import ModuleTeacher, imported_teacher, s3prl_teacher
from distill.teachers.whisper import WhisperTeacher, load_whisper_teacher

__all__ = ["load_teacher", "Teacher", "TeacherOutput", "CheckpointTeacher", "ModuleTeacher", "WhisperTeacher",
           "CheckpointError", "FrameAlignmentError", "SSLModel", "SSLModelConfig"]


def _s3prl(rest: str) -> Teacher:
    name, _, ckpt = rest.partition(":")
    if not name:
        raise ValueError("s3prl teacher spec needs an upstream name: 's3prl:NAME' or 's3prl:NAME:CKPT'")
    return s3prl_teacher(name, ckpt or None)


# spec prefix -> loader for the rest of the spec. An explicit table; a bare path is auto-detected.
_LOADERS: dict[str, Callable[[str], Teacher]] = {
    "wavlm": lambda path: load_checkpoint_teacher(path, "wavlm"),
    "hubert": lambda path: load_checkpoint_teacher(path, "hubert"),
    "wav2vec2": lambda path: load_checkpoint_teacher(path, "wav2vec2"),
    "hf": load_hf_teacher,
    "whisper": lambda path: load_whisper_teacher(path, pad_to_30s=False),
    "whisper-30s": lambda path: load_whisper_teacher(path, pad_to_30s=True),
    "s3prl": _s3prl,
    "module": imported_teacher,
}


def load_teacher(spec: str, device: str | torch.device = "cpu") -> Teacher:
    prefix, sep, rest = spec.partition(":")
    loader = _LOADERS.get(prefix) if sep else None
    teacher = loader(rest) if loader is not None else load_checkpoint_teacher(spec)
    return teacher.to(device)

"""Teachers: `load_teacher(spec)` returns a frozen, eval-mode model whose `forward(wavs)` gives every hidden state.

Spec forms (told apart in `distill/teachers/formats.py`, each format read by a module of its own):
- `PATH`: an official WavLM checkpoint, a fairseq HuBERT / wav2vec 2.0 checkpoint, or a HuggingFace `save_pretrained`
  folder (config.json) of a WavLMModel / HubertModel / Wav2Vec2Model (format and family detected);
- `wavlm:PATH`, `hubert:PATH`, `wav2vec2:PATH`: a checkpoint file, insisting on that family; `hf:DIR`: a HF folder;
- `whisper:PATH` / `whisper-30s:PATH`: a Whisper encoder (openai-whisper .pt, HF folder or CTranslate2 model.bin), per
  utterance or padded to 30 s as Whisper runs (see `distill/teachers/whisper_teacher.py`); a bare PATH of an
  openai-whisper .pt, a HF folder with model_type "whisper" or a CTranslate2 Whisper model.bin / folder loads as
  `whisper:PATH`;
- `s3prl:NAME` or `s3prl:NAME:CKPT`: any s3prl upstream, through its `hidden_states`;
- `module:package.module:factory`: the nn.Module that `factory()` returns (see `ModuleTeacher` for its contract).
From Python, `ModuleTeacher(model)` wraps a model directly (pass it to `distill.training.trainer.train(config, teacher=...)`).
"""
from __future__ import annotations

from distill.io.checkpoint_files import CheckpointError
from distill.nn.ssl_encoder import SSLModel, SSLModelConfig
from distill.teachers.base import FrameAlignmentError, Teacher, TeacherOutput
from distill.teachers.formats import load_teacher
from distill.teachers.module_teacher import ModuleTeacher
from distill.teachers.ssl_teacher import CheckpointTeacher
from distill.teachers.whisper_teacher import WhisperTeacher

__all__ = ["load_teacher", "Teacher", "TeacherOutput", "CheckpointTeacher", "ModuleTeacher", "WhisperTeacher",
           "CheckpointError", "FrameAlignmentError", "SSLModel", "SSLModelConfig"]

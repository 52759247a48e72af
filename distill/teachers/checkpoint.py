"""Teachers read from checkpoint files: official WavLM (`cfg` + `model`) and fairseq HuBERT / wav2vec 2.0; Whisper
models found at a bare path are handed to `distill/teachers/whisper.py`."""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from distill.io.checkpoint_files import CheckpointError, read_checkpoint
from distill.nn.ssl_encoder import SSLModel
from distill.teachers.base import Teacher, TeacherOutput
from distill.teachers.importers import import_fairseq_model, import_wavlm
from distill.teachers.whisper import (
    WhisperTeacher,
    import_openai_whisper,
    is_openai_checkpoint,
    is_whisper_hf_folder,
    load_whisper_teacher,
    whisper_format,
)


class CheckpointTeacher(Teacher):
    """Our `SSLModel` with weights imported from a teacher checkpoint."""

    def __init__(self, spec: str, model: SSLModel, source_parameters: int):
        super().__init__(spec)
        self.model = model
        self.family = model.config.family
        self.num_layers = model.config.num_layers
        self.dim = model.config.dim
        self.downsample_rate = math.prod(stride for _, _, stride in model.config.conv_layers)
        self.layers_end_in_layer_norm = not model.config.layer_norm_first
        self.source_parameters = source_parameters  # parameters as the original class counts them (incl. pre-training-only ones)
        self.freeze()

    def forward_padded(self, waveforms: Tensor, lengths: Tensor, num_layers: Optional[int] = None) -> TeacherOutput:
        hidden_states, frame_lengths = self.model(waveforms, lengths, num_layers)
        return TeacherOutput(hidden_states, frame_lengths)


def detect_family(checkpoint: dict[str, Any]) -> str:
    """'wavlm', 'hubert', 'wav2vec2', or a description of what else the dict is (raises CheckpointError)."""
    cfg = checkpoint.get("cfg")
    if isinstance(cfg, dict) and "model" in checkpoint:
        model_cfg = cfg.get("model")
        if model_cfg is not None:  # fairseq: cfg has common/task/model sections
            name = model_cfg.get("_name") if hasattr(model_cfg, "get") else None
            if name in ("hubert", "wav2vec2"):
                return name
            raise CheckpointError(f"fairseq checkpoint of model type {name!r}; supported: 'hubert', 'wav2vec2'")
        if "encoder_embed_dim" in cfg or "encoder_layers" in cfg:
            return "wavlm"
    if checkpoint.get("args") is not None and "model" in checkpoint:
        raise CheckpointError("legacy fairseq checkpoint with `args` and no `cfg`; re-save it with a fairseq >= 0.10 "
                              "(checkpoint_utils.load_checkpoint_to_cpu upgrades it)")
    if "Distiller" in checkpoint and "Config" in checkpoint:
        raise CheckpointError("an s3prl DistilHuBERT checkpoint (`Distiller` + `Config`); use the spec "
                              "'s3prl:distiller_local:PATH' to use it as a teacher")
    if is_openai_checkpoint(checkpoint):
        raise CheckpointError("an openai-whisper checkpoint (`dims` + `model_state_dict`); use the spec 'whisper:PATH'")
    if "student" in checkpoint and "config" in checkpoint:
        raise CheckpointError("a GenDistiller student checkpoint, not a teacher")
    raise CheckpointError(f"unknown checkpoint format with keys {sorted(checkpoint)[:10]}; expected an official WavLM "
                          "checkpoint (`cfg` + `model`) or a fairseq HuBERT/wav2vec 2.0 checkpoint")


def load_hf_teacher(folder: str | Path) -> Teacher:
    """A HuggingFace `save_pretrained` folder of a WavLMModel, HubertModel or Wav2Vec2Model, or of a Whisper model
    (model_type "whisper": a `WhisperTeacher`, per utterance)."""
    from distill.teachers.huggingface import import_hf_folder, is_hf_folder

    if not is_hf_folder(folder):
        raise CheckpointError(f"{folder}: not a HuggingFace model folder (expected a directory with config.json)")
    if is_whisper_hf_folder(folder):
        return load_whisper_teacher(folder)
    model, source_parameters = import_hf_folder(folder)
    return CheckpointTeacher(f"hf:{folder}", model, source_parameters)


def load_checkpoint_teacher(path: str | Path, expected_family: Optional[str] = None) -> Teacher:
    """A teacher checkpoint file, or a HuggingFace folder (recognised by its config.json); Whisper models in any of
    their formats (openai-whisper .pt, HF folder, CTranslate2 model.bin or faster-whisper folder) are recognised too."""
    path = Path(path)
    if expected_family is None and whisper_format(path) == "ctranslate2":
        return load_whisper_teacher(path)
    if expected_family is None and path.is_dir() and (path / "config.json").is_file():
        return load_hf_teacher(path)
    checkpoint = read_checkpoint(path)
    if expected_family is None and is_openai_checkpoint(checkpoint):
        model, source_parameters = import_openai_whisper(checkpoint, str(path))
        return WhisperTeacher(f"whisper:{path}", model, source_parameters=source_parameters)
    try:
        family = detect_family(checkpoint)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    if expected_family is not None and family != expected_family:
        raise CheckpointError(f"{path}: expected a {expected_family} checkpoint, found a {family} checkpoint")
    spec = f"{family}:{path}"
    if family == "wavlm":
        source_parameters = sum(v.numel() for v in checkpoint["model"].values())
        return CheckpointTeacher(spec, import_wavlm(checkpoint, str(path)), source_parameters)
    fairseq_model, normalize, model_cfg = _load_with_fairseq(path, checkpoint)
    source_parameters = sum(p.numel() for p in fairseq_model.parameters())
    return CheckpointTeacher(spec, import_fairseq_model(fairseq_model, normalize, str(path), model_cfg), source_parameters)


def _load_with_fairseq(path: Path, checkpoint: dict[str, Any]) -> tuple[Any, bool, Any]:
    """fairseq's own loader. HuBERT's task needs its label dictionary at load time: when the checkpoint's
    `label_dir` is absent (the usual case for downloaded checkpoints), a stand-in dictionary of the right size
    is written to a temporary folder, read from the label embedding table."""
    try:
        from fairseq import checkpoint_utils
    except ImportError as error:
        raise ImportError("loading a fairseq HuBERT/wav2vec 2.0 checkpoint needs fairseq: "
                          "pip install --no-build-isolation fairseq-fixed==0.12.3.1") from error
    _allow_fairseq_globals()
    task_cfg = checkpoint["cfg"]["task"]
    with tempfile.TemporaryDirectory() as scratch:
        overrides: dict[str, Any] = {"data": scratch}
        if task_cfg.get("_name") == "hubert_pretraining":
            overrides["label_dir"] = _hubert_label_dir(checkpoint, task_cfg, Path(scratch))
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides=overrides)
    return models[0], bool(getattr(task.cfg, "normalize", False)), cfg.model


def _hubert_label_dir(checkpoint: dict[str, Any], task_cfg: dict[str, Any], scratch: Path) -> str:
    label_dir = task_cfg.get("label_dir") or task_cfg.get("data")
    labels = list(task_cfg.get("labels") or ["km"])
    if label_dir and all((Path(label_dir) / f"dict.{label}.txt").is_file() for label in labels):
        return str(label_dir)
    if len(labels) != 1:
        raise CheckpointError(f"HuBERT checkpoint with label sets {labels}: put their dict.*.txt files in {label_dir}")
    num_symbols = checkpoint["model"]["label_embs_concat"].shape[0] - 4  # fairseq adds bos/pad/eos/unk
    (scratch / f"dict.{labels[0]}.txt").write_text("".join(f"{i} 1\n" for i in range(num_symbols)))
    return str(scratch)


def _allow_fairseq_globals() -> None:
    """fairseq-fixed loads with torch's weights_only default; real checkpoints pickle these classes."""
    safe: list[Any] = [argparse.Namespace]
    try:
        from fairseq.data.dictionary import Dictionary

        safe.append(Dictionary)
    except ImportError:
        pass
    torch.serialization.add_safe_globals(safe)

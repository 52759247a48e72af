"""openai-whisper checkpoints -> `WhisperTeacher`: a `torch.save` of a dict with `dims` and `model_state_dict`, as
`whisper.load_model` reads it. A file named by `whisper:PATH` is read here with `weights_only=True`; one given as a bare
PATH arrives as the dict read while its format was told (`distill/teachers/formats.py`). `_OPENAI_RULES` maps its
names onto our encoder (`distill/nn/whisper_encoder.py`), raising on any name it does not know; the decoder is dropped.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from distill.io.checkpoint_files import CheckpointError
from distill.io.weight_names import map_state_dict
from distill.nn.whisper_encoder import WhisperEncoderConfig, WhisperEncoderModel
from distill.teachers.whisper_teacher import WhisperTeacher, build_whisper_encoder, whisper_teacher

# openai-whisper's `model_state_dict` names -> ours (first full match wins; None drops). openai's key projection has
# no bias; `mlp` is Sequential(Linear, GELU, Linear).
_OPENAI_RULES: tuple[tuple[str, str | None], ...] = (
    (r"encoder\.(conv1|conv2)\.(weight|bias)", r"\1.\2"),
    (r"encoder\.positional_embedding", "positions"),
    (r"encoder\.blocks\.(\d+)\.attn\.query\.(weight|bias)", r"layers.\1.self_attn.q_proj.\2"),
    (r"encoder\.blocks\.(\d+)\.attn\.key\.weight", r"layers.\1.self_attn.k_proj.weight"),
    (r"encoder\.blocks\.(\d+)\.attn\.value\.(weight|bias)", r"layers.\1.self_attn.v_proj.\2"),
    (r"encoder\.blocks\.(\d+)\.attn\.out\.(weight|bias)", r"layers.\1.self_attn.out_proj.\2"),
    (r"encoder\.blocks\.(\d+)\.attn_ln\.(weight|bias)", r"layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.blocks\.(\d+)\.mlp\.0\.(weight|bias)", r"layers.\1.fc1.\2"),
    (r"encoder\.blocks\.(\d+)\.mlp\.2\.(weight|bias)", r"layers.\1.fc2.\2"),
    (r"encoder\.blocks\.(\d+)\.mlp_ln\.(weight|bias)", r"layers.\1.final_layer_norm.\2"),
    (r"encoder\.ln_post\.(weight|bias)", r"layer_norm.\1"),
    (r"decoder\..*", None),  # the text decoder
)

_OPENAI_DIMS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")


def is_openai_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    return isinstance(checkpoint.get("dims"), Mapping) and isinstance(checkpoint.get("model_state_dict"), Mapping)


def load_openai_whisper(path: str, pad_to_30s: bool, checkpoint: Optional[Mapping[str, Any]] = None) -> WhisperTeacher:
    """The teacher of the openai-whisper checkpoint at `path`; `checkpoint`: its dict, if already read."""
    if checkpoint is None:
        checkpoint = _read_openai_checkpoint(Path(path))
    model, source_parameters = import_openai_whisper(checkpoint, path)
    return whisper_teacher(path, model, pad_to_30s, source_parameters)


def _read_openai_checkpoint(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise CheckpointError(f"{path}: not a readable openai-whisper checkpoint "
                              f"({type(error).__name__}: {first_line})") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected an openai-whisper checkpoint dict, found a {type(checkpoint).__name__}")
    return checkpoint


def import_openai_whisper(checkpoint: Mapping[str, Any], source: str = "openai-whisper checkpoint"
                          ) -> tuple[WhisperEncoderModel, int]:
    """An openai-whisper checkpoint dict (`dims` + `model_state_dict`) -> (our model, tensor count of the file's model)."""
    if not is_openai_checkpoint(checkpoint):
        raise CheckpointError(f"{source}: not an openai-whisper checkpoint: expected a dict with `dims` and "
                              f"`model_state_dict`, found keys {sorted(map(str, checkpoint))[:10]}")
    dims, state = checkpoint["dims"], checkpoint["model_state_dict"]
    missing = [key for key in _OPENAI_DIMS if key not in dims]
    if missing:
        raise CheckpointError(f"{source}: openai-whisper `dims` lacks {missing}")
    width = int(dims["n_audio_state"])
    first_mlp = state.get("encoder.blocks.0.mlp.0.weight")  # (ffn, width); `dims` has no field for it (openai: 4x)
    config = WhisperEncoderConfig(n_mels=int(dims["n_mels"]), n_ctx=int(dims["n_audio_ctx"]), dim=width,
                                  num_heads=int(dims["n_audio_head"]), num_layers=int(dims["n_audio_layer"]),
                                  ffn_dim=int(first_mlp.shape[0]) if first_mlp is not None else 4 * width)
    weights = map_state_dict(state, source, _OPENAI_RULES)
    return build_whisper_encoder(config, weights, source), sum(value.numel() for value in state.values())

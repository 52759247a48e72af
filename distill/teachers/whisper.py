"""Whisper encoders as teachers: `whisper:PATH` (per utterance, the default) and `whisper-30s:PATH` (padded to 30 s).

PATH is any of three formats, detected from the file:
- an openai-whisper checkpoint (`torch.save` of a dict with `dims` and `model_state_dict`, as `whisper.load_model`
  reads it), loaded with `weights_only=True`;
- a HuggingFace `save_pretrained` folder of a `WhisperModel` / `WhisperForConditionalGeneration` (config.json with
  model_type "whisper"; transformers reads it). A bare PATH or `hf:DIR` of such a folder loads as `whisper:`;
- a CTranslate2 `model.bin` (faster-whisper), or a folder holding one, read by our own reader
  (`ctranslate2_format.py`); float16, bfloat16, int8 and int16 weights are turned into float32.
Each format's names map onto our model (`distill/nn/whisper_encoder.py`) through a rule table that raises on any name it does not
know; the decoder (and the vocabulary) is dropped on purpose.

The two modes (`WhisperTeacher(..., pad_to_30s=...)`; see `distill/nn/whisper_encoder.py`): per utterance, the log-mel of each
utterance alone and the encoder over its own frames, padding-invariant in a batch (the default: a student sees
unpadded utterances); `pad_to_30s`, exactly what Whisper computes (each input zero-padded to 30 s, 1,500 frames
encoded), cut to the utterance's frames.
hidden_states = [conv stem + positions] + each layer's output, the last after the final LayerNorm (transformers'
`output_hidden_states`); one frame per 320 samples, (samples // 160 + 1) // 2 frames per utterance; recordings
longer than 30 s run as consecutive 30 s windows whose frames are concatenated.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from distill.io.checkpoint_files import CheckpointError
from distill.io.weight_names import map_state_dict, rename
from distill.nn.whisper_encoder import DOWNSAMPLE_RATE, WhisperEncoderConfig, WhisperEncoderModel
from distill.teachers.base import Teacher, TeacherOutput
from distill.teachers.ctranslate2_format import CTranslate2File, is_ctranslate2_file

FAMILY = "whisper"

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

# transformers' WhisperModel names -> ours (its encoder layers already use our fairseq-style names).
_HF_RULES: tuple[tuple[str, str | None], ...] = (
    (r"encoder\.(conv1|conv2)\.(weight|bias)", r"\1.\2"),
    (r"encoder\.embed_positions\.weight", "positions"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|v_proj|out_proj)\.(weight|bias)", r"layers.\1.self_attn.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.k_proj\.weight", r"layers.\1.self_attn.k_proj.weight"),
    (r"encoder\.layers\.(\d+)\.(self_attn_layer_norm|final_layer_norm|fc1|fc2)\.(weight|bias)", r"layers.\1.\2.\3"),
    (r"encoder\.layer_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"decoder\..*", None),
)

# CTranslate2 WhisperSpec variable names -> ours. `linear_0` of self-attention is q, k, v fused along the output rows
# (the converter's `fuse_linear`, with zeros for the key's missing bias): split after renaming (`_split_qkv`).
_CT2_RULES: tuple[tuple[str, str | None], ...] = (
    (r"encoder/(conv1|conv2)/(weight|bias)", r"\1.\2"),
    (r"encoder/position_encodings/encodings", "positions"),
    (r"encoder/layer_(\d+)/self_attention/layer_norm/gamma", r"layers.\1.self_attn_layer_norm.weight"),
    (r"encoder/layer_(\d+)/self_attention/layer_norm/beta", r"layers.\1.self_attn_layer_norm.bias"),
    (r"encoder/layer_(\d+)/self_attention/linear_0/(weight|bias)", r"layers.\1.self_attn.qkv.\2"),
    (r"encoder/layer_(\d+)/self_attention/linear_1/(weight|bias)", r"layers.\1.self_attn.out_proj.\2"),
    (r"encoder/layer_(\d+)/ffn/layer_norm/gamma", r"layers.\1.final_layer_norm.weight"),
    (r"encoder/layer_(\d+)/ffn/layer_norm/beta", r"layers.\1.final_layer_norm.bias"),
    (r"encoder/layer_(\d+)/ffn/linear_0/(weight|bias)", r"layers.\1.fc1.\2"),
    (r"encoder/layer_(\d+)/ffn/linear_1/(weight|bias)", r"layers.\1.fc2.\2"),
    (r"encoder/layer_norm/gamma", "layer_norm.weight"),
    (r"encoder/layer_norm/beta", "layer_norm.bias"),
    (r"encoder/.+/weight_scale", None),  # int8/int16 scales: read with their weight (`dequantized`)
    (r"encoder/num_heads", None),  # a scalar, read into the config
    (r"decoder/.*", None),
)

_OPENAI_DIMS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")


class WhisperTeacher(Teacher):
    """Our `WhisperEncoderModel` with imported weights. `pad_to_30s`: run as Whisper does, every input padded to 30 s
    (spec prefix `whisper-30s:`); else per utterance (`whisper:`)."""

    family = FAMILY
    downsample_rate = DOWNSAMPLE_RATE

    def __init__(self, spec: str, model: WhisperEncoderModel, pad_to_30s: bool = False,
                 source_parameters: Optional[int] = None):
        super().__init__(spec)
        self.model = model
        self.pad_to_30s = pad_to_30s
        self.window_samples = model.window_samples
        self.num_layers = model.config.num_layers
        self.dim = model.config.dim
        self.source_parameters = source_parameters  # tensors in the file, decoder included
        self.freeze()

    def forward_padded(self, waveforms: Tensor, lengths: Tensor, num_layers: Optional[int] = None) -> TeacherOutput:
        hidden_states, frame_lengths = self.model(waveforms, lengths, num_layers, pad_to_30s=self.pad_to_30s)
        return TeacherOutput(hidden_states, frame_lengths)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "pad_to_30s": self.pad_to_30s, "whisper_config": self.model.config.to_dict()}


# ---- detection and loading ------------------------------------------------------------------------------------

def whisper_format(path: str | Path) -> Optional[str]:
    """'huggingface', 'ctranslate2' or 'openai' for a path that holds a Whisper model in that format; None if the path
    is none of them (a .pt is only opened later, so any other file counts as 'openai' here)."""
    path = Path(path)
    if path.is_dir():
        if is_whisper_hf_folder(path):
            return "huggingface"
        if (path / "model.bin").is_file():
            return "ctranslate2"
        return None
    if not path.is_file():
        return None
    return "ctranslate2" if is_ctranslate2_file(path) else "openai"


def is_whisper_hf_folder(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    return Path(path).is_dir() and config.is_file() and _json_model_type(config) == FAMILY


def is_openai_checkpoint(checkpoint: Mapping[str, Any]) -> bool:
    return isinstance(checkpoint.get("dims"), Mapping) and isinstance(checkpoint.get("model_state_dict"), Mapping)


def _json_model_type(config: Path) -> Optional[str]:
    try:
        value = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def load_whisper_teacher(path: str | Path, pad_to_30s: bool = False) -> WhisperTeacher:
    """A Whisper model in any of the three formats (detected) -> a teacher; `pad_to_30s` picks the mode."""
    path = Path(path)
    kind = whisper_format(path)
    if kind is None:
        raise CheckpointError(f"{path}: not a Whisper model (expected an openai-whisper .pt, a HuggingFace folder with "
                              "model_type 'whisper', or a CTranslate2 model.bin or folder holding one)")
    if kind == "huggingface":
        model, source_parameters = import_hf_whisper(path)
    elif kind == "ctranslate2":
        model, source_parameters = import_ctranslate2_whisper(path / "model.bin" if path.is_dir() else path)
    else:
        checkpoint = _read_openai_checkpoint(path)
        model, source_parameters = import_openai_whisper(checkpoint, str(path))
    prefix = "whisper-30s" if pad_to_30s else "whisper"
    return WhisperTeacher(f"{prefix}:{path}", model, pad_to_30s, source_parameters)


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


def _build(config: WhisperEncoderConfig, weights: Mapping[str, Tensor], source: str) -> WhisperEncoderModel:
    model = WhisperEncoderModel(config)
    weights = {name: value.float() for name, value in weights.items()}
    try:
        result = model.encoder.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # a shape that does not fit the config
        raise CheckpointError(f"{source}: weights do not fit the Whisper encoder {config.to_dict()}: "
                              f"{str(error).strip().splitlines()[-1].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{source}: weights do not fit the Whisper encoder: missing {result.missing_keys[:8]}, "
                              f"unexpected {result.unexpected_keys[:8]}")
    return model


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
    return _build(config, weights, source), sum(value.numel() for value in state.values())


def hf_whisper_config(config: Any) -> WhisperEncoderConfig:
    """A transformers WhisperConfig -> our config."""
    activation = getattr(config, "activation_function", "gelu")
    if activation != "gelu":
        raise CheckpointError(f"HF whisper config has activation_function={activation!r}; only 'gelu' is supported")
    return WhisperEncoderConfig(n_mels=config.num_mel_bins, n_ctx=config.max_source_positions, dim=config.d_model,
                                num_heads=config.encoder_attention_heads, num_layers=config.encoder_layers,
                                ffn_dim=config.encoder_ffn_dim)


def import_hf_whisper(folder: str | Path) -> tuple[WhisperEncoderModel, int]:
    """A `save_pretrained` folder of a WhisperModel / WhisperForConditionalGeneration -> (our model, parameters of
    transformers' WhisperModel, decoder included)."""
    folder = Path(folder)
    try:
        from transformers import WhisperModel
    except ImportError as error:
        raise ImportError("a HuggingFace Whisper teacher needs transformers: pip install 'transformers<5'") from error
    try:
        theirs = WhisperModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder}: cannot read the HF Whisper model ({error})") from error
    weights = map_state_dict(theirs.state_dict(), str(folder), _HF_RULES)
    return _build(hf_whisper_config(theirs.config), weights, str(folder)), sum(p.numel() for p in theirs.parameters())


def import_ctranslate2_whisper(path: str | Path) -> tuple[WhisperEncoderModel, int]:
    """A CTranslate2 WhisperSpec `model.bin` -> (our model, elements of the file's variables, decoder included)."""
    model_file = CTranslate2File(path)
    source = str(model_file.path)
    if model_file.spec != "WhisperSpec":
        raise CheckpointError(f"{source}: a CTranslate2 {model_file.spec} model, not a Whisper model (WhisperSpec)")
    if not 1 <= model_file.revision <= 3:
        raise CheckpointError(f"{source}: WhisperSpec revision {model_file.revision} is not supported "
                              "(this reader knows 1 to 3)")
    weights = {}
    for name in model_file.names():  # renamed first, so that only what the encoder uses is read
        target = rename(name, source, _CT2_RULES)
        if target is not None:
            weights[target] = model_file.dequantized(name)
    weights = _split_qkv(weights, source)
    if "encoder/num_heads" not in model_file or "conv1.weight" not in weights:
        raise CheckpointError(f"{source}: WhisperSpec model without encoder/num_heads or encoder/conv1/weight")
    conv1, positions = weights["conv1.weight"], weights.get("positions")
    if positions is None:
        raise CheckpointError(f"{source}: WhisperSpec model without encoder/position_encodings/encodings")
    num_layers = len({name.split(".")[1] for name in weights if name.startswith("layers.")})
    config = WhisperEncoderConfig(n_mels=conv1.shape[1], n_ctx=positions.shape[0], dim=conv1.shape[0],
                                  num_heads=int(model_file.scalar("encoder/num_heads")), num_layers=num_layers,
                                  ffn_dim=weights["layers.0.fc1.weight"].shape[0] if num_layers else 4 * conv1.shape[0])
    source_elements = sum(entry.num_bytes // entry.dtype.itemsize for name, entry in model_file.entries.items()
                          if entry.shape and not name.endswith("_scale"))
    return _build(config, weights, source), source_elements


def _split_qkv(weights: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """`layers.N.self_attn.qkv.{weight,bias}` (rows q, k, v) -> q_proj, k_proj (weight only: the converter stores zeros
    for the key's bias, and a key bias would not change attention anyway), v_proj."""
    out = {}
    for name, value in weights.items():
        prefix, _, kind = name.rpartition(".")
        if not prefix.endswith(".qkv"):
            out[name] = value
            continue
        if value.shape[0] % 3:
            raise CheckpointError(f"{source}: fused q/k/v {kind} of shape {tuple(value.shape)} does not split in three")
        query, key, value_part = value.chunk(3)
        base = prefix[: -len("qkv")]
        out[f"{base}q_proj.{kind}"] = query
        out[f"{base}v_proj.{kind}"] = value_part
        if kind == "weight":
            out[f"{base}k_proj.weight"] = key
    return out

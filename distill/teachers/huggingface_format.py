"""HuggingFace transformers folders -> teachers. A `save_pretrained` folder (config.json + model.safetensors or
pytorch_model.bin) of a `WavLMModel`, `HubertModel` or `Wav2Vec2Model`, Base- or Large-style, becomes a
`CheckpointTeacher` (our encoder, `distill/nn/ssl_encoder.py`, which is padding-invariant where transformers' models
are not); one of a `WhisperModel` / `WhisperForConditionalGeneration` (model_type "whisper") a `WhisperTeacher`.

transformers reads the folder (local files only); `hf_model_config` / `hf_whisper_config` turn its config into ours,
and `_SSL_RULES` / `_WHISPER_RULES` rename its weights, raising on any weight they do not know. Models whose feature
extractor normalises the waveform (`do_normalize` in preprocessor_config.json) get our `normalize` with the feature
extractor's epsilon.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from distill.io.checkpoint_files import CheckpointError
from distill.io.weight_names import map_state_dict
from distill.nn.ssl_encoder import SSLModel, SSLModelConfig
from distill.nn.whisper_encoder import WhisperEncoderConfig, WhisperEncoderModel
from distill.teachers.ssl_teacher import CheckpointTeacher, build_and_load
from distill.teachers.whisper_teacher import WhisperTeacher, build_whisper_encoder, whisper_teacher

HF_FAMILIES = ("wavlm", "hubert", "wav2vec2")  # config.json's model_type
_HF_NORMALIZE_EPS = 1e-7  # transformers' Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm

# transformers' WavLM / HuBERT / wav2vec 2.0 names -> ours (first full match wins; None drops a pre-training-only weight).
_SSL_RULES: tuple[tuple[str, str | None], ...] = (
    # CNN: "group" mode has a GroupNorm in layer 0 only, "layer" mode a LayerNorm in every layer; both named layer_norm.
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)", r"feature_extractor.conv_layers.\1.norm.\2"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"projection.layer_norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"projection.projection.\1"),
    # Positional conv: weight norm as weight_g / weight_v (older transformers) or a parametrization (newer).
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_g|parametrizations\.weight\.original0)", "encoder.pos_conv.conv.weight_g"),
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_v|parametrizations\.weight\.original1)", "encoder.pos_conv.conv.weight_v"),
    (r"encoder\.pos_conv_embed\.conv\.bias", "encoder.pos_conv.conv.bias"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)", r"encoder.layers.\1.self_attn.\2.\3"),
    # WavLM: bucketed relative position bias (layer 0) and the gate of every layer.
    (r"encoder\.layers\.(\d+)\.attention\.rel_attn_embed\.weight",
     r"encoder.layers.\1.self_attn.relative_position.relative_attention_bias.weight"),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_linear\.(weight|bias)", r"encoder.layers.\1.self_attn.grep_linear.\2"),
    (r"encoder\.layers\.(\d+)\.attention\.gru_rel_pos_const", r"encoder.layers.\1.self_attn.grep_a"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)", r"encoder.layers.\1.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)", r"encoder.layers.\1.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"masked_spec_embed", None),  # the masking embedding of pre-training
)

# transformers' WhisperModel names -> ours (its encoder layers already use our fairseq-style names).
_WHISPER_RULES: tuple[tuple[str, str | None], ...] = (
    (r"encoder\.(conv1|conv2)\.(weight|bias)", r"\1.\2"),
    (r"encoder\.embed_positions\.weight", "positions"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|v_proj|out_proj)\.(weight|bias)", r"layers.\1.self_attn.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.k_proj\.weight", r"layers.\1.self_attn.k_proj.weight"),
    (r"encoder\.layers\.(\d+)\.(self_attn_layer_norm|final_layer_norm|fc1|fc2)\.(weight|bias)", r"layers.\1.\2.\3"),
    (r"encoder\.layer_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"decoder\..*", None),  # the text decoder
)

# config keys whose other values our encoder does not implement -> the value it does.
_REQUIRED = {"hidden_act": "gelu", "feat_extract_activation": "gelu", "conv_pos_batch_norm": False,
             "add_adapter": False}


def is_hf_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def model_type(folder: str | Path) -> Optional[str]:
    """config.json's model_type in `folder`; None if there is none (no folder, no config.json, unreadable JSON)."""
    try:
        value = json.loads((Path(folder) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# ---- teachers ----------------------------------------------------------------------------------------------------

def load_hf_teacher(folder: str) -> CheckpointTeacher:
    """A folder of a WavLMModel, HubertModel or Wav2Vec2Model -> its teacher, spec `hf:FOLDER`."""
    model, source_parameters = import_hf_folder(folder)
    return CheckpointTeacher(f"hf:{folder}", model, source_parameters)


def load_hf_whisper(folder: str, pad_to_30s: bool) -> WhisperTeacher:
    """A folder of a WhisperModel / WhisperForConditionalGeneration -> its teacher, spec `whisper:` or `whisper-30s:`."""
    model, source_parameters = import_hf_whisper(folder)
    return whisper_teacher(folder, model, pad_to_30s, source_parameters)


# ---- WavLM, HuBERT, wav2vec 2.0 ----------------------------------------------------------------------------------

def hf_model_config(config: Any, normalize: bool) -> SSLModelConfig:
    """A transformers WavLMConfig / HubertConfig / Wav2Vec2Config -> our config."""
    for key, supported in _REQUIRED.items():
        value = getattr(config, key, supported)
        if value != supported:
            raise CheckpointError(f"HF {config.model_type} config has {key}={value!r}; only {supported!r} is supported")
    wavlm = config.model_type == "wavlm"
    return SSLModelConfig(
        family=config.model_type,
        conv_layers=tuple(zip(config.conv_dim, config.conv_kernel, config.conv_stride)),
        extractor_mode={"group": "default", "layer": "layer_norm"}[config.feat_extract_norm],
        conv_bias=bool(config.conv_bias),
        dim=config.hidden_size,
        ffn_dim=config.intermediate_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        layer_norm_first=bool(config.do_stable_layer_norm),
        conv_pos=config.num_conv_pos_embeddings,
        conv_pos_groups=config.num_conv_pos_embedding_groups,
        relative_position=wavlm,
        num_buckets=config.num_buckets if wavlm else 320,
        max_distance=config.max_bucket_distance if wavlm else 800,
        gated_relative_position=wavlm,
        normalize=normalize,
        normalize_eps=_HF_NORMALIZE_EPS,
        project_features=True,
        projection_layer_norm=bool(getattr(config, "feat_proj_layer_norm", True)),
    )


def import_hf_folder(folder: str | Path) -> tuple[SSLModel, int]:
    """A `save_pretrained` folder -> (our model with its weights, the parameter count of transformers' model)."""
    folder = Path(folder)
    try:
        from transformers import AutoConfig, AutoModel
    except ImportError as error:
        raise ImportError("a HuggingFace teacher needs transformers: pip install 'transformers<5'") from error
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder}: not a readable HuggingFace config.json ({error})") from error
    if config.model_type not in HF_FAMILIES:
        raise CheckpointError(f"{folder}: HF model_type {config.model_type!r} is not supported (expected one of {HF_FAMILIES})")
    preprocessor = folder / "preprocessor_config.json"
    normalize = bool(json.loads(preprocessor.read_text()).get("do_normalize", False)) if preprocessor.is_file() else False
    model_config = hf_model_config(config, normalize)
    try:
        theirs = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder}: cannot read the HF weights ({error})") from error
    return (build_and_load(model_config, theirs.state_dict(), str(folder), _SSL_RULES),
            sum(p.numel() for p in theirs.parameters()))


# ---- Whisper -----------------------------------------------------------------------------------------------------

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
    weights = map_state_dict(theirs.state_dict(), str(folder), _WHISPER_RULES)
    return (build_whisper_encoder(hf_whisper_config(theirs.config), weights, str(folder)),
            sum(p.numel() for p in theirs.parameters()))

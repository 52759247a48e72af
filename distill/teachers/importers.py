"""Importers: official WavLM checkpoints and fairseq HuBERT / wav2vec 2.0 models -> our `SSLModel`.

Each importer turns the foreign config into an `SSLModelConfig`, builds our model and maps weight names
with the rule table below. Any key the table does not know raises, so a new checkpoint variant fails
loudly instead of loading half its weights.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from torch import Tensor

from distill.components import parse_conv_layers
from distill.encoder import SSLModel, SSLModelConfig
from distill.serialization import CheckpointError

# (pattern, replacement); replacement None = drop (pre-training-only weights). First match wins.
_RENAME_RULES: tuple[tuple[str, str | None], ...] = (
    # CNN: fairseq's Sequential(conv, dropout, norm, GELU); LayerNorm mode wraps the norm in TransposeLast.
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.norm.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.(weight|bias)", r"feature_extractor.conv_layers.\1.norm.\2"),
    (r"layer_norm\.(weight|bias)", r"projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.(weight_g|weight_v|bias)", r"encoder.pos_conv.conv.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight",
     r"encoder.layers.\1.self_attn.relative_position.relative_attention_bias.weight"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q_proj|k_proj|v_proj|out_proj|grep_linear)\.(weight|bias)",
     r"encoder.layers.\1.self_attn.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.grep_a", r"encoder.layers.\1.self_attn.grep_a"),
    (r"encoder\.layers\.(\d+)\.(self_attn_layer_norm|fc1|fc2|final_layer_norm)\.(weight|bias)", r"encoder.layers.\1.\2.\3"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    # Pre-training heads: masking embedding, HuBERT label embeddings/projection, wav2vec 2.0 quantiser.
    (r"mask_emb", None),
    (r"label_embs_concat", None),
    (r"final_proj\..*", None),
    (r"project_q\..*", None),
    (r"quantizer\..*", None),
)


def map_state_dict(
    foreign: Mapping[str, Tensor], source: str, rules: Sequence[tuple[str, str | None]] = _RENAME_RULES
) -> dict[str, Tensor]:
    """Renames each key by the first (pattern, replacement) rule that matches it in full; `rules` defaults to the
    teacher import table (the export to s3prl's distiller format passes its own)."""
    mapped: dict[str, Tensor] = {}
    for key, value in foreign.items():
        name = rename(key, source, rules)
        if name is not None:
            mapped[name] = value
    return mapped


def rename(key: str, source: str, rules: Sequence[tuple[str, str | None]] = _RENAME_RULES) -> str | None:
    """One key renamed by the first rule that matches it in full; None if that rule drops it. Raises on unknown keys."""
    for pattern, replacement in rules:
        if re.fullmatch(pattern, key):
            return None if replacement is None else re.sub(pattern, replacement, key)
    raise CheckpointError(f"{source}: unknown weight {key!r}; this importer does not know how to map it")


def build_and_load(config: SSLModelConfig, foreign: Mapping[str, Tensor], source: str,
                   rules: Sequence[tuple[str, str | None]] = _RENAME_RULES) -> SSLModel:
    """Our model for `config` with the foreign weights renamed by `rules`; every weight of the model must be given."""
    model = SSLModel(config)
    result = model.load_state_dict(map_state_dict(foreign, source, rules), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{source}: weights do not fit the model: missing {result.missing_keys[:8]}, "
                              f"unexpected {result.unexpected_keys[:8]}")
    return model


def _check_supported(cfg: Mapping[str, Any], source: str) -> None:
    activation = cfg.get("activation_fn", "gelu")
    if activation != "gelu":
        raise ValueError(f"{source}: activation_fn {activation!r} is not supported (expected 'gelu')")
    depth = cfg.get("pos_conv_depth", 1)
    if depth != 1:
        raise ValueError(f"{source}: pos_conv_depth {depth} is not supported (expected 1, as in Base/Large models)")


def _common_config(family: str, cfg: Mapping[str, Any], normalize: bool) -> SSLModelConfig:
    return SSLModelConfig(
        family=family,
        conv_layers=parse_conv_layers(cfg.get("conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")),
        extractor_mode=cfg.get("extractor_mode", "default"),
        conv_bias=bool(cfg.get("conv_bias", False)),
        dim=int(cfg.get("encoder_embed_dim", 768)),
        ffn_dim=int(cfg.get("encoder_ffn_embed_dim", 3072)),
        num_layers=int(cfg.get("encoder_layers", 12)),
        num_heads=int(cfg.get("encoder_attention_heads", 12)),
        layer_norm_first=bool(cfg.get("layer_norm_first", False)),
        conv_pos=int(cfg.get("conv_pos", 128)),
        conv_pos_groups=int(cfg.get("conv_pos_groups", 16)),
        normalize=normalize,
    )


def wavlm_config_from_checkpoint(cfg: Mapping[str, Any]) -> SSLModelConfig:
    """Official WavLM `cfg` dict (s3prl's `WavLMConfig` fields) -> our config."""
    _check_supported(cfg, "WavLM checkpoint")
    config = _common_config("wavlm", cfg, bool(cfg.get("normalize", False)))
    config.relative_position = bool(cfg.get("relative_position_embedding", False))
    config.num_buckets = int(cfg.get("num_buckets", 320))
    config.max_distance = int(cfg.get("max_distance", 1280))  # WavLMConfig's default
    config.gated_relative_position = bool(cfg.get("gru_rel_pos", False))
    return config


def import_wavlm(checkpoint: Mapping[str, Any], source: str = "WavLM checkpoint") -> SSLModel:
    """An official WavLM checkpoint (dict with `cfg` and `model`) -> our model with its weights."""
    return build_and_load(wavlm_config_from_checkpoint(checkpoint["cfg"]), checkpoint["model"], source)


def import_fairseq_model(model: Any, task_normalize: bool, source: str = "fairseq checkpoint", model_cfg: Any = None) -> SSLModel:
    """A fairseq `HubertModel` or `Wav2Vec2Model` instance -> our model with its weights.

    `model_cfg`: the checkpoint's `cfg.model` (dict or DictConfig). fairseq's `HubertModel` keeps no `cfg`
    attribute (only `Wav2Vec2Model` does), so HuBERT needs it passed in."""
    name = type(model).__name__
    families = {"HubertModel": "hubert", "Wav2Vec2Model": "wav2vec2"}
    if name not in families:
        raise TypeError(f"{source}: fairseq model {name} is not supported (expected one of {sorted(families)})")
    cfg = model_cfg if model_cfg is not None else getattr(model, "cfg", None)
    if cfg is None:
        raise ValueError(f"{source}: fairseq model {name} carries no cfg (legacy args checkpoints are not supported)")
    cfg_dict = {key: cfg[key] for key in cfg.keys()} if hasattr(cfg, "keys") else dict(vars(cfg))
    _check_supported(cfg_dict, source)
    config = _common_config(families[name], cfg_dict, task_normalize)
    return build_and_load(config, model.state_dict(), source)

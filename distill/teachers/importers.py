"""Importers: official WavLM checkpoints and fairseq HuBERT / wav2vec 2.0 models -> our `SSLModel`.

Each importer turns the foreign config into an `SSLModelConfig`, builds our model and maps weight names
with the rule table below. Any key the table does not know raises, so a new checkpoint variant fails
loudly instead of loading half its weights.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from distill.io.checkpoint_files import CheckpointError
from distill.io.weight_names import Rules, map_state_dict
from distill.nn.components import parse_conv_layers
from distill.nn.fairseq_names import FAIRSEQ_TO_OURS
from distill.nn.ssl_encoder import SSLModel, SSLModelConfig


def build_and_load(config: SSLModelConfig, foreign: Mapping[str, Tensor], source: str,
                   rules: Rules = FAIRSEQ_TO_OURS) -> SSLModel:
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

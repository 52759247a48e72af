"""Official WavLM checkpoints and fairseq HuBERT / wav2vec 2.0 checkpoints -> `CheckpointTeacher`.

Both are a `torch.save`d dict with `cfg` and `model` (the state dict): an official WavLM `cfg` is the model's own
config (s3prl's `WavLMConfig` fields), a fairseq `cfg` has `common` / `task` / `model` sections. `checkpoint_family`
tells the families apart. WavLM is imported from the dict; fairseq checkpoints are read by fairseq's own loader, then
imported from its model. Each importer turns the foreign config into an `SSLModelConfig`, builds our model and maps
weight names with `FAIRSEQ_TO_OURS` (`distill/nn/fairseq_names.py`), which raises on any key it does not know, so a
new checkpoint variant fails loudly instead of loading half its weights.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from distill.io.checkpoint_files import CheckpointError
from distill.nn.components import parse_conv_layers
from distill.nn.fairseq_names import FAIRSEQ_TO_OURS
from distill.nn.ssl_encoder import SSLModel, SSLModelConfig
from distill.teachers.ssl_teacher import CheckpointTeacher, build_and_load


def checkpoint_family(checkpoint: Mapping[str, Any]) -> str:
    """'wavlm', 'hubert' or 'wav2vec2'; for any other dict, raises a CheckpointError that says what it is."""
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
    if "student" in checkpoint and "config" in checkpoint:
        raise CheckpointError("a GenDistiller student checkpoint, not a teacher")
    raise CheckpointError(f"unknown checkpoint format with keys {sorted(checkpoint)[:10]}; expected an official WavLM "
                          "checkpoint (`cfg` + `model`) or a fairseq HuBERT/wav2vec 2.0 checkpoint")


# ---- teachers ----------------------------------------------------------------------------------------------------

def load_wavlm_checkpoint(path: str, checkpoint: Mapping[str, Any]) -> CheckpointTeacher:
    """The teacher of an official WavLM checkpoint, `checkpoint` being the dict read from `path`."""
    source_parameters = sum(value.numel() for value in checkpoint["model"].values())
    return CheckpointTeacher(f"wavlm:{path}", import_wavlm(checkpoint, path), source_parameters)


def load_fairseq_checkpoint(path: str, family: str, checkpoint: Mapping[str, Any]) -> CheckpointTeacher:
    """The teacher of a fairseq HuBERT or wav2vec 2.0 checkpoint (`family`), `checkpoint` being the dict read from
    `path`; fairseq's own loader reads the model."""
    fairseq_model, normalize, model_cfg = _load_with_fairseq(Path(path), checkpoint)
    source_parameters = sum(p.numel() for p in fairseq_model.parameters())
    return CheckpointTeacher(f"{family}:{path}", import_fairseq_model(fairseq_model, normalize, path, model_cfg),
                             source_parameters)


# ---- importers ---------------------------------------------------------------------------------------------------

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
    return build_and_load(wavlm_config_from_checkpoint(checkpoint["cfg"]), checkpoint["model"], source, FAIRSEQ_TO_OURS)


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
    return build_and_load(config, model.state_dict(), source, FAIRSEQ_TO_OURS)


# ---- fairseq's loader --------------------------------------------------------------------------------------------

def _load_with_fairseq(path: Path, checkpoint: Mapping[str, Any]) -> tuple[Any, bool, Any]:
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


def _hubert_label_dir(checkpoint: Mapping[str, Any], task_cfg: Mapping[str, Any], scratch: Path) -> str:
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

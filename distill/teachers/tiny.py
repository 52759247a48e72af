"""Small WavLM checkpoints in the official format (a dict with `cfg` and `model`), built with s3prl's reference
`WavLM` class, so the demo and the tests need no download. The geometry keeps the real CNN strides (320-sample
hop) and the gated relative position bias of WavLM Base+, at a fraction of the width.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_WAVLM_CFG: dict[str, Any] = {
    "extractor_mode": "default",
    "conv_feature_layers": "[(64,10,5)] + [(64,3,2)] * 4 + [(64,2,2)] * 2",
    "conv_bias": False,
    "encoder_layers": 4,
    "encoder_embed_dim": 96,
    "encoder_ffn_embed_dim": 192,
    "encoder_attention_heads": 4,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "normalize": False,
    "conv_pos": 16,
    "conv_pos_groups": 4,
    "relative_position_embedding": True,
    "num_buckets": 64,
    "max_distance": 128,
    "gru_rel_pos": True,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
}

# WavLM Base+ as its official checkpoint's cfg describes it (94.70M parameters).
WAVLM_BASE_PLUS_CFG: dict[str, Any] = {
    **TINY_WAVLM_CFG,
    "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "num_buckets": 320,
    "max_distance": 800,
}


def build_reference_wavlm(cfg: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """s3prl's own WavLM with `cfg`, randomly initialised from `seed`, in eval mode."""
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    torch.manual_seed(seed)
    return WavLM(WavLMConfig(cfg)).eval()


def write_wavlm_checkpoint(path: str | Path, cfg: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """Writes a randomly initialised WavLM checkpoint in the official format; returns its path."""
    cfg = dict(TINY_WAVLM_CFG if cfg is None else cfg)
    model = build_reference_wavlm(cfg, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"cfg": cfg, "model": model.state_dict()}, path)
    return path

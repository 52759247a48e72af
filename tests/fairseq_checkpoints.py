"""Tiny fairseq HuBERT / wav2vec 2.0 checkpoints in the real on-disk format, built with fairseq's own classes.

The file is what fairseq's trainer writes (DESIGN.md §2): a dict with `args: None`, `cfg` (plain dicts with
`common`, `task` and `model` sections, each named by `_name`), `model` (state dict), `optimizer_history`,
`task_state` and `extra_state`, so `fairseq.checkpoint_utils.load_model_ensemble_and_task([path])` reads it
back. The model is built from that very cfg through fairseq's task/model registry, so the saved config and
the saved weights cannot disagree.

fairseq's BERT init (Linear std 0.02, LayerNorm 1/0) makes attention almost uniform and the layers nearly
alike; `write_fairseq_checkpoint` re-randomises weights so every layer, norm and bias changes the outputs
well above the 1e-4 parity tolerance.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

TINY_GEOMETRY: dict[str, Any] = {
    "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2",
    "encoder_embed_dim": 64,
    "encoder_ffn_embed_dim": 128,
    "encoder_attention_heads": 4,
    "encoder_layers": 3,
    "conv_pos": 16,
    "conv_pos_groups": 4,
    "activation_fn": "gelu",
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "dropout_input": 0.0,
    "dropout_features": 0.0,
}

LABEL_RATE = 50.0
NUM_KM_CLASSES = 12  # symbols in dict.km.txt; fairseq's Dictionary adds 4 specials (bos, pad, eos, unk)


def fairseq_cfg(family: str, data_dir: Path, layer_norm_first: bool = False, normalize: bool = False,
                extractor_mode: str = "default", conv_bias: bool = False, **overrides: Any) -> dict[str, Any]:
    """The checkpoint's `cfg`: plain dicts, as `checkpoint_utils.save_checkpoint` stores them (OmegaConf -> container)."""
    model = {**TINY_GEOMETRY, "layer_norm_first": layer_norm_first, "extractor_mode": extractor_mode,
             "conv_bias": conv_bias, **overrides}
    if family == "hubert":
        task = {"_name": "hubert_pretraining", "data": str(data_dir), "label_dir": str(data_dir), "labels": ["km"],
                "label_rate": LABEL_RATE, "sample_rate": 16000, "normalize": normalize}
        model = {"_name": "hubert", "label_rate": LABEL_RATE, **model}  # label_rate is II("task.label_rate") otherwise
    elif family == "wav2vec2":
        task = {"_name": "audio_pretraining", "data": str(data_dir), "sample_rate": 16000, "normalize": normalize}
        model = {"_name": "wav2vec2", **model}
    else:
        raise ValueError(f"family must be 'hubert' or 'wav2vec2', got {family!r}")
    return {"common": {"_name": None, "fp16": False, "seed": 1}, "task": task, "model": model}


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Linear weights ~ N(0, 1/fan_in) (q_proj x2 for peaky attention), norms 1 ± 0.2, biases ± 0.1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim == 2 and name.endswith("weight"):  # nn.Linear
                scale = 2.0 if "q_proj" in name else 1.0
                parameter.copy_(noise * scale / math.sqrt(parameter.shape[1]))
            elif parameter.ndim == 1 and name.endswith("weight"):  # LayerNorm / GroupNorm
                parameter.copy_(1.0 + 0.2 * noise)
            elif parameter.ndim == 1 and name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            elif name.endswith("weight_v"):  # positional conv direction; weight_g keeps fairseq's magnitude
                parameter.copy_(noise)


def build_fairseq_model(cfg: dict[str, Any]) -> Any:
    """fairseq's model for `cfg`, built the way `load_model_ensemble_and_task` builds it."""
    from fairseq import tasks
    from omegaconf import OmegaConf

    conf = OmegaConf.create(cfg)
    task = tasks.setup_task(conf.task)
    return task.build_model(conf.model)


def write_fairseq_checkpoint(path: str | Path, family: str, layer_norm_first: bool = False, normalize: bool = False,
                             extractor_mode: str = "default", conv_bias: bool = False, seed: int = 0,
                             label_dir: str | Path | None = None, **overrides: Any) -> Path:
    """Writes a randomly initialised tiny fairseq `family` ("hubert" | "wav2vec2") checkpoint; returns its path.

    HuBERT's task reads `dict.km.txt` from its label dir at load time; it is written to `label_dir`
    (default: a `<stem>_labels` folder next to the checkpoint), which is also the task's `data`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data_dir = Path(label_dir) if label_dir is not None else path.parent / f"{path.stem}_labels"
    data_dir.mkdir(parents=True, exist_ok=True)
    if family == "hubert":
        (data_dir / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(NUM_KM_CLASSES)))
    cfg = fairseq_cfg(family, data_dir, layer_norm_first, normalize, extractor_mode, conv_bias, **overrides)
    torch.manual_seed(seed)
    model = build_fairseq_model(cfg)
    _randomise(model, seed)
    checkpoint = {
        "args": None,
        "cfg": cfg,
        "model": model.state_dict(),
        "optimizer_history": [{
            "criterion_name": "HubertCriterion" if family == "hubert" else "Wav2vecCriterion",
            "optimizer_name": "FairseqAdam",
            "lr_scheduler_state": {"best": None},
            "num_updates": 1000,
        }],
        "task_state": {},
        "extra_state": {},
        "last_optimizer_state": None,
    }
    torch.save(checkpoint, path)
    return path

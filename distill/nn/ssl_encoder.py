"""Our implementation of the wav2vec 2.0 / HuBERT / WavLM encoder: every checkpoint teacher runs on it, and the
students take their geometry (`SSLModelConfig`) and front-end from it.

One model covers the three families; they differ only in the attention the builder passes in (WavLM adds
a bucketed relative position bias, optionally gated). The importers (`distill/teachers/fairseq_format.py`,
`distill/teachers/huggingface_format.py`) turn foreign checkpoints into an `SSLModelConfig` plus a state dict for
this model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from distill.io.configuration import above, at_least, between, one_of
from distill.nn.components import (
    DEFAULT_CONV_LAYERS,
    ConvPositionalEmbedding,
    Encoder,
    FeatureExtractor,
    FeatureProjection,
    RelativePositionBias,
    build_encoder_layer,
    masked_standardize,
    valid_mask,
)

FAMILIES = ("wavlm", "hubert", "wav2vec2")
MAX_CONV = 16384  # largest channel count, kernel or stride of a CNN layer (the models here: 512, 10, 5)


@dataclass
class SSLModelConfig:
    family: str = "wavlm"  # one of FAMILIES; only wavlm uses the relative position options
    conv_layers: tuple[tuple[int, int, int], ...] = field(default_factory=lambda: DEFAULT_CONV_LAYERS)  # conv_feature_layers
    # "default": GroupNorm in conv layer 0; "layer_norm": LayerNorm in every conv layer
    extractor_mode: str = field(default="default", metadata=one_of("default", "layer_norm"))
    conv_bias: bool = False  # conv_bias
    dim: int = field(default=768, metadata=between(1, 8192))  # encoder_embed_dim
    ffn_dim: int = field(default=3072, metadata=between(1, 65536))  # encoder_ffn_embed_dim
    num_layers: int = field(default=12, metadata=between(0, 256))  # encoder_layers
    num_heads: int = field(default=12, metadata=between(1, 1024))  # encoder_attention_heads
    layer_norm_first: bool = False  # pre-LN transformer (Large models)
    conv_pos: int = field(default=128, metadata=between(1, 4096))  # positional conv kernel
    conv_pos_groups: int = field(default=16, metadata=at_least(1))
    relative_position: bool = False  # WavLM relative_position_embedding
    num_buckets: int = field(default=320, metadata=between(4, 65536))  # a quarter of them exact, at least one
    max_distance: int = field(default=800, metadata=at_least(1))
    gated_relative_position: bool = False  # WavLM gru_rel_pos
    project_features: bool | None = None  # Linear after the CNN; None: only if widths differ (fairseq; HF: always)
    projection_layer_norm: bool = True  # LayerNorm over the CNN's channels before it (HF feat_proj_layer_norm)
    normalize: bool = False  # layer-normalise each waveform before the CNN (Large models)
    # variance epsilon of that normalisation (fairseq: 1e-5; HF feature extractors: 1e-7)
    normalize_eps: float = field(default=1e-5, metadata=above(0))

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; expected one of {FAMILIES}")
        self.conv_layers = tuple(tuple(int(v) for v in layer) for layer in self.conv_layers)  # type: ignore[assignment]
        if not self.conv_layers or any(len(layer) != 3 or not 1 <= min(layer) <= max(layer) <= MAX_CONV
                                       for layer in self.conv_layers):
            raise ValueError(f"conv_layers must be (channels, kernel, stride) triples of numbers from 1 to {MAX_CONV}, "
                             f"got {self.conv_layers}")
        for name in ("num_heads", "conv_pos_groups"):
            if getattr(self, name) < 1 or self.dim % getattr(self, name):
                raise ValueError(f"{name} must divide dim {self.dim}, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SSLModel(nn.Module):
    """CNN front-end -> LayerNorm + projection -> encoder. Eval-only use as a teacher; trainable as a student part."""

    def __init__(self, config: SSLModelConfig):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureExtractor(config.conv_layers, config.extractor_mode, config.conv_bias)
        self.projection = FeatureProjection(self.feature_extractor.out_channels, config.dim, config.projection_layer_norm,
                                            config.project_features)
        relative = RelativePositionBias(config.num_buckets, config.max_distance, config.num_heads) if config.relative_position else None
        layers = [
            build_encoder_layer(
                config.dim,
                config.ffn_dim,
                config.num_heads,
                layer_norm_first=config.layer_norm_first,
                relative_position=relative if i == 0 else None,
                gated=config.gated_relative_position,
            )
            for i in range(config.num_layers)
        ]
        pos_conv = ConvPositionalEmbedding(config.dim, config.conv_pos, config.conv_pos_groups)
        self.encoder = Encoder(pos_conv, layers, config.dim, config.layer_norm_first)

    def front_end(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Padded waveforms (B, samples) -> projected CNN features (B, frames, dim) and frame lengths."""
        features, frame_lengths = self.feature_extractor(model_input(self.config, waveforms, lengths), lengths)
        return self.projection(features), frame_lengths

    def forward(self, waveforms: Tensor, lengths: Tensor, num_layers: int | None = None) -> tuple[list[Tensor], Tensor]:
        """Returns hidden states 0..num_layers (default: all) as (B, frames, dim) tensors, and frame lengths."""
        features, frame_lengths = self.front_end(waveforms, lengths)
        return self.encoder(features, frame_lengths, num_layers), frame_lengths


def model_input(config: SSLModelConfig, waveforms: Tensor, lengths: Tensor) -> Tensor:
    """What the CNN sees: the waveforms, normalised to zero mean and unit variance per utterance over its valid
    samples where the model was trained so (`normalize`: fairseq's F.layer_norm, HF's feature extractor)."""
    if not config.normalize:
        return waveforms
    if torch.onnx.is_in_onnx_export():  # the same statistics without a loop over the batch
        mask = valid_mask(lengths, waveforms.shape[1]).to(waveforms.dtype)
        return masked_standardize(waveforms[:, None], mask[:, None], config.normalize_eps)[:, 0]
    out = torch.zeros_like(waveforms)
    for i, length in enumerate(lengths.tolist()):
        wav = waveforms[i, :length]
        out[i, :length] = nn.functional.layer_norm(wav, wav.shape, eps=config.normalize_eps)
    return out


def wavlm_base_plus_config() -> SSLModelConfig:
    """WavLM Base+ (94.70M): Base geometry with gated relative position bias."""
    return SSLModelConfig(family="wavlm", relative_position=True, gated_relative_position=True, num_buckets=320, max_distance=800)


def hubert_base_config() -> SSLModelConfig:
    return SSLModelConfig(family="hubert")


def wav2vec2_base_config() -> SSLModelConfig:
    return SSLModelConfig(family="wav2vec2")

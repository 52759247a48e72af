"""Building blocks shared by teachers and students (wav2vec 2.0 / HuBERT / WavLM geometry).

Every stage maps `(x, lengths) -> (x, lengths)`: lengths are exact per-utterance counts (samples at the
input, frames after the CNN), so a padded batch gives each utterance the same result as running it alone.
Parameter names follow fairseq/s3prl (`self_attn.q_proj`, `fc1`, `final_layer_norm`, `pos_conv.0.weight_g`)
so checkpoint importers are short rename tables.
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ConvSpec = Sequence[tuple[int, int, int]]  # (channels, kernel, stride) per layer

# The wav2vec 2.0 / HuBERT / WavLM front-end: 400-sample window, 320-sample hop at 16 kHz.
DEFAULT_CONV_LAYERS: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2


def valid_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def conv_output_lengths(lengths: Tensor, conv_layers: ConvSpec) -> Tensor:
    """Exact number of output frames of an unpadded conv stack (no padding, floor division)."""
    for _, kernel, stride in conv_layers:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


def parse_conv_layers(spec: str | ConvSpec) -> tuple[tuple[int, int, int], ...]:
    """Accepts fairseq's string form `"[(512,10,5)] + [(512,3,2)] * 4 + ..."` without `eval`."""
    if not isinstance(spec, str):
        return tuple((int(c), int(k), int(s)) for c, k, s in spec)
    layers: list[tuple[int, int, int]] = []
    for term in spec.replace(" ", "").split("+"):
        body, _, repeat = term.partition("*")
        inner = body.strip("[]")
        if not (inner.startswith("(") and inner.endswith(")")):
            raise ValueError(f"cannot parse conv layer term {term!r} in {spec!r}; expected '[(dim,kernel,stride)] * n'")
        dims = tuple(int(v) for v in inner.strip("()").split(","))
        if len(dims) != 3:
            raise ValueError(f"conv layer {inner!r} in {spec!r} must have 3 values (dim, kernel, stride)")
        layers.extend([dims] * (int(repeat) if repeat else 1))  # type: ignore[list-item]
    return tuple(layers)


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """Identity forward; multiplies the gradient by `scale` (fairseq's GradMultiply)."""
    return x if scale == 1.0 or not x.requires_grad else _ScaleGradient.apply(x, scale)


class ChannelMoments(NamedTuple):
    """Per-channel mean and (biased) variance over time, each (B, C): what the CNN's first-layer GroupNorm normalises
    with. Given to the CNN, they replace a window's own, so that a long recording run in windows is normalised as a
    whole (distill.nn.chunking); in an exported graph, NaN entries mean "the input's own" (distill.deploy.onnx_export)."""

    mean: Tensor
    variance: Tensor


def masked_standardize(x: Tensor, mask: Tensor, eps: float, weight: Optional[Tensor] = None,
                       bias: Optional[Tensor] = None, moments: Optional[ChannelMoments] = None) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias along the last axis of x (B, C, T), statistics over the positions
    where `mask` (B, 1, T; 0/1 floats) is 1, or `moments` (each broadcastable to (B, C, 1); NaN entries: x's own).
    The loop-free form of per-utterance normalisation that ONNX exports record. Positions where mask is 0 come out
    finite but arbitrary: callers zero them or never read them (a CNN's valid frames never see past their utterance).
    On a (B, 512, frames) CNN output each full pass costs about what a small convolution does, hence the mean as a
    matrix product, the given moments chosen on (B, C, 1) tensors only, and the affine part folded into one scale."""
    count = mask.sum(-1, keepdim=True).clamp(min=1.0)
    own_mean = (x @ mask.transpose(-1, -2)) / count  # the sum as a product reads x without writing x * mask
    mean = own_mean if moments is None else torch.where(torch.isnan(moments.mean), own_mean, moments.mean)
    centered = x - mean
    masked = centered * mask
    spread = (masked * masked).sum(-1, keepdim=True) / count  # a plain sum: a product or a norm rounds 10x worse
    if moments is None:
        variance = spread
    else:  # E[(x - mean)^2] = own variance + (own mean - mean)^2
        variance = torch.where(torch.isnan(moments.variance), spread - (own_mean - mean) ** 2, moments.variance)
    scale = torch.rsqrt(variance + eps)
    if weight is not None:
        scale = scale * weight
    return centered * scale if bias is None else centered * scale + bias


class MaskedGroupNorm(nn.GroupNorm):
    """Per-channel normalisation over time (GroupNorm with groups == channels), over valid frames only.

    fairseq's `Fp32GroupNorm(dim, dim)` in the first CNN layer normalises over the whole padded tensor, which
    makes a padded batch differ from the same utterances run alone. Here each utterance is normalised over its
    own valid frames with the fused kernel, so it gives the same numbers as alone, and autograd keeps only the
    valid samples (a masked form kept three full-size fp32 tensors). Padded frames come out as zeros. An ONNX export
    records the masked form, which needs no loop over the batch (same statistics). `moments`: normalise with these
    instead (a window of a long recording, with the whole recording's; the masked form, padded frames arbitrary).
    """

    def forward(self, x: Tensor, lengths: Tensor, moments: Optional[ChannelMoments] = None) -> Tensor:  # type: ignore[override]
        if self.num_groups != self.num_channels:
            raise ValueError("MaskedGroupNorm supports groups == channels only")
        if torch.onnx.is_in_onnx_export() or moments is not None:
            return self._masked(x, lengths, moments)
        frames = x.shape[-1]
        weight, bias = self.weight.float(), self.bias.float()
        pieces = []
        for utterance, length in zip(x, lengths.tolist()):
            # In a batch, each utterance gets its own fp32 copy: autograd then keeps its valid samples only, not a
            # view that would hold the whole padded batch alive.
            valid = utterance[None, :, :length].to(torch.float32, copy=len(x) > 1)
            if length > 0:
                valid = F.group_norm(valid, self.num_groups, weight, bias, self.eps)
            pieces.append(F.pad(valid, (0, frames - length)) if length < frames else valid)
        return (pieces[0] if len(pieces) == 1 else torch.cat(pieces)).to(x.dtype)

    def _masked(self, x: Tensor, lengths: Tensor, moments: Optional[ChannelMoments]) -> Tensor:
        """x: (B, C, T) or the export's (B, C, 1, T)."""
        between = (None,) * (x.ndim - 2)  # new axes for those between batch and time (channels, height)
        mask = valid_mask(lengths, x.shape[-1])[(slice(None), *between)].to(torch.float32)
        weight, bias = (p.float()[(..., *between)] for p in (self.weight, self.bias))
        if moments is not None:  # (B, C) -> (B, C, 1) or (B, C, 1, 1), as the mean over time
            moments = ChannelMoments(*(m.float()[(..., *between)] for m in moments))
        return masked_standardize(x.float(), mask, self.eps, weight, bias, moments).to(x.dtype)


class ChannelLayerNorm(nn.LayerNorm):
    """fp32 LayerNorm over channels of a (B, C, T) or (B, C, 1, T) tensor (fairseq's `layer_norm` extractor mode)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        y = F.layer_norm(x.float().transpose(1, -1), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps)
        return y.transpose(1, -1).to(x.dtype)


class ConvLayerBlock(nn.Module):
    """Conv1d -> optional norm -> GELU. Names: `conv`, `norm` (rename from fairseq's `0`, `2`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool, norm: Optional[nn.Module]):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.norm = norm

    def forward(self, x: Tensor, lengths: Tensor, moments: Optional[ChannelMoments] = None) -> tuple[Tensor, Tensor]:
        """`moments`: the statistics for a MaskedGroupNorm (ignored by other norms)."""
        if x.ndim == 4:  # (B, C, 1, T): the ONNX export's layout (FeatureExtractor.forward)
            x = F.conv2d(x, self.conv.weight[:, :, None], self.conv.bias, stride=(1, self.stride))
        else:
            x = self.conv(x)
        lengths = (torch.div(lengths - self.kernel, self.stride, rounding_mode="floor") + 1).clamp(min=0)
        if isinstance(self.norm, MaskedGroupNorm):
            x = self.norm(x, lengths, moments)
        elif self.norm is not None:
            x = self.norm(x)
        return F.gelu(x), lengths


class FeatureExtractor(nn.Module):
    """The waveform CNN. mode "default": GroupNorm in the first layer only; "layer_norm": LayerNorm in every layer.

    Input (B, samples) + sample lengths -> (B, frames, channels) + frame lengths.
    """

    def __init__(self, conv_layers: ConvSpec = DEFAULT_CONV_LAYERS, mode: str = "default", conv_bias: bool = False):
        super().__init__()
        if mode not in ("default", "layer_norm"):
            raise ValueError(f"extractor mode must be 'default' or 'layer_norm', got {mode!r}")
        self.conv_layers_spec = tuple(conv_layers)
        blocks, in_channels = [], 1
        for i, (channels, kernel, stride) in enumerate(self.conv_layers_spec):
            if mode == "layer_norm":
                norm: Optional[nn.Module] = ChannelLayerNorm(channels)
            elif i == 0:
                norm = MaskedGroupNorm(channels, channels)
            else:
                norm = None
            blocks.append(ConvLayerBlock(in_channels, channels, kernel, stride, conv_bias, norm))
            in_channels = channels
        self.conv_layers = nn.ModuleList(blocks)
        self.out_channels = in_channels

    @property
    def normalizes_over_time(self) -> bool:
        """Whether the first layer normalises each channel over the whole recording (mode "default")."""
        return isinstance(self.conv_layers[0].norm, MaskedGroupNorm)

    def forward(self, waveforms: Tensor, lengths: Tensor, moments: Optional[ChannelMoments] = None) -> tuple[Tensor, Tensor]:
        """`moments`: what the first layer's GroupNorm normalises with, instead of each utterance's own."""
        if waveforms.ndim != 2:
            raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(waveforms.shape)}")
        if moments is not None and not self.normalizes_over_time:
            raise ValueError("moments were given to a CNN whose first layer has no GroupNorm over time")
        x = waveforms[:, None, :]
        if torch.onnx.is_in_onnx_export():
            # As 2-D convolutions of height 1, which onnxruntime runs in its blocked (NCHWc) layout from one layer to
            # the next; 1-D convolutions it runs unblocked. The CNN is most of a CPU forward (benchmarks/results/inference_and_deploy.md).
            x = x[:, :, None, :]
        for index, block in enumerate(self.conv_layers):
            x, lengths = block(x, lengths, moments if index == 0 else None)
        return x.flatten(1, -2).transpose(1, 2), lengths

    def first_layer_moments(self, waveforms: Tensor) -> ChannelMoments:
        """Per-channel mean and variance over time of the first layer's convolution on unpadded (B, samples)
        waveforms: what its GroupNorm normalises with. A long recording's are pooled from pieces (distill.nn.chunking)."""
        x = self.conv_layers[0].conv(waveforms[:, None].float())
        mean = x.mean(-1)
        return ChannelMoments(mean, (x - mean[..., None]).square().mean(-1))


class FeatureProjection(nn.Module):
    """LayerNorm over CNN channels, then Linear to the model width (WavLM/HuBERT `layer_norm` + `post_extract_proj`).

    `layer_norm=False` gives DistilHuBERT's front-end, which projects the CNN output directly. `project`: whether
    there is a Linear; None = only when the widths differ (fairseq); transformers' models always have one.
    """

    def __init__(self, in_features: int, out_features: int, layer_norm: bool = True, project: Optional[bool] = None):
        super().__init__()
        if project is None:
            project = in_features != out_features
        if not project and in_features != out_features:
            raise ValueError(f"a front-end without projection needs equal widths, got {in_features} -> {out_features}")
        self.layer_norm = nn.LayerNorm(in_features) if layer_norm else None
        self.projection = nn.Linear(in_features, out_features) if project else None

    def forward(self, x: Tensor) -> Tensor:
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.without_layer_norm(x)

    def without_layer_norm(self, x: Tensor) -> Tensor:
        """The projection alone, skipping the LayerNorm (which removes each frame's mean and scale over channels)."""
        return self.projection(x) if self.projection is not None else x


class ConvPositionalEmbedding(nn.Module):
    """Weight-normed grouped conv over time + GELU, added to the input (wav2vec 2.0's `pos_conv`).

    Runs in fp32 even under autocast: cuDNN's half-precision grouped conv with kernel 128 is several times
    slower than the TF32 one (DESIGN.md §4).
    """

    def __init__(self, dim: int, kernel_size: int = 128, groups: int = 16):
        super().__init__()
        conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=math.sqrt(4.0 / (kernel_size * dim)))
        nn.init.zeros_(conv.bias)
        with warnings.catch_warnings():  # the old API keeps fairseq/s3prl's weight_g/weight_v names
            warnings.simplefilter("ignore", FutureWarning)
            self.conv = nn.utils.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, D) with padded frames already zeroed."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = self.conv(x.float().transpose(1, 2))
        if self.trim:
            y = y[:, :, : -self.trim]
        return x + F.gelu(y).transpose(1, 2).to(x.dtype)


class RelativePositionBias(nn.Module):
    """WavLM's bucketed relative position bias: (T, T) bucket ids -> (heads, T, T) additive attention bias.

    Half the buckets for each direction; within each half, exact buckets up to a quarter of the buckets,
    then log-spaced buckets up to `max_distance`.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.relative_attention_bias = nn.Embedding(num_buckets, num_heads)

    def buckets(self, length: int, device: torch.device) -> Tensor:
        positions = torch.arange(length, device=device)
        relative = positions[None, :] - positions[:, None]  # key - query
        half = self.num_buckets // 2
        direction = (relative > 0).long() * half
        distance = relative.abs()
        exact = half // 2
        log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(self.max_distance / exact)
        far = (exact + (log_ratio * (half - exact)).long()).clamp(max=half - 1)
        return direction + torch.where(distance < exact, distance, far)

    def forward(self, length: int, device: torch.device) -> Tensor:
        return self.relative_attention_bias(self.buckets(length, device)).permute(2, 0, 1)


class SelfAttention(nn.Module):
    """Multi-head self-attention on (B, T, D) with scaled-dot-product attention kernels.

    Optional WavLM extras: `relative_position` (the bucketed bias, held by the first layer only) and
    `gated` (gated relative position bias: a per-head, per-query gate computed from the layer input).
    `key_bias=False`: a key projection without bias (Whisper's encoder; a key bias adds the same q.b to every score
    of a query, which the softmax ignores).
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, relative_position: Optional[RelativePositionBias] = None,
                 gated: bool = False, key_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim, bias=key_bias)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.relative_position = relative_position
        self.gated = gated
        if gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, num_heads, 1, 1))

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, time, _ = x.shape
        return x.view(batch, time, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, x: Tensor, key_padding: Optional[Tensor], position_bias: Optional[Tensor] = None, context: Optional[Tensor] = None
    ) -> tuple[Tensor, Optional[Tensor]]:
        """x: (B, T, D) queries; key_padding: (B, S) True on padded keys; position_bias: (H, T, T) from an earlier
        layer; context: (B, S, D) keys/values other than x (2-D attention), without position bias."""
        batch, time, dim = x.shape
        if context is not None and (self.relative_position is not None or position_bias is not None):
            raise ValueError("relative position bias is defined for self-attention only, not with a context")
        if self.relative_position is not None and position_bias is None:
            position_bias = self.relative_position(time, x.device)
        source = x if context is None else context
        q, k, v = self._split_heads(self.q_proj(x)), self._split_heads(self.k_proj(source)), self._split_heads(self.v_proj(source))
        mask: Optional[Tensor] = None
        if position_bias is not None:
            bias = position_bias[None].float()  # (1, H, T, T)
            if self.gated:
                gate_logits = self.grep_linear(self._split_heads(x)).float().view(batch, self.num_heads, time, 2, 4).sum(-1)
                gate_a, gate_b = torch.sigmoid(gate_logits).chunk(2, dim=-1)  # (B, H, T, 1) each
                bias = (gate_a * (gate_b * self.grep_a.float() - 1.0) + 2.0) * bias
            if key_padding is not None:
                bias = bias.masked_fill(key_padding[:, None, None, :], float("-inf"))
            mask = bias.to(q.dtype).expand(batch, -1, -1, -1)
        elif key_padding is not None:
            mask = ~key_padding[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(batch, time, dim)
        return self.out_proj(out), position_bias


class EncoderLayer(nn.Module):
    """Transformer layer: attention + FFN, post-LN (Base models) or pre-LN (`layer_norm_first`, Large models)."""

    def __init__(self, self_attn: SelfAttention, dim: int, ffn_dim: int, dropout: float = 0.0, layer_norm_first: bool = False):
        super().__init__()
        self.self_attn = self_attn
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm_first = layer_norm_first

    def _ffn(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))

    def forward(
        self, x: Tensor, key_padding: Optional[Tensor], position_bias: Optional[Tensor] = None, context: Optional[Tensor] = None
    ) -> tuple[Tensor, Optional[Tensor]]:
        if self.layer_norm_first:
            normed = self.self_attn_layer_norm(x)
            normed_context = None if context is None else self.self_attn_layer_norm(context)
            attn, position_bias = self.self_attn(normed, key_padding, position_bias, normed_context)
            x = x + self.dropout(attn)
            return x + self._ffn(self.final_layer_norm(x)), position_bias
        attn, position_bias = self.self_attn(x, key_padding, position_bias, context)
        x = self.self_attn_layer_norm(x + self.dropout(attn))
        return self.final_layer_norm(x + self._ffn(x)), position_bias


class FeedForwardBlock(nn.Module):
    """A transformer layer's feed-forward half alone, residual, LayerNorm placed like the layers' (`layer_norm_first`)."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0, layer_norm_first: bool = False):
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm_first = layer_norm_first

    def forward(self, x: Tensor) -> Tensor:
        if self.layer_norm_first:
            return x + self.dropout(self.fc2(F.gelu(self.fc1(self.layer_norm(x)))))
        return self.layer_norm(x + self.dropout(self.fc2(F.gelu(self.fc1(x)))))


def build_encoder_layer(
    dim: int,
    ffn_dim: int,
    num_heads: int,
    dropout: float = 0.0,
    layer_norm_first: bool = False,
    relative_position: Optional[RelativePositionBias] = None,
    gated: bool = False,
    key_bias: bool = True,
) -> EncoderLayer:
    attention = SelfAttention(dim, num_heads, dropout, relative_position, gated, key_bias)
    return EncoderLayer(attention, dim, ffn_dim, dropout, layer_norm_first)


class Encoder(nn.Module):
    """Positional conv + transformer layers; returns every hidden state.

    hidden_states[0] is the input of the first layer (after the positional conv and, for post-LN models,
    the encoder LayerNorm); hidden_states[i] is the output of layer i. For pre-LN models the final encoder
    LayerNorm is applied to the last state, as s3prl's upstreams do.
    """

    def __init__(self, pos_conv: ConvPositionalEmbedding, layers: Sequence[EncoderLayer], dim: int, layer_norm_first: bool = False):
        super().__init__()
        self.pos_conv = pos_conv
        self.layer_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(layers)
        self.layer_norm_first = layer_norm_first

    def embed(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """Zero padded frames, add the positional conv, normalise. Returns (layer-0 state, key padding mask)."""
        valid = valid_mask(lengths, x.shape[1])
        # An exported graph keeps the mask for every batch (a data-dependent branch would be frozen at export).
        key_padding = None if not torch.onnx.is_in_onnx_export() and bool(valid.all()) else ~valid
        x = self.pos_conv(x * valid[..., None].to(x.dtype))
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        return x, key_padding

    def forward(self, x: Tensor, lengths: Tensor, num_layers: Optional[int] = None) -> list[Tensor]:
        x, key_padding = self.embed(x, lengths)
        hidden_states = [x]
        position_bias = None
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        for layer in layers:
            x, position_bias = layer(x, key_padding, position_bias)
            hidden_states.append(x)
        if self.layer_norm_first and len(layers) == len(self.layers):
            hidden_states[-1] = self.layer_norm(hidden_states[-1])
        return hidden_states

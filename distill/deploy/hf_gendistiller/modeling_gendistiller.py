"""GenDistiller for transformers: `AutoModel.from_pretrained(folder, trust_remote_code=True)`.

The student keeps a wav2vec 2.0-style front-end (waveform CNN, projection, positional convolution) and one compact
generator block G that produces the teacher's target layers one after another, free running:
    h_k = Norm_k(Out_k(h_{k-1} + G(h_{k-1} + e_k)))
with a learned step embedding e_k, an output projection Out_k (`output_projection_groups`) and a LayerNorm Norm_k
(`output_norm`). `hidden_states` = (h_0, h_1, ..., h_K): h_0 is the front-end output after the positional
convolution and the encoder LayerNorm (transformers' hidden_states[0] of HuBERT); h_k approximates the teacher's layer
`target_layers[k-1]` (standardised per dimension instead with `states_in_teacher_units` false); `last_hidden_state` is
h_K. With `front_end_state`, the projected CNN output before the positional convolution comes first ("unnormalized":
without the LayerNorm over the CNN's channels); with `generator_states`, each generated state follows its step's
update (G's output before the residual).

`attention_mask` (batch, samples; 1 on samples, 0 on right padding) makes a padded batch give each utterance what it
gets alone: the CNN's GroupNorm and the waveform normalisation use each utterance's valid part only, and attention
ignores padded frames. Padded frames of every state are zero.

Written from the GenDistiller student of the `distill` package (parameter names are the same, but for the positional
convolution's weight norm); needs torch and transformers only.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .configuration_gendistiller import GenDistillerConfig


def valid_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, max_len) bool mask, True on valid positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class MaskedGroupNorm(nn.GroupNorm):
    """GroupNorm with one group per channel over each utterance's valid frames; padded frames come out as zeros."""

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:  # type: ignore[override]
        frames = x.shape[-1]
        weight, bias = self.weight.float(), self.bias.float()
        pieces = []
        for utterance, length in zip(x, lengths.tolist()):
            valid = utterance[None, :, :length].to(torch.float32, copy=len(x) > 1)
            if length > 0:
                valid = F.group_norm(valid, self.num_groups, weight, bias, self.eps)
            pieces.append(F.pad(valid, (0, frames - length)) if length < frames else valid)
        return (pieces[0] if len(pieces) == 1 else torch.cat(pieces)).to(x.dtype)


class ChannelLayerNorm(nn.LayerNorm):
    """fp32 LayerNorm over the channels of a (B, C, T) tensor."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        y = F.layer_norm(x.float().transpose(1, -1), self.normalized_shape, self.weight.float(), self.bias.float(),
                         self.eps)
        return y.transpose(1, -1).to(x.dtype)


class ConvLayerBlock(nn.Module):
    """Conv1d -> optional norm -> GELU, with exact frame counts."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool,
                 norm: Optional[nn.Module]):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        self.norm = norm

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv(x)
        lengths = (torch.div(lengths - self.kernel, self.stride, rounding_mode="floor") + 1).clamp(min=0)
        if isinstance(self.norm, MaskedGroupNorm):
            x = self.norm(x, lengths)
        elif self.norm is not None:
            x = self.norm(x)
        return F.gelu(x), lengths


class FeatureExtractor(nn.Module):
    """The waveform CNN: (B, samples) + sample lengths -> (B, frames, channels) + frame lengths."""

    def __init__(self, config: GenDistillerConfig):
        super().__init__()
        blocks, in_channels = [], 1
        for index, (channels, kernel, stride) in enumerate(config.conv_layers):
            if config.extractor_mode == "layer_norm":
                norm: Optional[nn.Module] = ChannelLayerNorm(channels)
            else:
                norm = MaskedGroupNorm(channels, channels) if index == 0 else None
            blocks.append(ConvLayerBlock(in_channels, channels, kernel, stride, config.conv_bias, norm))
            in_channels = channels
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = waveforms[:, None, :]
        for block in self.conv_layers:
            x, lengths = block(x, lengths)
        return x.transpose(1, 2), lengths


class FeatureProjection(nn.Module):
    """Optional LayerNorm over the CNN's channels, then an optional Linear to the model width."""

    def __init__(self, config: GenDistillerConfig):
        super().__init__()
        channels = config.conv_layers[-1][0]
        self.layer_norm = nn.LayerNorm(channels) if config.feature_layer_norm else None
        self.projection = nn.Linear(channels, config.hidden_size) if config.feature_projection else None

    def forward(self, x: Tensor) -> Tensor:
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.without_layer_norm(x)

    def without_layer_norm(self, x: Tensor) -> Tensor:
        return self.projection(x) if self.projection is not None else x


class ConvPositionalEmbedding(nn.Module):
    """Weight-normed grouped convolution over time + GELU, added to the input; run in fp32."""

    def __init__(self, config: GenDistillerConfig):
        super().__init__()
        dim, kernel = config.hidden_size, config.num_conv_pos_embeddings
        conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=config.num_conv_pos_embedding_groups)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = self.conv(x.float().transpose(1, 2))
        if self.trim:
            y = y[:, :, : -self.trim]
        return x + F.gelu(y).transpose(1, 2).to(x.dtype)


class Encoder(nn.Module):
    """The positional convolution and the encoder LayerNorm that make h_0 (the generator's layers live elsewhere)."""

    def __init__(self, config: GenDistillerConfig):
        super().__init__()
        self.pos_conv = ConvPositionalEmbedding(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size)  # unused by pre-LN students, kept with their weights
        self.layer_norm_first = config.layer_norm_first

    def embed(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        """Zero padded frames, add the positional convolution, normalise: (h_0, key padding mask or None)."""
        valid = valid_mask(lengths, x.shape[1])
        key_padding = None if bool(valid.all()) else ~valid
        x = self.pos_conv(x * valid[..., None].to(x.dtype))
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        return x, key_padding


class SelfAttention(nn.Module):
    """Multi-head attention of (B, T, D) queries over themselves or over a context (B, S, D)."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, time, _ = x.shape
        return x.view(batch, time, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, key_padding: Optional[Tensor], context: Optional[Tensor] = None) -> Tensor:
        batch, time, dim = x.shape
        source = x if context is None else context
        q, k, v = (self._split_heads(self.q_proj(x)), self._split_heads(self.k_proj(source)),
                   self._split_heads(self.v_proj(source)))
        mask = None if key_padding is None else ~key_padding[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(batch, time, dim))


class EncoderLayer(nn.Module):
    """Transformer layer: attention + feed-forward, post-LN or pre-LN (`layer_norm_first`)."""

    def __init__(self, config: GenDistillerConfig):
        super().__init__()
        dim = config.hidden_size
        self.self_attn = SelfAttention(dim, config.num_attention_heads, config.dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(config.dropout)
        self.layer_norm_first = config.layer_norm_first

    def _ffn(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))

    def forward(self, x: Tensor, key_padding: Optional[Tensor], context: Optional[Tensor] = None) -> Tensor:
        if self.layer_norm_first:
            normed_context = None if context is None else self.self_attn_layer_norm(context)
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), key_padding, normed_context))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, key_padding, context)))
        return self.final_layer_norm(x + self._ffn(x))


class FeedForwardBlock(nn.Module):
    """A step's own feed-forward block after G: residual, LayerNorm placed like the layers'."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float, layer_norm_first: bool):
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


class GenDistillerPreTrainedModel(PreTrainedModel):
    config_class = GenDistillerConfig
    base_model_prefix = "gendistiller"
    main_input_name = "input_values"

    def _init_weights(self, module: nn.Module) -> None:
        """For a model built from a config alone (from_pretrained loads every weight)."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)


class GenDistillerModel(GenDistillerPreTrainedModel):
    """`forward(input_values, attention_mask=None, output_hidden_states=None)` -> BaseModelOutput with
    `last_hidden_state` h_K and, when asked, `hidden_states` (h_0, ..., h_K), each (batch, frames, hidden_size)."""

    def __init__(self, config: GenDistillerConfig):
        super().__init__(config)
        dim, steps = config.hidden_size, len(config.target_layers)
        self.feature_extractor = FeatureExtractor(config)
        self.projection = FeatureProjection(config)
        self.encoder = Encoder(config)
        blocks = 1 if config.share_generator else steps
        self.generator = nn.ModuleList(
            nn.ModuleList(EncoderLayer(config) for _ in range(config.generator_layers)) for _ in range(blocks))
        self.step_embedding = nn.Embedding(steps, dim) if config.step_embedding else None
        projections = max(config.output_projection_groups, default=-1) + 1
        self.output_projection = nn.ModuleList(nn.Linear(dim, dim) for _ in range(projections))
        self.output_norm = nn.ModuleList(nn.LayerNorm(dim) for _ in range(steps)) if config.output_norm else None
        self.step_ffn = nn.ModuleDict({
            str(step): FeedForwardBlock(dim, size, config.dropout, config.layer_norm_first)
            for step, size in enumerate(config.step_ffn_dims) if size})
        if config.target_standardization:
            self.register_buffer("target_mean", torch.zeros(steps, dim))
            self.register_buffer("target_std", torch.ones(steps, dim))
        self.post_init()

    def _get_feat_extract_output_lengths(self, input_lengths: Tensor) -> Tensor:
        """Frames the CNN gives for utterances of these many samples."""
        for _, kernel, stride in self.config.conv_layers:
            input_lengths = (torch.div(input_lengths - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)
        return input_lengths

    def _normalized(self, waveforms: Tensor, lengths: Tensor) -> Tensor:
        """Each utterance at zero mean and unit variance over its valid samples (`normalize_waveform`)."""
        if not self.config.normalize_waveform:
            return waveforms
        out = torch.zeros_like(waveforms)
        for i, length in enumerate(lengths.tolist()):
            wav = waveforms[i, :length]
            out[i, :length] = F.layer_norm(wav, wav.shape, eps=self.config.normalize_eps)
        return out

    def _embed_step(self, x: Tensor, step: int) -> Tensor:
        return x if self.step_embedding is None else x + self.step_embedding.weight[step].to(x.dtype)

    def _generate(self, step: int, history: list[Tensor], key_padding: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """One step: (its update x, the next state) from the history h_0..h_{k-1} (with `attention_2d`, G's first
        layer attends over all of it; else over h_{k-1} alone)."""
        config = self.config
        block = self.generator[0 if config.share_generator else step]
        previous = history[-1]
        x = self._embed_step(previous, step)
        context, context_padding = None, key_padding
        if config.attention_2d:
            context = torch.cat([self._embed_step(h, j) for j, h in enumerate(history)], dim=1)
            if key_padding is not None:
                context_padding = key_padding.repeat(1, len(history))
        for _ in range(config.generator_repeats[step] if config.generator_repeats else 1):
            for layer in block:
                x = layer(x, context_padding, context)
                context, context_padding = None, key_padding  # deeper layers attend over G's own output
        if str(step) in self.step_ffn:
            x = self.step_ffn[str(step)](x)
        y = previous + x
        group = config.output_projection_groups[step]
        if group >= 0:
            y = self.output_projection[group](y)
        return x, self.output_norm[step](y) if self.output_norm is not None else y

    def _front_end_state(self, features: Tensor, projected: Tensor) -> Tensor:
        """The projected CNN output; with front_end_state "unnormalized", without the per-frame LayerNorm."""
        if self.config.front_end_state == "unnormalized":
            return self.projection.without_layer_norm(features)
        return projected

    def _to_output(self, step: int, z: Tensor) -> Tensor:
        """A step's state in the teacher's units (`target_standardization` undone)."""
        if not self.config.target_standardization:
            return z
        return z * self.target_std[step].to(z.dtype) + self.target_mean[step].to(z.dtype)

    def forward(self, input_values: Tensor, attention_mask: Optional[Tensor] = None,
                output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None, **kwargs):
        if input_values.ndim != 2:
            raise ValueError(f"input_values must be (batch, samples), got shape {tuple(input_values.shape)}")
        if kwargs.get("output_attentions"):
            raise ValueError("GenDistiller does not return attention weights")
        output_hidden_states = (self.config.output_hidden_states if output_hidden_states is None
                                else output_hidden_states)
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        if attention_mask is None:
            lengths = torch.full((input_values.shape[0],), input_values.shape[1], device=input_values.device)
        else:
            lengths = attention_mask.long().sum(-1)
        features, frame_lengths = self.feature_extractor(self._normalized(input_values, lengths), lengths)
        projected = self.projection(features)
        h0, key_padding = self.encoder.embed(projected, frame_lengths)
        history, outputs = [h0], []
        for step in range(len(self.config.target_layers)):
            update, prediction = self._generate(step, history, key_padding)
            if self.config.generator_states:
                outputs.append(update)
            outputs.append(self._to_output(step, prediction) if self.config.states_in_teacher_units else prediction)
            history.append(prediction)
        mask = valid_mask(frame_lengths, h0.shape[1])[..., None]
        front = [self._front_end_state(features, projected)] if self.config.front_end_state else []
        states = tuple(state * mask.to(state.dtype) for state in [*front, h0, *outputs])
        hidden_states = states if output_hidden_states else None
        if not return_dict:
            return tuple(value for value in (states[-1], hidden_states) if value is not None)
        return BaseModelOutput(last_hidden_state=states[-1], hidden_states=hidden_states)


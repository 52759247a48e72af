"""The two students: GenDistiller (autoregressive layer generator) and the DistilHuBERT baseline.

Both share the front-end of the teacher's geometry: waveform CNN -> projection -> positional conv
(`feature_extractor`, `projection`, `encoder`). Names follow s3prl's `DistillerModel` up to a rename table,
so the baseline exports to s3prl's own format (`distill/deploy/s3prl_distiller.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from distill.io.audio import check_waveforms, pad_waveforms
from distill.models.student_config import UNNORMALIZED, DistilHuBERTConfig, GenDistillerConfig, StudentConfig
from distill.nn.chunking import Chunking, FrameGrid, Moments, RecordingNorm, Samples, Window, run_in_windows, runs_whole
from distill.nn.components import (
    ChannelMoments,
    ConvPositionalEmbedding,
    Encoder,
    EncoderLayer,
    FeatureExtractor,
    FeatureProjection,
    FeedForwardBlock,
    build_encoder_layer,
    scale_gradient,
    valid_mask,
)
from distill.nn.ssl_encoder import SSLModel, SSLModelConfig, model_input


@dataclass
class StudentOutput:
    hidden_states: list[Tensor]  # what the s3prl upstream exposes, each (B, T, D)
    predictions: list[Tensor]  # one per target layer, aligned with config.target_layers, in the teacher's units
    lengths: Tensor  # (B,) valid frames
    layer0: Tensor  # front-end output after the positional conv: the teacher's hidden state 0 analogue

    def states(self) -> list[Tensor]:
        """Every tensor of the output in one list: hidden states, predictions, layer0 (`from_states` inverts it)."""
        return [*self.hidden_states, *self.predictions, self.layer0]

    def from_states(self, states: Sequence[Tensor], lengths: Tensor) -> "StudentOutput":
        """An output shaped like this one from `states()` of the same layout (other frames or another batch)."""
        hidden, predicted = len(self.hidden_states), len(self.predictions)
        return StudentOutput(list(states[:hidden]), list(states[hidden:hidden + predicted]), lengths, states[-1])


def _stitched(outputs: Sequence[StudentOutput]) -> StudentOutput:
    """Consecutive windows' outputs of one recording (batch of one) as one output."""
    states = [torch.cat(parts, dim=1) for parts in zip(*(out.states() for out in outputs))]
    return outputs[0].from_states(states, sum(out.lengths for out in outputs))


def _batched(outputs: Sequence[StudentOutput]) -> StudentOutput:
    """Single-utterance outputs (each state (1, T_i, D)) as one zero-padded batch."""
    states = [torch.nn.utils.rnn.pad_sequence([state[0] for state in parts], batch_first=True)
              for parts in zip(*(out.states() for out in outputs))]
    return outputs[0].from_states(states, torch.cat([out.lengths for out in outputs]))


class Student(nn.Module):
    """Front-end shared by both students; subclasses add what turns h0 into predictions. Built from a resolved config
    (`distill.models.build_student` resolves one that is not)."""

    def __init__(self, config: StudentConfig, encoder_layers: Sequence[EncoderLayer]):
        super().__init__()
        if config.unresolved():
            raise ValueError(f"{type(self).__name__} needs a resolved config; {config.unresolved()} still undecided: "
                             "build it with distill.models.build_student (or resolve_student first)")
        self.config = config
        geometry = config.geometry_config()
        self.geometry = geometry
        self.feature_extractor = FeatureExtractor(config.front_end_conv_layers(), geometry.extractor_mode, geometry.conv_bias)
        self.projection = FeatureProjection(self.feature_extractor.out_channels, geometry.dim,
                                            layer_norm=config.feature_layer_norm,
                                            project=geometry.project_features if not config.front_end_channels else None)
        pos_conv = ConvPositionalEmbedding(geometry.dim, geometry.conv_pos, geometry.conv_pos_groups)
        self.encoder = Encoder(pos_conv, encoder_layers, geometry.dim, geometry.layer_norm_first)
        if config.target_standardization:  # filled by set_target_statistics before training, then kept
            self.register_buffer("target_mean", torch.zeros(len(config.target_layers), geometry.dim))
            self.register_buffer("target_std", torch.ones(len(config.target_layers), geometry.dim))

    def _features(
        self, waveforms: Tensor, lengths: Tensor, cnn_features: Optional[tuple[Tensor, Tensor]] = None,
        moments: Optional[ChannelMoments] = None,
    ) -> tuple[Tensor, Tensor]:
        """The CNN output (B, T, C) and frame lengths. `cnn_features`: the same, already computed by an identical frozen
        CNN (the teacher's, when the config freezes a CNN copied from it); the student's own CNN is then skipped.
        `moments`: what the CNN's first-layer GroupNorm normalises with (see `forward`)."""
        if cnn_features is not None:
            if self.config.cnn_grad_mult != 0:
                raise ValueError("cnn_features can stand in for a frozen CNN only (student.cnn_grad_mult=0), "
                                 f"got cnn_grad_mult={self.config.cnn_grad_mult}")
            return cnn_features
        waveforms = model_input(self.geometry, waveforms, lengths)
        mult = self.config.cnn_grad_mult
        if mult == 0:
            with torch.no_grad():
                features, frame_lengths = self.feature_extractor(waveforms, lengths, moments)
        else:
            features, frame_lengths = self.feature_extractor(waveforms, lengths, moments)
            features = scale_gradient(features, mult)
        return features, frame_lengths

    def forward(
        self,
        waveforms: Tensor,
        lengths: Tensor,
        teacher_states: Optional[Sequence[Tensor]] = None,
        use_teacher: Optional[Sequence[bool]] = None,
        cnn_features: Optional[tuple[Tensor, Tensor]] = None,
        layers: Optional[int] = None,
        moments: Optional[ChannelMoments] = None,
        history_gradient: bool = True,
    ) -> StudentOutput:
        """`layers`: hidden states 0..layers only (GenDistiller generates no further; DistilHuBERT's parallel heads
        need every layer, so it computes all and returns those). `moments`: the per-channel mean and variance (B, C)
        for the CNN's first-layer GroupNorm over time, instead of each utterance's own (a window of a long recording
        gets the whole recording's: `windows`). `history_gradient` (GenDistiller, training.history_gradient): whether
        a step's own prediction, as the next step's history, passes gradients back to it; False detaches it."""
        raise NotImplementedError

    @property
    def frame_grid(self) -> FrameGrid:
        return FrameGrid.of(self.config.front_end_conv_layers())

    @torch.no_grad()
    def infer(self, wavs: Sequence[Tensor], chunking: Optional[Chunking] = Chunking(), layers: Optional[int] = None
              ) -> StudentOutput:
        """Unpadded 16 kHz waveforms -> outputs, free running, no teacher. A recording longer than one window of
        `chunking` is run in windows (distill.nn.chunking; None: every recording whole); `layers`: see `forward`."""
        return self.run(wavs, chunking, layers)

    def run(self, wavs: Sequence[Tensor], chunking: Optional[Chunking], layers: Optional[int] = None) -> StudentOutput:
        """`infer` with autograd on (the s3prl upstream when fine-tuned)."""
        check_waveforms(wavs)
        grid = self.frame_grid
        if all(runs_whole(len(wav), chunking, grid) for wav in wavs):
            waveforms, lengths = pad_waveforms(wavs)  # one padded batch: each utterance gets what it gets alone
            return self(waveforms, lengths, layers=layers)
        return _batched([_stitched([out for _, out in self.windows(wav, chunking, layers)]) for wav in wavs])

    def windows(self, samples: Samples, chunking: Optional[Chunking], layers: Optional[int] = None
                ) -> Iterator[tuple[Window, StudentOutput]]:
        """One recording (a 1-D tensor or array, or a distill.io.audio.AudioFile, read lazily), window by window
        (distill.nn.chunking): each window's output, a batch of one, cut to the frames kept from it. With more than one
        window, a CNN whose first layer normalises over time gets the whole recording's statistics."""
        device = next(self.parameters()).device
        layout: list[StudentOutput] = []  # a window's output: how run()'s states make an output again

        def run(first: int, end: int, moments: Optional[Moments]) -> list[Tensor]:
            piece = torch.as_tensor(samples[first:end], dtype=torch.float32, device=device)
            given = None if moments is None else ChannelMoments(*(torch.from_numpy(m)[None].to(device) for m in moments))
            out = self(piece[None], torch.tensor([len(piece)], device=device), layers=layers, moments=given)
            layout[:] = [out]
            return [state[0] for state in out.states()]

        @torch.no_grad()
        def first_layer_moments(first: int, end: int) -> Moments:
            piece = torch.as_tensor(samples[first:end], dtype=torch.float32, device=device)
            return tuple(m[0].cpu().numpy() for m in self.feature_extractor.first_layer_moments(piece[None]))

        norm = None
        if self.feature_extractor.normalizes_over_time:
            norm = RecordingNorm(FrameGrid.of(self.config.front_end_conv_layers()[:1]), first_layer_moments)
        for window, states in run_in_windows(run, len(samples), chunking, self.frame_grid, norm):
            yield window, layout[0].from_states([state[None] for state in states],
                                                torch.tensor([len(states[-1])], device=device))

    def set_target_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Per target layer and dimension (K, D): the teacher's mean and standard deviation (student.target_standardization)."""
        if not self.config.target_standardization:
            raise ValueError("set_target_statistics needs student.target_standardization=true")
        self.target_mean.copy_(mean)
        self.target_std.copy_(std)

    def _to_output(self, step: int, z: Tensor) -> Tensor:
        """A prediction in the teacher's units (identity without target standardisation)."""
        if not self.config.target_standardization:
            return z
        return z * self.target_std[step].to(z.dtype) + self.target_mean[step].to(z.dtype)

    def _standardized(self, step: int, state: Tensor) -> Tensor:
        """A teacher state in the units the student predicts in (the inverse of `_to_output`)."""
        if not self.config.target_standardization:
            return state
        return (state - self.target_mean[step].to(state.dtype)) / self.target_std[step].to(state.dtype)

    def init_from_teacher(self, teacher: SSLModel) -> None:
        """Copy the CNN, projection and positional conv (and what subclasses add) from a teacher model.
        A narrowed front-end (`front_end_channels`) keeps its random CNN and projection."""
        if not self.config.front_end_channels:
            self.feature_extractor.load_state_dict(teacher.feature_extractor.state_dict())
            _load_matching(self.projection, teacher.projection)
        self.encoder.pos_conv.load_state_dict(teacher.encoder.pos_conv.state_dict())
        self.encoder.layer_norm.load_state_dict(teacher.encoder.layer_norm.state_dict())

    def state_names(self) -> list[str]:
        """What each exposed hidden state is, in order (the names ONNX and transformers exports carry)."""
        raise NotImplementedError

    def parameter_breakdown(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in module.parameters()) for name, module in self.named_children()}


def _checked_layers(layers: Optional[int], available: int) -> int:
    """The last hidden state to return: `layers`, or every one."""
    if layers is None:
        return available
    if not 0 <= layers <= available:
        raise ValueError(f"layers={layers}: this student has hidden states 0 to {available}")
    return layers


def _zero_padding(states: Sequence[Tensor], lengths: Tensor) -> list[Tensor]:
    """Zeroes each (B, T, D) state beyond its utterance's valid frames."""
    if not states:
        return []
    mask = valid_mask(lengths, states[0].shape[1])[..., None]
    return [state * mask.to(state.dtype) for state in states]


def _load_matching(target: nn.Module, source: nn.Module) -> None:
    """Copies the parameters whose names exist in both (a WavLM layer has relative-position extras that a
    plain layer lacks; the baseline's projection has no LayerNorm)."""
    source_state = source.state_dict()
    target_state = target.state_dict()
    shared = {k: v for k, v in source_state.items() if k in target_state and target_state[k].shape == v.shape}
    missing = sorted(set(target_state) - set(shared))
    if missing:
        raise ValueError(f"cannot initialise from the teacher: no weights for {missing[:6]}")
    target.load_state_dict(shared)


def _plain_layer(geometry: SSLModelConfig, dropout: float) -> EncoderLayer:
    return build_encoder_layer(geometry.dim, geometry.ffn_dim, geometry.num_heads, dropout, geometry.layer_norm_first)


class GenDistiller(Student):
    """Generates the K target layers one after another: ĥ_k = Norm_k(Out_k(h_{k-1} + G(h_{k-1} + e_k))).

    G is one transformer block shared by all steps (run `generator_repeats[k]` times at step k; with `step_ffn_dims`,
    followed by a feed-forward block of the step's own), e_k a learned step embedding, Out_k a linear projection
    (`output_projection_groups`) and Norm_k a per-step LayerNorm (`output_norm`; none for pre-LN teachers). h_0 is the
    front-end output; during training h_{k-1} for k > 1 is the teacher's layer (teacher forcing)
    or ĥ_{k-1} (free running), chosen per step by `use_teacher`; inference is always free running. With
    `attention_2d`, G attends over the frames of every earlier layer h_0..h_{k-1} (causal across layers,
    bidirectional in time) instead of h_{k-1} alone.
    """

    config: GenDistillerConfig

    def __init__(self, config: GenDistillerConfig):
        geometry = config.geometry_config()
        super().__init__(config, [])
        num_steps = len(config.target_layers)
        num_blocks = 1 if config.share_generator else num_steps
        self.generator = nn.ModuleList(
            nn.ModuleList(_plain_layer(geometry, config.dropout) for _ in range(config.generator_layers)) for _ in range(num_blocks)
        )
        self.step_embedding = nn.Embedding(num_steps, geometry.dim) if config.step_embedding else None
        if self.step_embedding is not None:
            nn.init.normal_(self.step_embedding.weight, std=0.02)
        self.projection_of_step = list(config.output_projection_groups)  # type: ignore[arg-type]
        self.output_projection = nn.ModuleList(_half_identity(geometry.dim) for _ in range(max(self.projection_of_step) + 1))
        self.output_norm = nn.ModuleList(nn.LayerNorm(geometry.dim) for _ in range(num_steps)) if config.output_norm else None
        self.step_ffn = nn.ModuleDict({
            str(step): FeedForwardBlock(geometry.dim, size, config.dropout, geometry.layer_norm_first)
            for step, size in enumerate(config.step_ffn_dims) if size})  # type: ignore[arg-type]

    def init_from_teacher(self, teacher: SSLModel) -> None:
        super().init_from_teacher(teacher)
        first = self.config.generator_init_layer
        if first <= 0:
            return
        for block in self.generator:
            for offset, layer in enumerate(block):
                source_index = min(first + offset, teacher.config.num_layers) - 1
                _load_matching(layer, teacher.encoder.layers[source_index])

    def state_names(self) -> list[str]:
        """[front_end (front_end_state)], h0, then per step [the step's update (generator_states)] and the teacher
        layer generated."""
        front = ["front_end"] if self.config.front_end_state else []
        updates = self.config.generator_states
        return front + ["h0"] + [name for layer in self.config.target_layers
                                 for name in ([f"update_{layer}"] if updates else []) + [f"generated_layer_{layer}"]]

    def _front_end_state(self, cnn: Tensor, projected: Tensor) -> Tensor:
        """The projected CNN output; with front_end_state "unnormalized", without the per-frame LayerNorm."""
        return self.projection.without_layer_norm(cnn) if self.config.front_end_state == UNNORMALIZED else projected

    def _embed_step(self, x: Tensor, step: int) -> Tensor:
        if self.step_embedding is None:
            return x
        return x + self.step_embedding.weight[step].to(x.dtype)

    def _generate(self, step: int, history: list[Tensor], key_padding: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        """(the step's update x: G(h_{k-1} + e_k), then the step's own block; its prediction Norm_k(Out_k(h_{k-1} + x)))."""
        block = self.generator[0 if self.config.share_generator else step]
        previous = history[-1]
        x = self._embed_step(previous, step)
        context, context_padding = None, key_padding
        if self.config.attention_2d:
            context = torch.cat([self._embed_step(h, j) for j, h in enumerate(history)], dim=1)
            if key_padding is not None:
                context_padding = key_padding.repeat(1, len(history))
        for _ in range(self.config.generator_repeats[step] if self.config.generator_repeats else 1):
            for layer in block:
                x, _ = layer(x, context_padding, None, context)
                context = None  # deeper layers of G attend over its own output
                context_padding = key_padding
        if str(step) in self.step_ffn:
            x = self.step_ffn[str(step)](x)
        y = previous + x
        if self.projection_of_step[step] >= 0:
            y = self.output_projection[self.projection_of_step[step]](y)
        return x, self.output_norm[step](y) if self.output_norm is not None else y

    def forward(
        self,
        waveforms: Tensor,
        lengths: Tensor,
        teacher_states: Optional[Sequence[Tensor]] = None,
        use_teacher: Optional[Sequence[bool]] = None,
        cnn_features: Optional[tuple[Tensor, Tensor]] = None,
        layers: Optional[int] = None,
        moments: Optional[ChannelMoments] = None,
        history_gradient: bool = True,
    ) -> StudentOutput:
        cnn, frame_lengths = self._features(waveforms, lengths, cnn_features, moments)
        projected = self.projection(cnn)
        h0, key_padding = self.encoder.embed(projected, frame_lengths)
        front = [self._front_end_state(cnn, projected)] if self.config.front_end_state else []
        per_step = 2 if self.config.generator_states else 1
        last = _checked_layers(layers, len(front) + per_step * len(self.config.target_layers))
        history, updates, predicted, predictions = [h0], [], [], []
        for step in range(-(-max(0, last - len(front)) // per_step)):
            update, prediction = self._generate(step, history, key_padding)
            if self.config.generator_states:
                updates.append(update)
            predicted.append(prediction)
            predictions.append(self._to_output(step, prediction))
            teacher_next = teacher_states is not None and use_teacher is not None and step < len(use_teacher) and use_teacher[step]
            own = prediction if history_gradient else prediction.detach()
            history.append(self._standardized(step, teacher_states[step].to(prediction.dtype))  # type: ignore[index]
                           if teacher_next else own)
        h0, *predictions = _zero_padding([h0, *predictions], frame_lengths)
        front = _zero_padding(front, frame_lengths)
        generated = predictions if self.config.states_in_teacher_units else _zero_padding(predicted, frame_lengths)
        if self.config.generator_states:
            generated = [state for pair in zip(_zero_padding(updates, frame_lengths), generated) for state in pair]
        return StudentOutput([*front, h0, *generated][: last + 1], predictions, frame_lengths, h0)


def _half_identity(dim: int) -> nn.Linear:
    """Linear(dim, dim) starting as ½·I: the output projection starts as the mean of the history and G's output."""
    projection = nn.Linear(dim, dim)
    nn.init.eye_(projection.weight)
    projection.weight.data.mul_(0.5)
    nn.init.zeros_(projection.bias)
    return projection


class PredictionHeads(nn.Module):
    """DistilHuBERT's heads: Linear(D, D*K) -> GELU -> K separate Linear(D, D) (s3prl's SplitLinear layout)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.expand = nn.Linear(dim, dim * num_heads)
        bound = dim ** -0.5
        self.weight = nn.Parameter(torch.empty(num_heads, dim, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(1, 1, num_heads, dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> list[Tensor]:
        batch, time, dim = x.shape
        hidden = torch.nn.functional.gelu(self.expand(x)).view(batch, time, self.num_heads, dim)
        out = torch.einsum("btkd,kde->btke", hidden, self.weight.to(hidden.dtype)) + self.bias.to(hidden.dtype)
        return list(out.unbind(dim=2))


class DistilHuBERT(Student):
    """Front-end + `encoder_layers` transformer layers (from teacher layers 1..n) + parallel prediction heads.

    hidden_states follow s3prl's distiller: [projected front-end (before the positional conv), layer 1..n,
    head 1..K].
    """

    config: DistilHuBERTConfig

    def __init__(self, config: DistilHuBERTConfig):
        geometry = config.geometry_config()
        layers = [_plain_layer(geometry, config.dropout) for _ in range(config.encoder_layers)]
        super().__init__(config, layers)
        self.heads = PredictionHeads(geometry.dim, len(config.target_layers))

    def state_names(self) -> list[str]:
        """Its projected front-end, its transformer layers, and its heads named by the teacher layer each predicts."""
        layers = [f"transformer_{i + 1}" for i in range(self.config.encoder_layers)]
        return ["front_end"] + layers + [f"head_layer_{layer}" for layer in self.config.target_layers]

    def init_from_teacher(self, teacher: SSLModel) -> None:
        super().init_from_teacher(teacher)
        for i, layer in enumerate(self.encoder.layers):
            _load_matching(layer, teacher.encoder.layers[i])

    def forward(
        self,
        waveforms: Tensor,
        lengths: Tensor,
        teacher_states: Optional[Sequence[Tensor]] = None,
        use_teacher: Optional[Sequence[bool]] = None,
        cnn_features: Optional[tuple[Tensor, Tensor]] = None,
        layers: Optional[int] = None,
        moments: Optional[ChannelMoments] = None,
        history_gradient: bool = True,
    ) -> StudentOutput:
        last = _checked_layers(layers, self.config.encoder_layers + len(self.config.target_layers))
        cnn, frame_lengths = self._features(waveforms, lengths, cnn_features, moments)
        features = self.projection(cnn)
        layer_states = self.encoder(features, frame_lengths)
        predictions = [self._to_output(step, z) for step, z in enumerate(self.heads(layer_states[-1]))]
        states = [features] + layer_states[1:] + predictions
        *states, layer0 = _zero_padding([*states, layer_states[0]], frame_lengths)  # layer0: after the positional conv, like the teacher's state 0
        return StudentOutput(states[: last + 1], states[-len(predictions):], frame_lengths, layer0)

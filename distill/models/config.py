"""Student configuration as plain data. Every field has a default and a comment; unknown keys are rejected."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from distill.io.configuration import from_dict
from distill.nn.ssl_encoder import SSLModelConfig

STUDENT_KINDS = ("gendistiller", "distilhubert")
HISTORY_MODES = ("teacher_forcing", "free_running", "scheduled")
STEP_FFN_RULES = ("auto", "early")
# Width of the early steps' own feed-forward blocks (step_ffn_dims "early"), as a fraction of the student's: 384 on
# Whisper base, 66.9% of DistilHuBERT's parameters there with 128-channel front-ends (BENCHMARKS.md §4.2).
EARLY_STEP_FFN_RATIO = 0.75


@dataclass
class StudentConfig:
    kind: str = "gendistiller"  # "gendistiller" (autoregressive generator) or "distilhubert" (the baseline)
    target_layers: list[int] = field(default_factory=lambda: [4, 8, 12])  # teacher layers to predict, in order
    init_from_teacher: bool = True  # copy front-end (and baseline layers / generator) weights from the teacher
    cnn_grad_mult: float = 0.1  # gradient multiplier of the waveform CNN; 0 freezes it (DistilHuBERT uses 0.1)
    # Front-end. Default (0): the teacher's CNN, copied at initialisation. > 0: a cheaper CNN with the teacher's
    # kernels and strides (same 320-sample hop and frame count) but this many channels in every layer; it and the
    # projection after it are trained from scratch (set cnn_grad_mult=1 and layer0_loss=true with it).
    front_end_channels: int = 0
    # LayerNorm over the CNN's channels before the projection. Per frame, it removes the frame's energy, which a teacher
    # whose layers are not LayerNorm outputs (Whisper's conv stem, pre-LN encoders) carries. "auto": DistilHuBERT never
    # (s3prl's distiller has none); GenDistiller has it unless its narrowed CNN (front_end_channels) is trained for such
    # a teacher (a CNN copied from the teacher keeps the teacher's, whose projection expects it) (BENCHMARKS.md §4.2).
    feature_layer_norm: bool | str = "auto"
    layer0_loss: bool = False  # also distil h0 (the front-end output) against the teacher's layer 0, same loss form
    dropout: float = 0.1  # dropout inside transformer layers (DistilHuBERT: 0.1)
    # GenDistiller generator
    generator_layers: int = 1  # transformer layers in the generator block G
    share_generator: bool = True  # one G for every step (False: one G per target layer)
    generator_init_layer: int = 1  # teacher layer whose weights initialise G (0 = random init)
    step_embedding: bool = True  # learned embedding of the step k added to the history
    # Which output projection each step uses, numbered from 0, -1 for none; D² parameters each. Default (None): with
    # per-step output LayerNorms, only the first step, from the front-end output, has one ([0, -1, -1] for three
    # targets); without them, the later steps share a second ([0, 1, 1]), which sets their predictions' scale (G's
    # post-LN output cannot). [0, 0, 0] is one shared by all steps (the first design), [0, 1, 2] one per step (BENCHMARKS.md §4, §4.2).
    output_projection_groups: list[int] | None = None
    # A LayerNorm per step on each prediction. "auto": when every teacher layer leaves a LayerNorm (post-LN teachers);
    # not otherwise, where it would remove the per-frame scale the teacher's layers carry (BENCHMARKS.md §4.2).
    output_norm: bool | str = "auto"
    # Predict each target layer standardised per dimension (mean and std of that teacher layer, measured on the
    # training data before the first step and kept in the checkpoint), undone at the output: the student's states
    # keep the teacher's scale, while the generator's history works on unit-scale states.
    # "auto" (the shipped GenDistiller): on unless every teacher layer leaves a LayerNorm (post-LN teachers, whose
    # layers a per-step LayerNorm already matches); pre-LN teachers (Whisper, Large models) need it (BENCHMARKS.md §4.2).
    target_standardization: bool | str = False
    # Times G runs at each step ([] = once each): e.g. [2, 1, 1] doubles the depth of the first step (from the
    # front-end output) at no parameter cost.
    generator_repeats: list[int] = field(default_factory=list)
    # Hidden size of a feed-forward block of each step's own, run after G ([] or 0: none), 2·D·size parameters each:
    # step-specific capacity that the shared G lacks, e.g. [512, 0, 0] for the first step alone. "early": one of
    # EARLY_STEP_FFN_RATIO·D for each step but the last. "auto" (the shipped GenDistiller): "early" with a narrowed
    # front-end (front_end_channels > 0, as Whisper teachers need), none with the teacher's CNN, whose share of the
    # parameters leaves no room for them within 67% of DistilHuBERT's (BENCHMARKS.md §4.2).
    step_ffn_dims: list[int] | str = field(default_factory=list)
    history: str = "scheduled"  # training history: teacher_forcing, free_running, or scheduled (sampling)
    # Whether a step's own prediction, when it is the next step's history, passes gradients back to it (training the
    # chain end to end); false detaches it: each step is trained for its own target alone, and the later steps still
    # learn on the predictions they will get (BENCHMARKS.md §4.2).
    history_gradient: bool = True
    teacher_forcing_start: float = 1.0  # scheduled: probability of teacher history at step 0 ...
    teacher_forcing_end: float = 0.0  # ... decaying linearly to this at the last training step
    attention_2d: bool = False  # 2-D attention: step k attends over all earlier layers x all frames
    # DistilHuBERT baseline
    encoder_layers: int = 2  # transformer layers of the baseline (initialised from teacher layers 1..n)
    # Geometry of the front-end and transformer layers; training replaces it with the teacher's.
    geometry: dict[str, Any] = field(default_factory=lambda: SSLModelConfig(family="hubert").to_dict())

    def __post_init__(self) -> None:
        if self.kind not in STUDENT_KINDS:
            raise ValueError(f"student.kind must be one of {STUDENT_KINDS}, got {self.kind!r}")
        if self.history not in HISTORY_MODES:
            raise ValueError(f"student.history must be one of {HISTORY_MODES}, got {self.history!r}")
        if not self.target_layers or any(int(layer) < 1 for layer in self.target_layers):
            raise ValueError(f"student.target_layers must be teacher layer numbers >= 1, got {self.target_layers}")
        if list(self.target_layers) != sorted(set(self.target_layers)):
            raise ValueError(f"student.target_layers must be increasing, got {self.target_layers}")
        if self.generator_repeats and (len(self.generator_repeats) != len(self.target_layers)
                                       or min(self.generator_repeats) < 1):
            raise ValueError(f"student.generator_repeats must give a count >= 1 for each of the {len(self.target_layers)} "
                             f"target layers, got {self.generator_repeats}")
        if isinstance(self.step_ffn_dims, str):
            if self.step_ffn_dims not in STEP_FFN_RULES:
                raise ValueError(f"student.step_ffn_dims must be one of {STEP_FFN_RULES} or a list of sizes, "
                                 f"got {self.step_ffn_dims!r}")
        elif self.step_ffn_dims and (len(self.step_ffn_dims) != len(self.target_layers) or min(self.step_ffn_dims) < 0):
            raise ValueError(f"student.step_ffn_dims must give a size >= 0 for each of the {len(self.target_layers)} "
                             f"target layers, got {self.step_ffn_dims}")
        groups = self.projection_groups()
        used = sorted({group for group in groups if group >= 0})
        if len(groups) != len(self.target_layers) or used != list(range(len(used))):
            raise ValueError(f"student.output_projection_groups must number the projection of each of the "
                             f"{len(self.target_layers)} target layers as 0, 1, ... without gaps, got {groups}")
        for name in ("target_standardization", "feature_layer_norm", "output_norm"):
            if getattr(self, name) not in (True, False, "auto"):
                raise ValueError(f"student.{name} must be true, false or auto, got {getattr(self, name)!r}")
        if self.cnn_grad_mult < 0:
            raise ValueError(f"student.cnn_grad_mult must be >= 0, got {self.cnn_grad_mult}")
        if self.front_end_channels < 0:
            raise ValueError(f"student.front_end_channels must be 0 (the teacher's CNN) or a channel count, "
                             f"got {self.front_end_channels}")
        if self.front_end_channels and self.cnn_grad_mult == 0:
            raise ValueError("student.front_end_channels > 0 builds a CNN trained from scratch; it cannot be frozen "
                             f"(student.cnn_grad_mult={self.cnn_grad_mult})")
        self.geometry_config()  # validates the geometry keys

    def decide_by_teacher(self, layers_end_in_layer_norm: bool) -> None:
        """Resolves the "auto" options by whether every teacher layer leaves a LayerNorm (post-LN teachers). Undecided
        (a config only inspected, without its teacher), they take the post-LN choice. `step_ffn_dims` becomes sizes
        for the geometry, by now the teacher's."""
        if self.target_standardization == "auto":
            self.target_standardization = not layers_end_in_layer_norm
        if self.output_norm == "auto":
            self.output_norm = layers_end_in_layer_norm
        if self.feature_layer_norm == "auto":
            self.feature_layer_norm = self.kind == "gendistiller" and (layers_end_in_layer_norm or not self.front_end_channels)
        self.step_ffn_dims = self.step_ffn_sizes()

    def projection_groups(self) -> list[int]:
        """`output_projection_groups`, or its default for the decided (or undecided: post-LN) `output_norm`."""
        if self.output_projection_groups is not None:
            return list(self.output_projection_groups)
        later = -1 if self.output_norm is not False else 1
        return [0] + [later] * (len(self.target_layers) - 1)

    def step_ffn_sizes(self) -> list[int]:
        """`step_ffn_dims` as sizes for the current geometry."""
        if not isinstance(self.step_ffn_dims, str):
            return list(self.step_ffn_dims)
        if self.step_ffn_dims == "auto" and not (self.kind == "gendistiller" and self.front_end_channels):
            return []
        early = round(EARLY_STEP_FFN_RATIO * self.geometry_config().dim)
        return [early] * (len(self.target_layers) - 1) + [0]

    def geometry_config(self) -> SSLModelConfig:
        return from_dict(SSLModelConfig, self.geometry, "student.geometry")

    def front_end_conv_layers(self) -> tuple[tuple[int, int, int], ...]:
        """(channels, kernel, stride) of the student's CNN: the geometry's, or narrowed to `front_end_channels`."""
        layers = self.geometry_config().conv_layers
        if not self.front_end_channels:
            return layers
        return tuple((self.front_end_channels, kernel, stride) for _, kernel, stride in layers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


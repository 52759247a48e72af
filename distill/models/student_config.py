"""Student configurations as plain data: a part both students share and one class per student kind. Each field has a
default and a comment, and the defaults are the students we ship. A few fields may say `auto` (or, for the output
projections, nothing): `distill.models.resolve.resolve_student` turns them into concrete values for a teacher, once,
and the models are built from the resolved config only. Unknown keys are rejected."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Mapping

from distill.io.configuration import at_least, between, from_dict
from distill.nn.ssl_encoder import SSLModelConfig

AUTO = "auto"
STEP_FFN_RULES = (AUTO, "early")
UNNORMALIZED = "unnormalized"


@dataclass(frozen=True)
class StudentConfig:
    """What both students have: the teacher layers they predict, the front-end, and the layers' geometry. Build a
    `GenDistillerConfig` or a `DistilHuBERTConfig` (or `student_config(kind, ...)`), not this."""

    kind: ClassVar[str]
    target_layers: list[int] = field(default_factory=lambda: [4, 8, 12])  # teacher layers to predict, in order
    init_from_teacher: bool = True  # copy front-end (and baseline layers / generator) weights from the teacher
    cnn_grad_mult: float = 0.1  # gradient multiplier of the waveform CNN; 0 freezes it (DistilHuBERT uses 0.1)
    # Front-end. 0: the teacher's CNN, copied at initialisation. > 0: a cheaper CNN with the teacher's kernels and
    # strides (same 320-sample hop and frame count) but this many channels in every layer; it and the projection after
    # it are trained from scratch (set cnn_grad_mult=1 and optim.layer0_loss=true with it).
    front_end_channels: int = field(default=0, metadata=between(0, 4096))
    # A LayerNorm over the CNN's channels before the projection. Per frame, it removes the frame's energy, which a
    # teacher whose layers are not LayerNorm outputs (Whisper's conv stem, pre-LN encoders) carries. auto: GenDistiller
    # has it unless its narrowed CNN (front_end_channels) is trained for such a teacher (a CNN copied from the teacher
    # keeps the teacher's, whose projection expects it); DistilHuBERT never (s3prl's distiller has none).
    feature_layer_norm: bool | str = AUTO
    # Predict each target layer standardised per dimension (mean and std of that teacher layer, measured on the
    # training data before the first step and kept in the checkpoint), undone at the output: the student's states keep
    # the teacher's units, while the generator's history works on unit-scale states. auto: on unless every teacher
    # layer leaves a LayerNorm (post-LN teachers, whose layers a per-step LayerNorm already matches).
    target_standardization: bool | str = False
    # dropout inside transformer layers (DistilHuBERT: 0.1)
    dropout: float = field(default=0.1, metadata=between(0, 1, high_open=True))
    # Geometry of the front-end and transformer layers (WavLM/HuBERT Base by default). A checkpoint teacher replaces it
    # with its own; other teachers need one of their width.
    geometry: dict[str, Any] = field(default_factory=lambda: SSLModelConfig(family="hubert").to_dict())

    def __post_init__(self) -> None:
        if type(self) is StudentConfig:
            raise TypeError("StudentConfig is the part both students share: build a GenDistillerConfig or a "
                            "DistilHuBERTConfig, or student_config(kind, ...)")
        if not self.target_layers or any(int(layer) < 1 for layer in self.target_layers):
            raise ValueError(f"student.target_layers must be teacher layer numbers >= 1, got {self.target_layers}")
        if list(self.target_layers) != sorted(set(self.target_layers)):
            raise ValueError(f"student.target_layers must be increasing, got {self.target_layers}")
        for name in ("target_standardization", "feature_layer_norm"):
            _check_switch(self, name)
        if self.cnn_grad_mult < 0:
            raise ValueError(f"student.cnn_grad_mult must be >= 0, got {self.cnn_grad_mult}")
        if self.front_end_channels < 0:
            raise ValueError(f"student.front_end_channels must be 0 (the teacher's CNN) or a channel count, "
                             f"got {self.front_end_channels}")
        if self.front_end_channels and self.cnn_grad_mult == 0:
            raise ValueError("student.front_end_channels > 0 builds a CNN trained from scratch; it cannot be frozen "
                             f"(student.cnn_grad_mult={self.cnn_grad_mult})")
        object.__setattr__(self, "geometry", self.geometry_config().to_dict())  # validated, every key spelled out

    def unresolved(self) -> list[str]:
        """The fields a teacher still has to decide (see distill.models.resolve); [] for a resolved config."""
        return [name for name in ("feature_layer_norm", "target_standardization") if getattr(self, name) == AUTO]

    def geometry_config(self) -> SSLModelConfig:
        return from_dict(SSLModelConfig, self.geometry, "student.geometry")

    def front_end_conv_layers(self) -> tuple[tuple[int, int, int], ...]:
        """(channels, kernel, stride) of the student's CNN: the geometry's, or narrowed to `front_end_channels`."""
        layers = self.geometry_config().conv_layers
        if not self.front_end_channels:
            return layers
        return tuple((self.front_end_channels, kernel, stride) for _, kernel, stride in layers)

    def to_dict(self) -> dict[str, Any]:
        """The YAML / checkpoint form: `kind` first, then every field."""
        return {"kind": self.kind, **asdict(self)}


# GenDistiller's choice of exposed hidden states: read at inference only (s3prl's `-g` YAML may set them for a
# checkpoint), so neither the weights nor `--resume` depend on them.
EXPOSURE_OPTIONS = ("front_end_state", "states_in_teacher_units", "generator_states")


@dataclass(frozen=True)
class GenDistillerConfig(StudentConfig):
    """GenDistiller: a generator block G that produces the target layers one after another (distill.models.students)."""

    kind: ClassVar[str] = "gendistiller"
    target_standardization: bool | str = AUTO
    generator_layers: int = field(default=1, metadata=between(1, 64))  # transformer layers in the generator block G
    share_generator: bool = True  # one G for every step (False: one G per target layer)
    generator_init_layer: int = field(default=1, metadata=at_least(0))  # teacher layer initialising G (0 = random init)
    step_embedding: bool = True  # learned embedding of the step k added to the history
    # Which output projection each step uses, numbered from 0, -1 for none; D² parameters each. Unset (null): with
    # per-step output LayerNorms, only the first step, from the front-end output, has one ([0, -1, -1] for three
    # targets); without them, the later steps share a second ([0, 1, 1]), which sets their predictions' scale (G's
    # post-LN output cannot). [0, 0, 0] is one shared by all steps, [0, 1, 2] one per step.
    output_projection_groups: list[int] | None = None
    # A LayerNorm per step on each prediction. auto: when every teacher layer leaves a LayerNorm (post-LN teachers);
    # not otherwise, where it would remove the per-frame scale the teacher's layers carry.
    output_norm: bool | str = AUTO
    # Times G runs at each step ([] = once each): e.g. [2, 1, 1] doubles the depth of the first step (from the
    # front-end output) at no parameter cost.
    generator_repeats: list[int] = field(default_factory=list, metadata=between(1, 64))
    # Hidden size of a feed-forward block of each step's own, run after G ([] or 0: none), 2·D·size parameters each:
    # step-specific capacity that the shared G lacks, e.g. [512, 0, 0] for the first step alone. early: one of 0.75·D
    # for each step but the last. auto: with a narrowed front-end (front_end_channels > 0, as Whisper teachers need),
    # those blocks at most 0.75·D wide, narrower where GenDistiller would pass 67% of DistilHuBERT's parameters; none
    # with the teacher's CNN, whose share of the parameters leaves no room for them.
    step_ffn_dims: list[int] | str = field(default=AUTO, metadata=between(0, 65536))
    attention_2d: bool = False  # 2-D attention: step k attends over all earlier layers x all frames
    # The hidden states exposed (to s3prl's weighted sum, ONNX, transformers): [front-end, h0, generated layers].
    # front_end_state: begin with the projected CNN output before the positional convolution, as DistilHuBERT's do
    # (false: h0 first); "unnormalized": the CNN output through the projection's Linear alone, without the LayerNorm
    # over channels that removes each frame's mean and scale, and with them speaker cues (DistilHuBERT has none).
    # states_in_teacher_units: the generated layers in the teacher's units (false: as predicted, standardised per
    # dimension when target_standardization is on; the same otherwise). generator_states: before each
    # generated layer, the step's update (G's output, after the step's own block, before the residual): a state no
    # loss pulls toward a teacher layer, as DistilHuBERT's transformer layers; s3prl's weighted sum finds more of what
    # the states hold with them (BENCHMARKS.md, "Downstream transfer"); false: h0 and the generated layers alone.
    front_end_state: bool | str = False
    states_in_teacher_units: bool = True
    generator_states: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        steps = len(self.target_layers)
        if self.generator_repeats and (len(self.generator_repeats) != steps or min(self.generator_repeats) < 1):
            raise ValueError(f"student.generator_repeats must give a count >= 1 for each of the {steps} target layers, "
                             f"got {self.generator_repeats}")
        if isinstance(self.step_ffn_dims, str):
            if self.step_ffn_dims not in STEP_FFN_RULES:
                raise ValueError(f"student.step_ffn_dims must be one of {STEP_FFN_RULES} or a list of sizes, "
                                 f"got {self.step_ffn_dims!r}")
        elif self.step_ffn_dims and (len(self.step_ffn_dims) != steps or min(self.step_ffn_dims) < 0):
            raise ValueError(f"student.step_ffn_dims must give a size >= 0 for each of the {steps} target layers, "
                             f"got {self.step_ffn_dims}")
        groups = self.output_projection_groups
        if groups is not None:
            used = sorted({group for group in groups if group >= 0})
            if len(groups) != steps or used != list(range(len(used))):
                raise ValueError(f"student.output_projection_groups must number the projection of each of the {steps} "
                                 f"target layers as 0, 1, ... without gaps, got {groups}")
        _check_switch(self, "output_norm")
        if self.front_end_state not in (True, False, UNNORMALIZED):
            raise ValueError(f"student.front_end_state must be true, false or {UNNORMALIZED}, got {self.front_end_state!r}")

    def unresolved(self) -> list[str]:
        pending = super().unresolved()
        if self.output_norm == AUTO:
            pending.append("output_norm")
        if isinstance(self.step_ffn_dims, str):
            pending.append("step_ffn_dims")
        if self.output_projection_groups is None:
            pending.append("output_projection_groups")
        return pending


@dataclass(frozen=True)
class DistilHuBERTConfig(StudentConfig):
    """DistilHuBERT as in s3prl: the first teacher layers, then one prediction head per target layer."""

    kind: ClassVar[str] = "distilhubert"
    feature_layer_norm: bool | str = False  # s3prl's distiller has none
    # transformer layers (initialised from teacher layers 1..n)
    encoder_layers: int = field(default=2, metadata=between(1, 64))


STUDENT_CONFIGS: dict[str, type[StudentConfig]] = {"gendistiller": GenDistillerConfig,
                                                   "distilhubert": DistilHuBERTConfig}


def student_config(kind: str, **values: Any) -> StudentConfig:
    """The config of a student `kind` ("gendistiller" or "distilhubert") with `values` for its fields."""
    return _config_class(kind, "student")(**values)


def student_config_from_dict(data: Mapping[str, Any], where: str = "student") -> StudentConfig:
    """A `student:` section: `kind` picks the class (default gendistiller); keys that kind lacks are rejected."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}: {data!r}")
    values = dict(data)
    cls = _config_class(values.pop("kind", GenDistillerConfig.kind), where)
    return from_dict(cls, values, where)


def field_names(cls: type[StudentConfig]) -> set[str]:
    return {f.name for f in fields(cls)}


def _config_class(kind: Any, where: str) -> type[StudentConfig]:
    if not isinstance(kind, str) or kind not in STUDENT_CONFIGS:
        raise ValueError(f"{where}.kind must be one of {tuple(STUDENT_CONFIGS)}, got {kind!r}")
    return STUDENT_CONFIGS[kind]


def _check_switch(config: StudentConfig, name: str) -> None:
    if getattr(config, name) not in (True, False, AUTO):
        raise ValueError(f"student.{name} must be true, false or auto, got {getattr(config, name)!r}")

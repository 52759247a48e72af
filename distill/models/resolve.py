"""The one place where a student config meets its teacher: `resolve_student(config, teacher)` returns a new config of
concrete values (no `auto`, output projections numbered, the teacher's geometry) after checking that the student can
be distilled from that teacher. The trainer resolves before building; `build_student` resolves a config that still
needs it against the teacher its geometry implies."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Optional

import torch

from distill.models.student_config import AUTO, DistilHuBERTConfig, GenDistillerConfig, StudentConfig
from distill.models.students import DistilHuBERT, GenDistiller

# Width of the early steps' own feed-forward blocks, as a fraction of the student's: "early" gives this width, "auto"
# at most this width, narrower where the blocks would take GenDistiller past PARAMETER_BUDGET.
EARLY_STEP_FFN_RATIO = 0.75
# GenDistiller's parameters at most this share of DistilHuBERT's for the same teacher and front-end (33% fewer).
PARAMETER_BUDGET = 0.67


@dataclass(frozen=True)
class TeacherFacts:
    """What resolving a student needs to know of its teacher (filled from a `distill.teachers.Teacher`)."""

    spec: str  # named in errors
    dim: int  # width of its hidden states
    num_layers: int  # transformer layers (hidden states 1..num_layers)
    layers_end_in_layer_norm: bool  # every hidden state leaves a LayerNorm (post-LN encoders)
    downsample_rate: int  # samples per frame
    # A checkpoint teacher's geometry (SSLModelConfig.to_dict()), which the student takes; None for teachers that give
    # none (s3prl, your own module, Whisper): the student then keeps its configured geometry.
    geometry: Optional[dict[str, Any]] = None

    @classmethod
    def implied_by(cls, config: StudentConfig) -> "TeacherFacts":
        """The checkpoint teacher of the config's geometry: post-LN unless its layers are pre-LN (`layer_norm_first`),
        with the layers the config targets (a geometry given for a teacher that has none may leave its layer count
        at the default). What a config is resolved against without a teacher: one only inspected, a student built
        without one."""
        geometry = config.geometry_config()
        return cls(spec="(implied by student.geometry)", dim=geometry.dim,
                   num_layers=max(geometry.num_layers, *config.target_layers),
                   layers_end_in_layer_norm=not geometry.layer_norm_first,
                   downsample_rate=math.prod(stride for _, _, stride in geometry.conv_layers),
                   geometry=dict(config.geometry))


def resolve_student(config: StudentConfig, teacher: Optional[TeacherFacts] = None) -> StudentConfig:
    """`config` for `teacher` (None: the teacher its geometry implies, `TeacherFacts.implied_by`), as a new config of
    concrete values. Raises ValueError when the student cannot be distilled from that teacher."""
    if teacher is None:
        teacher = TeacherFacts.implied_by(config)
    if teacher.geometry is not None:
        # The student's layers use plain attention: the teacher's relative position bias is not copied.
        geometry = {**teacher.geometry, "relative_position": False, "gated_relative_position": False}
        config = replace(config, geometry=geometry)
    elif config.init_from_teacher:
        raise ValueError(f"student.init_from_teacher needs a checkpoint teacher (WavLM, fairseq or HF); {teacher.spec} "
                         "is not one: set student.init_from_teacher=false and give student.geometry")
    _check_compatible(config, teacher)
    post_ln = teacher.layers_end_in_layer_norm
    is_gendistiller = isinstance(config, GenDistillerConfig)
    decided: dict[str, Any] = {}
    if config.target_standardization == AUTO:
        decided["target_standardization"] = not post_ln
    if config.feature_layer_norm == AUTO:  # a CNN copied from the teacher keeps the teacher's LayerNorm (or its lack)
        has_norm = post_ln if config.front_end_channels else config.geometry_config().projection_layer_norm
        decided["feature_layer_norm"] = is_gendistiller and has_norm
    if is_gendistiller:
        output_norm = post_ln if config.output_norm == AUTO else config.output_norm
        decided["output_norm"] = output_norm
        decided["step_ffn_dims"] = _step_ffn_dims(config, teacher)
        if config.output_projection_groups is None:
            later = -1 if output_norm else 1  # a later step's scale comes from its LayerNorm, or else a projection
            decided["output_projection_groups"] = [0] + [later] * (len(config.target_layers) - 1)
    else:
        assert isinstance(config, DistilHuBERTConfig), type(config)
    resolved = replace(config, **decided)
    assert not resolved.unresolved(), resolved.unresolved()
    return resolved


def _step_ffn_dims(config: GenDistillerConfig, teacher: TeacherFacts) -> list[int]:
    """`step_ffn_dims` as one size per step (0: no block). auto: the early steps' blocks with a narrowed front-end,
    within the parameter budget; none with the teacher's CNN, whose share of the parameters leaves no room for them."""
    if not isinstance(config.step_ffn_dims, str):
        return list(config.step_ffn_dims)
    if config.step_ffn_dims == AUTO and not config.front_end_channels:
        return []
    early_steps = len(config.target_layers) - 1
    width = round(EARLY_STEP_FFN_RATIO * config.geometry_config().dim)
    if config.step_ffn_dims == AUTO:
        width = min(width, _widest_within_budget(config, teacher, early_steps))
    return [width] * early_steps + [0]


def _widest_within_budget(config: GenDistillerConfig, teacher: TeacherFacts, early_steps: int) -> int:
    """The widest early steps' blocks (one each) that keep GenDistiller within PARAMETER_BUDGET of the DistilHuBERT
    of the same teacher and front-end; 0 when none fits."""
    if early_steps == 0:
        return 0
    without_blocks = resolve_student(replace(config, step_ffn_dims=[]), teacher)
    spare = PARAMETER_BUDGET * _baseline_parameters(config, teacher) - _parameters(GenDistiller, without_blocks)
    dim = config.geometry_config().dim
    per_width, fixed = 2 * dim + 1, 3 * dim  # a block of width h: LayerNorm 2D, fc1 D·h + h, fc2 h·D + D
    return max(0, int((spare / early_steps - fixed) // per_width))


def share_of_distilhubert(config: GenDistillerConfig, teacher: TeacherFacts) -> float:
    """GenDistiller's parameters (`config` resolved for `teacher`) over those of the DistilHuBERT of the same teacher
    and front-end: what PARAMETER_BUDGET bounds."""
    return _parameters(GenDistiller, resolve_student(config, teacher)) / _baseline_parameters(config, teacher)


def _baseline_parameters(config: GenDistillerConfig, teacher: TeacherFacts) -> int:
    """The parameters of the DistilHuBERT of the same teacher, target layers and front-end (counted without copying
    weights, so a teacher with fewer layers than it copies still has a count)."""
    shared = {name: getattr(config, name) for name in ("target_layers", "cnn_grad_mult", "front_end_channels", "dropout",
                                                       "geometry")}
    return _parameters(DistilHuBERT, resolve_student(DistilHuBERTConfig(init_from_teacher=False, **shared), teacher))


def _parameters(kind: type[GenDistiller] | type[DistilHuBERT], config: StudentConfig) -> int:
    with torch.device("meta"):  # counted, not initialised: no memory, no draw from the random generator
        return sum(p.numel() for p in kind(config).parameters())  # type: ignore[arg-type]


def _check_compatible(config: StudentConfig, teacher: TeacherFacts) -> None:
    """Frames paired one to one, target layers (and layers to copy) the teacher has, the teacher's width."""
    hop = math.prod(stride for _, _, stride in config.front_end_conv_layers())
    if teacher.downsample_rate != hop:
        raise ValueError(
            f"the teacher {teacher.spec} gives a frame every {teacher.downsample_rate} samples, the student every "
            f"{hop}; distillation pairs frames one to one, so both need the same hop: give the student CNN "
            f"strides whose product is {teacher.downsample_rate} (student.geometry.conv_layers) or use a teacher at "
            f"{hop} samples per frame")
    if max(config.target_layers) > teacher.num_layers:
        raise ValueError(f"student.target_layers {config.target_layers} ask for layers the teacher {teacher.spec} "
                         f"lacks: it has {teacher.num_layers}; choose target layers from 1 to {teacher.num_layers}")
    copied = config.encoder_layers if isinstance(config, DistilHuBERTConfig) and config.init_from_teacher else 0
    if copied > teacher.num_layers:
        raise ValueError(f"student.encoder_layers {copied} are initialised from the teacher's first "
                         f"layers, but the teacher {teacher.spec} has {teacher.num_layers}; choose at most "
                         f"{teacher.num_layers} (or student.init_from_teacher=false)")
    width = config.geometry_config().dim
    if width != teacher.dim:
        raise ValueError(f"the student is {width} wide but the teacher {teacher.spec} is {teacher.dim} wide; the "
                         f"students predict the teacher's states as they are: set the width to {teacher.dim} "
                         "(student.geometry's dim)")

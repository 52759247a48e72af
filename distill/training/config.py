"""The distillation config: a YAML file of sections (teacher, student, training, data, optim, run) with
`section.key=value` overrides. Each section is a dataclass with a comment per field and its bounds beside it; unknown
keys are rejected, and keys that moved name their new place. `check_config` is the one check of a whole config before
any work (teacher load, data scan): every field's type and bounds, then the rules between fields and the machine (the
crop covers the student CNN's receptive field, the device exists, the teacher and data paths exist)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from distill.io.audio import SAMPLE_RATE
from distill.io.configuration import ConfigError, above, at_least, between, check_fields, from_dict, one_of
from distill.io.run_folder import blocking_file
from distill.models import GenDistillerConfig, StudentConfig, student_config_from_dict
from distill.nn.chunking import FrameGrid
from distill.training.runs import read_config

HISTORY_MODES = ("teacher_forcing", "free_running", "scheduled")


@dataclass
class TrainingConfig:
    """How GenDistiller's steps are fed during training (inference is always free running)."""

    history: str = "scheduled"  # a step's history: teacher_forcing, free_running, or scheduled (a draw per step)
    # Whether a step's own prediction, when it is the next step's history, passes gradients back to it (training the
    # chain end to end); false detaches it: each step is trained for its own target alone, and the later steps still
    # learn on the predictions they will get.
    history_gradient: bool = True
    # scheduled: probability of the teacher's layer as history at step 0, decaying linearly to `end` at the last step
    teacher_forcing_start: float = field(default=1.0, metadata=between(0, 1))
    teacher_forcing_end: float = field(default=0.0, metadata=between(0, 1))

    def __post_init__(self) -> None:
        if self.history not in HISTORY_MODES:
            raise ValueError(f"training.history must be one of {HISTORY_MODES}, got {self.history!r}")


@dataclass
class DataConfig:
    train: str = ""  # directory of .flac/.wav (recursive) or fairseq .tsv manifest
    # random crop length (DistilHuBERT: 250,000 samples); at least the student CNN's receptive field (check_config)
    crop_samples: int = field(default=250_000, metadata=at_least(1))
    batch_size: int = field(default=24, metadata=at_least(1))  # global batch, split across processes
    num_workers: int = field(default=2, metadata=between(0, 64))  # data-loading worker processes per training process
    bucket_batches: int = field(default=50, metadata=at_least(1))  # batches per length-sorted bucket


@dataclass
class OptimConfig:
    lr: float = field(default=2e-4, metadata=between(0, 1, low_open=True))  # peak learning rate (AdamW)
    total_steps: int = field(default=200_000, metadata=at_least(1))
    warmup_fraction: float = field(default=0.07, metadata=between(0, 1))  # linear warm-up, then linear decay to 0
    weight_decay: float = field(default=0.0, metadata=at_least(0))
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata=between(0, 1, high_open=True, length=2))
    clip_norm: float = field(default=5.0, metadata=above(0))  # gradient clipping (max global norm)
    cosine_weight: float = field(default=1.0, metadata=at_least(0))  # λ of the cosine term
    # Weights of the first target layers' losses, in student.target_layers order; the target layers after them (and
    # the layer-0 term) weigh 1. The shipped GenDistiller configs weigh the first target, the base of the chain whose
    # error every later step carries, twice: [2.0].
    layer_weights: list[float] = field(default_factory=list, metadata=at_least(0))
    # Also distil h0 (the front-end output) against the teacher's layer 0, with the same loss form: for a front-end
    # trained from scratch (student.front_end_channels).
    layer0_loss: bool = False


@dataclass
class RunConfig:
    output_dir: str = "runs/distill"  # checkpoints/, tensorboard/, metrics.jsonl go here (one run at a time)
    seed: int = field(default=0, metadata=between(0, 2**32 - 2))  # numpy seeds are below 2**32; seed + 1 is drawn
    device: str = "auto"  # auto: cuda if available, else cpu; or cpu, cuda, cuda:N
    # auto: bf16 autocast on CUDA, fp32 on CPU; or "bf16" / "fp32"
    precision: str = field(default="auto", metadata=one_of("auto", "bf16", "fp32"))
    log_every: int = field(default=10, metadata=at_least(1))
    checkpoint_every: int = field(default=1000, metadata=at_least(1))
    keep_checkpoints: int = field(default=3, metadata=at_least(1))  # newest step checkpoints kept (older ones removed)
    progress: bool = True  # tqdm progress bar
    # Steps in a row whose loss or gradient norm is NaN or infinite (such steps are not applied) before the run stops
    # with an error naming their files; the last checkpoint, written before them, stays `latest`.
    max_nonfinite_steps: int = field(default=3, metadata=at_least(1))


@dataclass
class DistillConfig:
    teacher: str = ""  # teacher spec, see distill.teachers.load_teacher
    student: StudentConfig = field(default_factory=GenDistillerConfig)  # resolved for the teacher when training starts
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        weights = self.optim.layer_weights
        if len(weights) > len(self.student.target_layers) or min(weights, default=0) < 0:
            raise ValueError(f"optim.layer_weights must give weights >= 0 for at most the "
                             f"{len(self.student.target_layers)} target layers, got {weights}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "student": self.student.to_dict()}


_SECTIONS = {"training": TrainingConfig, "data": DataConfig, "optim": OptimConfig, "run": RunConfig}
# Keys that left the student section: where each one is now.
_MOVED = {"student.history": "training.history", "student.history_gradient": "training.history_gradient",
          "student.teacher_forcing_start": "training.teacher_forcing_start",
          "student.teacher_forcing_end": "training.teacher_forcing_end", "student.layer0_loss": "optim.layer0_loss"}


def config_from_dict(raw: dict[str, Any]) -> DistillConfig:
    unknown = sorted(set(raw) - {"teacher", "student", *_SECTIONS})
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; "
                         f"top-level keys are teacher, student, {', '.join(_SECTIONS)}")
    teacher = raw.get("teacher", "")
    if not isinstance(teacher, str):
        raise ValueError(f"config key teacher: expected a string spec, got {teacher!r}")
    student = raw.get("student") or {}
    moved = [f"{old} moved to {new}" for old, new in _MOVED.items()
             if isinstance(student, dict) and old.partition(".")[2] in student]
    if moved:
        raise ValueError("; ".join(moved))
    sections = {name: from_dict(cls, raw.get(name) or {}, name) for name, cls in _SECTIONS.items()}
    return DistillConfig(teacher=teacher, student=student_config_from_dict(student), **sections)


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> DistillConfig:
    return config_from_dict(read_config(name_or_path, overrides))


# ---- the whole config, before any work ---------------------------------------------------------------------

def check_config(config: DistillConfig, teacher_given: bool = False) -> None:
    """Raises ConfigError naming the first key that cannot work; `teacher_given`: a teacher is passed in Python, so
    `teacher` need name none."""
    for name in ("student", "training", "data", "optim", "run"):
        check_fields(getattr(config, name), name)
    if not teacher_given:
        check_teacher_spec(config.teacher)
    check_data(config.data, config.student.front_end_conv_layers())
    check_run(config.run)


# Spec prefixes whose rest is not a path (distill.teachers.formats: s3prl hub names, Python modules).
_NOT_PATHS = ("s3prl", "module")


def check_teacher_spec(spec: str) -> None:
    """A teacher is named, and a teacher named by a path exists."""
    if not spec:
        raise ConfigError("teacher", "no teacher given; pass teacher=SPEC (a checkpoint, a HuggingFace folder, "
                                     "whisper:PATH, s3prl:NAME, module:package.module:factory)")
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in _NOT_PATHS:
        return
    if not Path(spec).exists() and not (sep and Path(rest).exists()):
        raise ConfigError("teacher", f"{spec} not found; pass teacher=SPEC (the tiny configs name the demo's teacher, "
                                     "which only `gendistiller demo` writes)")


def check_data(data: DataConfig, conv_layers: Sequence[tuple[int, int, int]]) -> None:
    """Training data is named and exists, and a crop gives the CNN at least one frame."""
    if not data.train:
        raise ConfigError("data.train", "no training data given; pass data.train=DIR (or a .tsv manifest)")
    if not Path(data.train).exists():
        raise ConfigError("data.train", f"{data.train} not found (expected a directory of .flac/.wav or a .tsv "
                                        "manifest)")
    field_of_view = FrameGrid.of(conv_layers).receptive_field
    if data.crop_samples < field_of_view:
        raise ConfigError("data.crop_samples", f"must be at least the CNN's receptive field, {field_of_view} samples "
                                               f"({1000 * field_of_view / SAMPLE_RATE:g} ms at 16 kHz), got "
                                               f"{data.crop_samples}")


_DEVICE = re.compile(r"^(auto|cpu|cuda)(:(\d+))?$")


def check_run(run: RunConfig) -> None:
    """The output folder can be a folder, and the device exists on this machine."""
    if not run.output_dir:
        raise ConfigError("run.output_dir", "no output folder given")
    blocking = blocking_file(run.output_dir)
    if blocking is not None:
        raise ConfigError("run.output_dir", f"{blocking} is a file; give a folder")
    match = _DEVICE.match(run.device)
    if match is None or (match.group(1) != "cuda" and match.group(2)):
        raise ConfigError("run.device", f"must be auto, cpu, cuda or cuda:N, got {run.device!r}")
    if match.group(1) == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(match.group(3) or 0)
        if index >= count:
            found = f"{count} CUDA device(s)" if count else "no CUDA device (or a PyTorch built without CUDA)"
            raise ConfigError("run.device", f"{run.device} requested, but this machine has {found}; use "
                                            "run.device=cpu or auto")

"""The distillation config: a YAML file of sections (teacher, student, training, data, optim, run) with
`section.key=value` overrides. Each section is a dataclass with a comment per field; unknown keys are rejected, and
keys that moved name their new place."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from distill.io.configuration import from_dict
from distill.models import GenDistillerConfig, StudentConfig, student_config_from_dict
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
    teacher_forcing_start: float = 1.0  # scheduled: probability of the teacher's layer as history at step 0 ...
    teacher_forcing_end: float = 0.0  # ... decaying linearly to this at the last training step

    def __post_init__(self) -> None:
        if self.history not in HISTORY_MODES:
            raise ValueError(f"training.history must be one of {HISTORY_MODES}, got {self.history!r}")


@dataclass
class DataConfig:
    train: str = ""  # directory of .flac/.wav (recursive) or fairseq .tsv manifest
    crop_samples: int = 250_000  # random crop length (DistilHuBERT: 250,000 samples)
    batch_size: int = 24  # global batch, split across processes
    num_workers: int = 2  # data-loading worker processes per training process
    bucket_batches: int = 50  # batches per length-sorted bucket


@dataclass
class OptimConfig:
    lr: float = 2e-4  # peak learning rate (AdamW)
    total_steps: int = 200_000
    warmup_fraction: float = 0.07  # linear warm-up, then linear decay to 0
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    clip_norm: float = 5.0  # gradient clipping (max global norm)
    cosine_weight: float = 1.0  # λ of the cosine term
    # Weights of the first target layers' losses, in student.target_layers order; the target layers after them (and
    # the layer-0 term) weigh 1. The shipped GenDistiller configs weigh the first target, the base of the chain whose
    # error every later step carries, twice: [2.0].
    layer_weights: list[float] = field(default_factory=list)
    # Also distil h0 (the front-end output) against the teacher's layer 0, with the same loss form: for a front-end
    # trained from scratch (student.front_end_channels).
    layer0_loss: bool = False


@dataclass
class RunConfig:
    output_dir: str = "runs/distill"  # checkpoints/, tensorboard/, metrics.jsonl go here
    seed: int = 0
    device: str = "auto"  # auto: cuda if available, else cpu
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or "bf16" / "fp32"
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # newest step checkpoints kept (older ones are removed)
    progress: bool = True  # tqdm progress bar


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

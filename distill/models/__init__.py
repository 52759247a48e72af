"""Students: `build_student(config)` and the named configurations we ship."""
from __future__ import annotations

from typing import Any, Optional

from distill.models.resolve import TeacherFacts, resolve_student
from distill.models.student_config import (
    DistilHuBERTConfig,
    GenDistillerConfig,
    StudentConfig,
    student_config,
    student_config_from_dict,
)
from distill.models.students import DistilHuBERT, GenDistiller, Student, StudentOutput
from distill.nn.ssl_encoder import SSLModelConfig

__all__ = ["build_student", "resolve_student", "TeacherFacts", "StudentConfig", "GenDistillerConfig",
           "DistilHuBERTConfig", "student_config", "student_config_from_dict", "Student", "StudentOutput",
           "GenDistiller", "DistilHuBERT", "gendistiller_base_config", "distilhubert_base_config"]

_KINDS: dict[str, type[Student]] = {"gendistiller": GenDistiller, "distilhubert": DistilHuBERT}


def build_student(config: StudentConfig, teacher: Optional[TeacherFacts] = None) -> Student:
    """The student of `config`, resolved first if it still needs it: for `teacher`, or without one for the teacher its
    geometry implies (`resolve_student`). The built student's `config` is the resolved one."""
    if teacher is not None or config.unresolved():
        config = resolve_student(config, teacher)
    return _KINDS[config.kind](config)


def _base_geometry() -> dict[str, Any]:
    """WavLM/HuBERT Base front-end and layer geometry (768 wide, FFN 3072, 12 heads)."""
    return SSLModelConfig(family="hubert").to_dict()


def gendistiller_base_config(**overrides: Any) -> GenDistillerConfig:
    """The default GenDistiller for a 768-wide, 12-layer teacher: one shared generator layer, layers 4-8-12."""
    return GenDistillerConfig(geometry=_base_geometry(), **overrides)


def distilhubert_base_config(**overrides: Any) -> DistilHuBERTConfig:
    """DistilHuBERT as in s3prl: 2 layers from the teacher's first two, heads for layers 4-8-12."""
    return DistilHuBERTConfig(geometry=_base_geometry(), **overrides)

"""Students: `build_student(config)` and the named configurations we ship."""
from __future__ import annotations

from typing import Any

from distill.models.config import StudentConfig
from distill.models.students import DistilHuBERT, GenDistiller, Student, StudentOutput
from distill.nn.ssl_encoder import SSLModelConfig

__all__ = ["build_student", "StudentConfig", "Student", "StudentOutput", "GenDistiller", "DistilHuBERT",
           "gendistiller_base_config", "distilhubert_base_config"]

_KINDS: dict[str, type[Student]] = {"gendistiller": GenDistiller, "distilhubert": DistilHuBERT}


def build_student(config: StudentConfig) -> Student:
    return _KINDS[config.kind](config)


def _base_geometry() -> dict[str, Any]:
    """WavLM/HuBERT Base front-end and layer geometry (768 wide, FFN 3072, 12 heads)."""
    return SSLModelConfig(family="hubert").to_dict()


def gendistiller_base_config(**overrides: Any) -> StudentConfig:
    """The default GenDistiller for a 768-wide, 12-layer teacher: one shared generator layer, layers 4-8-12."""
    return StudentConfig(kind="gendistiller", geometry=_base_geometry(), **overrides)


def distilhubert_base_config(**overrides: Any) -> StudentConfig:
    """DistilHuBERT as in s3prl: 2 layers from the teacher's first two, heads for layers 4-8-12."""
    return StudentConfig(kind="distilhubert", geometry=_base_geometry(), **overrides)

"""Student configs: the dataclass defaults are the shipped students, `auto` is resolved once and only by the
resolver, keys are checked per student kind, and keys that moved out of the student section say where to."""
from dataclasses import replace

import pytest
import torch
import yaml

from distill.models import (
    DistilHuBERT,
    DistilHuBERTConfig,
    GenDistiller,
    GenDistillerConfig,
    TeacherFacts,
    build_student,
    resolve_student,
    student_config_from_dict,
)
from distill.training.config import load_config
from distill.training.runs import resolve_config_path


def _shape(config):
    with torch.device("meta"):
        student = build_student(config)
    return sum(p.numel() for p in student.parameters()), sorted(student.state_dict())


@pytest.mark.parametrize("cls, shipped", [(GenDistillerConfig, "gendistiller_wavlm_base_plus"),
                                          (DistilHuBERTConfig, "distilhubert_wavlm_base_plus")])
def test_dataclass_defaults_are_the_shipped_student(cls, shipped):
    section = yaml.safe_load(resolve_config_path(shipped).read_text())["student"]
    from_yaml = student_config_from_dict(section)
    assert type(from_yaml) is cls
    assert from_yaml == cls(target_layers=from_yaml.target_layers)  # the YAML sets only what the defaults say
    assert _shape(cls()) == _shape(from_yaml)
    assert load_config(shipped).student == from_yaml


def test_resolving_gives_concrete_values_and_a_new_config():
    config = GenDistillerConfig(front_end_channels=64, cnn_grad_mult=1.0, init_from_teacher=False)
    pre_ln = TeacherFacts("pre-ln", dim=768, num_layers=24, layers_end_in_layer_norm=False, downsample_rate=320)
    resolved = resolve_student(config, pre_ln)
    assert config.unresolved() == ["feature_layer_norm", "target_standardization", "output_norm", "step_ffn_dims",
                                   "output_projection_groups"]
    assert resolved is not config and not resolved.unresolved()
    assert (resolved.target_standardization, resolved.output_norm, resolved.feature_layer_norm) == (True, False, False)
    assert resolved.step_ffn_dims == [576, 576, 0] and resolved.output_projection_groups == [0, 1, 1]
    assert resolve_student(resolved, pre_ln) == resolved  # resolving twice changes nothing
    baseline = DistilHuBERTConfig(target_standardization="auto", feature_layer_norm="auto", init_from_teacher=False)
    assert resolve_student(baseline, pre_ln).feature_layer_norm is False  # s3prl's distiller, whatever the teacher


def test_a_checkpoint_teachers_geometry_replaces_the_students():
    geometry = {**GenDistillerConfig().geometry, "dim": 64, "ffn_dim": 128, "num_heads": 4, "num_layers": 4,
                "relative_position": True, "gated_relative_position": True}
    teacher = TeacherFacts("wavlm:t.pt", dim=64, num_layers=4, layers_end_in_layer_norm=True, downsample_rate=320,
                           geometry=geometry)
    resolved = resolve_student(GenDistillerConfig(target_layers=[2, 3, 4]), teacher)
    assert resolved.geometry == {**geometry, "relative_position": False, "gated_relative_position": False}
    with pytest.raises(ValueError, match="needs a checkpoint teacher"):
        resolve_student(GenDistillerConfig(), replace(teacher, geometry=None))


def test_models_take_resolved_configs_only():
    for model, config in ((GenDistiller, GenDistillerConfig()),
                          (DistilHuBERT, DistilHuBERTConfig(target_standardization="auto"))):
        with pytest.raises(ValueError, match="needs a resolved config"):
            model(config)
        assert not build_student(config).config.unresolved()


def test_keys_are_checked_for_the_students_kind():
    with pytest.raises(ValueError, match="unknown config key.*student.encoder_layers"):
        load_config("tiny_gendistiller", ["student.encoder_layers=3"])
    with pytest.raises(ValueError, match="unknown config key.*student.output_norm"):
        load_config("tiny_distilhubert", ["student.output_norm=false"])
    with pytest.raises(TypeError, match="GenDistillerConfig or a DistilHuBERTConfig"):
        from distill.models import StudentConfig

        StudentConfig()


@pytest.mark.parametrize("override, message", [
    ("student.history=free_running", "student.history moved to training.history"),
    ("student.history_gradient=false", "student.history_gradient moved to training.history_gradient"),
    ("student.teacher_forcing_end=0.5", "student.teacher_forcing_end moved to training.teacher_forcing_end"),
    ("student.layer0_loss=true", "student.layer0_loss moved to optim.layer0_loss"),
])
def test_moved_keys_name_their_new_place(override, message):
    with pytest.raises(ValueError, match=message) as error:
        load_config("tiny_gendistiller", [override])
    assert len(str(error.value).splitlines()) == 1
    with pytest.raises(ValueError, match="training.history must be one of"):
        load_config("tiny_gendistiller", ["training.history=sometimes"])

"""Checkpoints written before the per-kind student configs (tests/fixtures/legacy_checkpoints/README.md) load,
reproduce their hidden states, and resume with the training settings they were written with."""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from distill.models import DistilHuBERTConfig, GenDistillerConfig
from distill.models.student_checkpoint import load_student, read_student_checkpoint
from distill.teachers.tiny import TINY_WAVLM_CFG, write_wavlm_checkpoint
from distill.training.trainer import load_config, train
from tests.conftest import random_waveforms, write_tone_corpus

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "legacy_checkpoints"
NAMES = ("gendistiller", "gendistiller_pre_ln", "distilhubert")
# The teachers the fixtures were distilled from (with layer_norm_first for gendistiller_pre_ln).
LEGACY_TEACHER_CFG = {**TINY_WAVLM_CFG, "conv_feature_layers": "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
                      "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64, "encoder_attention_heads": 2, "conv_pos": 8,
                      "conv_pos_groups": 2, "num_buckets": 16, "max_distance": 32}


@pytest.fixture(scope="module")
def stored_outputs():
    return torch.load(FIXTURES / "outputs.pt", weights_only=False)


@pytest.mark.parametrize("name", NAMES)
def test_legacy_checkpoint_reproduces_its_hidden_states(name, stored_outputs):
    """Every hidden state within 1e-6 of what the code that wrote the checkpoint computed (one thread, as here)."""
    student, _ = load_student(FIXTURES / f"{name}.pt")
    expected = stored_outputs["outputs"][name]
    out = student.infer(random_waveforms(stored_outputs["lengths"], seed=stored_outputs["seed"]), chunking=None)
    assert torch.equal(out.lengths, expected["lengths"])
    assert len(out.hidden_states) == len(expected["hidden_states"])
    for index, (mine, theirs) in enumerate(zip(out.hidden_states, expected["hidden_states"])):
        assert mine.shape == theirs.shape, index
        assert (mine - theirs).abs().max().item() <= 1e-6, index


def test_legacy_configs_convert_to_the_current_layout():
    configs = {name: read_student_checkpoint(FIXTURES / f"{name}.pt")["config"] for name in NAMES}
    schedule = {"history": "scheduled", "history_gradient": True, "teacher_forcing_start": 1.0,
                "teacher_forcing_end": 0.0}
    for name, config in configs.items():
        assert config["training"] == schedule, name
        assert config["optim"]["layer0_loss"] is (name == "gendistiller_pre_ln"), name
    assert "encoder_layers" not in configs["gendistiller"]["student"]
    assert not {"output_norm", "history", "layer0_loss"} & set(configs["distilhubert"]["student"])
    pre_ln, _ = load_student(FIXTURES / "gendistiller_pre_ln.pt")
    assert isinstance(pre_ln.config, GenDistillerConfig) and not pre_ln.config.unresolved()
    assert (pre_ln.config.output_projection_groups, pre_ln.config.step_ffn_dims) == ([0, 1, 1], [24, 24, 0])
    assert pre_ln.config.target_standardization is True and pre_ln.config.output_norm is False
    assert isinstance(load_student(FIXTURES / "distilhubert.pt")[0].config, DistilHuBERTConfig)


def test_legacy_checkpoint_resumes_with_its_training_settings(tmp_path):
    """--resume from a legacy checkpoint: the schedule and the layer-0 term come from it, whatever the config given
    says (here tiny_gendistiller, without the layer-0 term); the config names the checkpoint's student (a narrowed
    front-end trained from scratch), which --resume requires."""
    teacher = write_wavlm_checkpoint(tmp_path / "teacher.pt", {**LEGACY_TEACHER_CFG, "layer_norm_first": True})
    corpus = write_tone_corpus(tmp_path / "corpus", num_files=4)
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(FIXTURES / "gendistiller_pre_ln.pt", out / "checkpoints" / "step_00000003.pt")
    config = load_config("tiny_gendistiller", [f"teacher={teacher}", f"data.train={corpus}", f"run.output_dir={out}",
                                               "optim.total_steps=4", "run.progress=false", "run.log_every=1",
                                               "student.front_end_channels=8", "student.cnn_grad_mult=1.0"])
    last = train(config, resume=True)
    resumed = read_student_checkpoint(last)
    assert resumed["step"] == 4
    assert resumed["config"]["optim"]["layer0_loss"] is True and resumed["config"]["student"]["front_end_channels"] == 8
    assert resumed["config"]["training"]["history"] == "scheduled"
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 4 and "loss_layer_0" in record
    resumed_student, legacy = load_student(last)[0].config, load_student(FIXTURES / "gendistiller_pre_ln.pt")[0].config
    assert resumed_student == replace(legacy, generator_states=True)  # the exposed states follow the config given


def test_training_is_bit_identical_to_the_code_before_the_regrouping(tmp_path):
    """8 free-running steps of a pre-LN teacher's GenDistiller (narrowed front-end, step blocks, layer-0 term, one
    thread): every weight equals the reference that the code before the regrouping wrote (fixtures README). The sums
    autograd makes of a prediction's two gradients (its loss, the next step's history) follow the order of the forward,
    which this checks too."""
    corpus = write_tone_corpus(tmp_path / "corpus", num_files=4)
    teacher = write_wavlm_checkpoint(tmp_path / "teacher.pt", {**LEGACY_TEACHER_CFG, "layer_norm_first": True})
    config = load_config("tiny_gendistiller", [
        f"teacher={teacher}", f"data.train={corpus}", f"run.output_dir={tmp_path / 'run'}", "optim.total_steps=8",
        "run.progress=false", "training.history=free_running", "optim.layer0_loss=true",
        "student.front_end_channels=8", "student.cnn_grad_mult=1.0", "student.step_ffn_dims=[24, 24, 0]"])
    torch.manual_seed(0)
    trained = read_student_checkpoint(train(config))["student"]
    reference = torch.load(FIXTURES / "trained_free_running.pt")
    assert list(trained) == list(reference)
    assert [name for name in reference if not torch.equal(trained[name], reference[name])] == []

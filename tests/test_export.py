"""Export of the baseline to s3prl's distiller format, checked with s3prl's own `distiller_local` upstream."""

import pytest
import torch

s3prl_hub = pytest.importorskip("s3prl.hub")

import gendistiller_upstream
from distill.cli import main
from distill.deploy.s3prl_distiller import ExportError, conv_layers_spec, distiller_rules, export_s3prl_distiller
from distill.io.checkpoint_files import CheckpointError
from distill.io.weight_names import map_state_dict
from distill.nn.components import DEFAULT_CONV_LAYERS, parse_conv_layers
from tests.conftest import random_waveforms
from tests.test_upstream import LENGTHS, TOLERANCE


def test_exported_baseline_matches_s3prl_distiller(distilhubert_ckpt, tmp_path):
    from s3prl.upstream.distiller.model import DistillerConfig

    exported = export_s3prl_distiller(distilhubert_ckpt, tmp_path / "distilhubert.ckpt")
    gendistiller_upstream.register()
    ours = s3prl_hub.gendistiller_local(ckpt=str(distilhubert_ckpt)).eval()
    theirs = s3prl_hub.distiller_local(ckpt=str(exported)).eval()  # strict load_state_dict inside s3prl

    student = ours.model.config
    config = DistillerConfig(torch.load(exported, weights_only=False)["Config"]["distiller"])
    assert config.pred_layer_id == student.target_layers
    assert config.encoder_layers == student.encoder_layers
    assert parse_conv_layers(config.extractor_conv_feature_layers) == student.geometry_config().conv_layers

    # One utterance at a time: s3prl's first CNN GroupNorm normalises over the padding of a batch.
    for wav in random_waveforms(LENGTHS, seed=3):
        with torch.no_grad():
            mine, reference = ours([wav]), theirs([wav])
        assert len(mine["hidden_states"]) == len(reference["hidden_states"])
        for layer, (a, b) in enumerate(zip(mine["hidden_states"], reference["hidden_states"])):
            assert a.shape == b.shape
            error = (a - b).abs().max().item()
            assert error < TOLERANCE, f"{len(wav)} samples, hidden state {layer}: max abs error {error}"
        assert (mine["paper"] - reference["paper"]).abs().max().item() < TOLERANCE


def test_gendistiller_student_does_not_export(gendistiller_ckpt, tmp_path):
    with pytest.raises(ExportError, match="only the DistilHuBERT baseline"):
        export_s3prl_distiller(gendistiller_ckpt, tmp_path / "out.ckpt")
    assert not (tmp_path / "out.ckpt").exists()


def test_export_command(distilhubert_ckpt, gendistiller_ckpt, tiny_wavlm_path, tmp_path, capsys):
    out = tmp_path / "exported" / "distilhubert.ckpt"
    assert main(["export", "--to", "s3prl-distiller", str(distilhubert_ckpt), str(out)]) == 0
    assert out.is_file() and "distiller_local" in capsys.readouterr().out
    assert main(["export", "--to", "s3prl-distiller", str(gendistiller_ckpt), str(tmp_path / "g.ckpt")]) == 2
    assert "only the DistilHuBERT baseline" in capsys.readouterr().err
    assert main(["export", "--to", "s3prl-distiller", str(tiny_wavlm_path), str(tmp_path / "t.ckpt")]) == 2
    assert "not a GenDistiller student checkpoint" in capsys.readouterr().err


def test_conv_layer_spec_is_fairseqs_form():
    spec = conv_layers_spec(DEFAULT_CONV_LAYERS)
    assert spec == "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    assert parse_conv_layers(spec) == DEFAULT_CONV_LAYERS


def test_rename_rules_fail_on_unknown_weights():
    with pytest.raises(CheckpointError, match="generator.0.0.fc1.weight"):
        map_state_dict({"generator.0.0.fc1.weight": torch.zeros(1)}, "export", distiller_rules("default"))
    with pytest.raises(ExportError, match="extractor mode"):
        distiller_rules("group_norm")

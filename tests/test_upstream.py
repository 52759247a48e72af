"""The s3prl upstream plugin against s3prl itself: hub registration, Featurizer, S3PRLUpstream, bad checkpoints."""
from pathlib import Path

import pytest
import torch

s3prl_hub = pytest.importorskip("s3prl.hub")

import gendistiller_upstream
from distill.io.checkpoint_files import CheckpointError
from gendistiller_upstream import hubconf
from gendistiller_upstream.expert import UpstreamExpert
from tests.conftest import random_waveforms

LENGTHS = (16000, 12345, 7003)  # three different lengths: a padded batch
TOLERANCE = 1e-5


@pytest.fixture
def registered():
    gendistiller_upstream.register()
    return s3prl_hub


def test_register_is_idempotent_and_visible_to_s3prl():
    assert gendistiller_upstream.register() == gendistiller_upstream.register() == list(gendistiller_upstream.ENTRIES)
    for name in gendistiller_upstream.ENTRIES:
        assert getattr(s3prl_hub, name) is getattr(hubconf, name)
        assert name in s3prl_hub.options()


def test_register_refuses_to_replace_another_upstream(monkeypatch):
    monkeypatch.setattr(s3prl_hub, "gendistiller_url", lambda ckpt, **kwargs: None, raising=False)
    with pytest.raises(RuntimeError, match="already has an upstream named 'gendistiller_url'"):
        gendistiller_upstream.register()


@pytest.mark.parametrize("kind", ["gendistiller", "distilhubert"])
def test_featurizer_over_padded_batch(registered, request, kind):
    from s3prl.upstream.interfaces import Featurizer

    ckpt = request.getfixturevalue(f"{kind}_ckpt")
    expert = registered.gendistiller_local(ckpt=str(ckpt)).eval()
    config = expert.model.config
    wavs = random_waveforms(LENGTHS)
    with torch.no_grad():
        out = expert(wavs)
    states = out["hidden_states"]
    per_target = 1 if kind == "distilhubert" else 2  # GenDistiller: each step's update, then its layer
    extra = config.encoder_layers if kind == "distilhubert" else 0
    assert len(states) == 1 + extra + per_target * len(config.target_layers)
    assert len({tuple(s.shape) for s in states}) == 1
    assert states[0].shape[0] == len(LENGTHS)
    assert out["last_hidden_state"] is states[-1]
    if kind == "distilhubert":
        assert out["paper"] is states[config.encoder_layers]  # s3prl's DistilHuBERT feature: the last layer
    else:
        assert "paper" not in out
    assert expert.get_downsample_rates("hidden_states") == 320

    # Each utterance of the padded batch gives what it gives alone.
    for i, wav in enumerate(wavs):
        with torch.no_grad():
            alone = expert([wav])["hidden_states"]
        frames = alone[0].shape[1]
        for layer, (batched, single) in enumerate(zip(states, alone)):
            error = (batched[i, :frames] - single[0]).abs().max().item()
            assert error < TOLERANCE, f"utterance {i} layer {layer}: {error}"
            if frames < batched.shape[1]:
                assert batched[i, frames:].abs().max().item() == 0.0  # padded frames are zeroed

    # s3prl's Featurizer: weighted sum over the layers, each utterance trimmed to round(samples / 320) frames
    # (at most the T frames there are: the CNN gives 49 frames for 16000 samples, and s3prl allows 5 less).
    featurizer = Featurizer(expert, upstream_device="cpu")
    assert featurizer.layer_num == len(states) and featurizer.downsample_rate == 320
    with torch.no_grad():
        features = featurizer(wavs, out)
    weights = torch.softmax(featurizer.weights, dim=0)
    weighted = sum(w * s for w, s in zip(weights, states))
    _, frames, dim = states[0].shape
    for wav, feature, row in zip(wavs, features, weighted):
        assert feature.shape == (min(round(len(wav) / 320), frames), dim)
        torch.testing.assert_close(feature, row[: feature.shape[0]])

    # -l N: one layer; -s last_hidden_state: the last one.
    with torch.no_grad():
        layer_one = Featurizer(expert, upstream_device="cpu", layer_selection=1)(wavs, out)
        last = Featurizer(expert, upstream_device="cpu", feature_selection="last_hidden_state")(wavs, out)
    torch.testing.assert_close(layer_one[0], states[1][0, : layer_one[0].shape[0]])
    torch.testing.assert_close(last[2], states[-1][2, : last[2].shape[0]])


def test_s3prl_upstream_wrapper(registered, gendistiller_ckpt):
    from s3prl.nn import S3PRLUpstream

    upstream = S3PRLUpstream("gendistiller_local", path_or_url=str(gendistiller_ckpt)).eval()
    wavs = random_waveforms(LENGTHS)
    padded = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    with torch.no_grad():
        all_hs, all_lens = upstream(padded, torch.tensor(LENGTHS))
    target_layers = upstream.upstream.model.config.target_layers
    assert upstream.num_layers == len(all_hs) == 1 + 2 * len(target_layers)  # h0, then each step's update and layer
    assert upstream.downsample_rates == [320] * upstream.num_layers
    for hs, lens in zip(all_hs, all_lens):
        assert hs.shape == (len(LENGTHS), int(lens.max()), upstream.hidden_sizes[0])


def test_hub_entries_take_paths_and_file_urls(registered, gendistiller_ckpt):
    by_url = registered.gendistiller_url(ckpt=Path(gendistiller_ckpt).resolve().as_uri())
    by_default = registered.gendistiller(ckpt=str(gendistiller_ckpt))
    assert isinstance(by_url, UpstreamExpert) and isinstance(by_default, UpstreamExpert)
    assert by_url.kind == by_default.kind == "gendistiller"
    with pytest.raises(ValueError, match="no published checkpoint"):
        registered.gendistiller()
    with pytest.raises(ValueError, match="model_config"):
        registered.gendistiller_local(ckpt=str(gendistiller_ckpt), model_config="upstream.yaml")
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        registered.gendistiller_url(ckpt="s3://bucket/student.pt")


def test_checkpoints_that_are_not_students_fail_clearly(registered, tiny_wavlm_path, tmp_path):
    with pytest.raises(CheckpointError, match="not a GenDistiller student checkpoint.*found a WavLM"):
        registered.gendistiller_local(ckpt=str(tiny_wavlm_path))
    s3prl_style = tmp_path / "distiller.ckpt"
    torch.save({"Distiller": {}, "Config": {"distiller": {}}}, s3prl_style)
    with pytest.raises(CheckpointError, match=r"found a dict with keys \['Config', 'Distiller'\]"):
        registered.gendistiller_local(ckpt=str(s3prl_style))
    a_list = tmp_path / "list.pt"
    torch.save([1, 2, 3], a_list)
    with pytest.raises(CheckpointError, match="expected a checkpoint dict, found a list"):
        registered.gendistiller_local(ckpt=str(a_list))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        registered.gendistiller_local(ckpt=str(junk))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        registered.gendistiller_local(ckpt=str(tmp_path / "missing.pt"))


def test_model_config_chooses_gendistillers_exposed_states(registered, gendistiller_ckpt, distilhubert_ckpt, tmp_path):
    """-g front_end_state (true or unnormalized) / states_in_teacher_units / generator_states replace the checkpoint's
    choice of exposed states (GenDistiller); a value the config does not know is refused."""
    options = tmp_path / "exposed.yaml"
    options.write_text("front_end_state: true\n")
    wavs = random_waveforms((16000, 9000))
    default = registered.gendistiller_local(ckpt=str(gendistiller_ckpt))(wavs)["hidden_states"]
    exposed = registered.gendistiller_local(ckpt=str(gendistiller_ckpt), model_config=str(options))(wavs)["hidden_states"]
    assert len(exposed) == len(default) + 1
    for ours, theirs in zip(exposed[1:], default):
        assert torch.equal(ours, theirs)
    options.write_text("front_end_state: unnormalized\n")
    unnormalized = registered.gendistiller_local(ckpt=str(gendistiller_ckpt), model_config=str(options))(wavs)["hidden_states"]
    assert len(unnormalized) == len(exposed) and all(torch.equal(a, b) for a, b in zip(unnormalized[1:], default))
    options.write_text("front_end_state: yes please\n")
    with pytest.raises(ValueError, match="front_end_state must be true, false or unnormalized"):
        registered.gendistiller_local(ckpt=str(gendistiller_ckpt), model_config=str(options))
    options.write_text("generator_states: false\n")  # the default exposes them: h0 and the generated layers alone
    plain = registered.gendistiller_local(ckpt=str(gendistiller_ckpt), model_config=str(options))(wavs)["hidden_states"]
    assert len(default) == 2 * len(plain) - 1 and all(torch.equal(a, b) for a, b in zip(default[::2], plain))
    with pytest.raises(ValueError, match="options of a GenDistiller student"):
        registered.gendistiller_local(ckpt=str(distilhubert_ckpt), model_config=str(options))

"""Teacher pretraining (`gendistiller pretrain-teacher`): it learns, its checkpoint is the official WavLM format that
s3prl's own `wavlm_local` reads, resume is exact, and bad input gets a one-line error."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from distill.cli import main as cli
from distill.teachers import load_teacher
from distill.training.pretrain import default_run_dir, load_config, pretrain, span_mask
from distill.training.runs import latest_checkpoint
from distill.training.units import UnitCodebook, mfcc_features
from tests.conftest import killed_after_first_checkpoint, random_waveforms, write_tone_corpus

# A smaller WavLM than the demo's, so a CPU test run takes seconds; the structure is the same (gated relative bias).
SMALL = ["model.conv_feature_layers='[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2'", "model.encoder_layers=2",
         "model.encoder_embed_dim=32", "model.encoder_ffn_embed_dim=64", "model.encoder_attention_heads=2",
         "model.conv_pos=8", "model.conv_pos_groups=2", "model.num_buckets=16", "model.max_distance=32",
         "units.num_clusters=12", "objective.final_dim=16", "data.crop_samples=16000", "data.batch_size=4",
         "data.bucket_batches=2", "run.progress=false", "run.log_every=5"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("pretrain_corpus") / "audio", num_files=12)


def config(corpus: Path, *overrides: str):
    return load_config("pretrain_tiny_wavlm", [*SMALL, f"data.train={corpus}", *overrides])


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "teacher.pt"
    pretrain(config(corpus, "optim.total_steps=400", "optim.lr=3e-3"), out)
    return out


def test_masked_unit_accuracy_rises_above_chance(pretrained):
    run_dir = default_run_dir(pretrained)
    chance = torch.load(run_dir / "units.pt", weights_only=True)["chance_accuracy"]
    logged = records(run_dir)
    first = np.mean([r["masked_accuracy"] for r in logged[:3]])
    last = np.mean([r["masked_accuracy"] for r in logged[-6:]])
    assert last > chance + 0.15 and last > 2 * chance, (first, last, chance)
    assert logged[-1]["loss"] < logged[0]["loss"] - 0.5


def test_checkpoint_is_official_wavlm_format_read_by_s3prl(pretrained):
    """s3prl's own expert loads it strictly (every WavLM key, nothing else) and agrees with `load_teacher` on each
    utterance alone; the untrained control loads the same way."""
    from s3prl.upstream.wavlm.expert import UpstreamExpert

    checkpoint = torch.load(pretrained, weights_only=True)  # plain tensors and a cfg dict, as s3prl loads it
    assert set(checkpoint) == {"cfg", "model"} and "mask_emb" in checkpoint["model"]
    for path in (pretrained, default_run_dir(pretrained) / "untrained_teacher.pt"):
        reference = UpstreamExpert(str(path)).eval()
        ours = load_teacher(str(path))
        for wav in random_waveforms([16000, 23456, 9001], seed=3):
            with torch.no_grad():
                expected = reference([wav])["hidden_states"]
            got = ours([wav]).hidden_states
            assert len(got) == len(expected) == 3
            for a, b in zip(got, expected):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_trained_weights_differ_from_the_control(pretrained):
    trained = torch.load(pretrained, weights_only=True)["model"]
    control = torch.load(default_run_dir(pretrained) / "untrained_teacher.pt", weights_only=True)["model"]
    assert trained.keys() == control.keys()
    assert not torch.equal(trained["encoder.layers.0.fc1.weight"], control["encoder.layers.0.fc1.weight"])


def test_resume_is_exact(tmp_path, corpus, monkeypatch):
    """Killed right after its step-4 checkpoint and resumed to 8: the same teacher as an uninterrupted 8-step run."""
    common = ["optim.total_steps=8", "run.checkpoint_every=4", "run.log_every=1"]
    straight = pretrain(config(corpus, *common), tmp_path / "straight.pt").teacher
    stopped = tmp_path / "resumed.pt"
    killed_after_first_checkpoint(monkeypatch, lambda: pretrain(config(corpus, *common), stopped))
    assert torch.load(latest_checkpoint(default_run_dir(stopped)), weights_only=False)["step"] == 4
    resumed = pretrain(config(corpus, *common), stopped, resume=True).teacher
    a, b = torch.load(straight, weights_only=True)["model"], torch.load(resumed, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["loss"] for r in records(default_run_dir(stopped))] == [r["loss"] for r in records(default_run_dir(straight))]
    with pytest.raises(ValueError, match=r"changes the run in .*model.encoder_layers: 3 \(checkpoint: 2\)"):
        pretrain(config(corpus, *common, "model.encoder_layers=3"), stopped, resume=True)
    with pytest.raises(ValueError, match=r"units.num_clusters: 8 \(checkpoint: 12\)"):
        pretrain(config(corpus, *common, "units.num_clusters=8"), stopped, resume=True)


def test_a_fresh_run_never_overwrites_an_earlier_one(pretrained, corpus):
    before = sorted(default_run_dir(pretrained).glob("checkpoints/step_*.pt"))
    with pytest.raises(ValueError, match="already holds the checkpoints of a run; resume it"):
        pretrain(config(corpus, "optim.total_steps=2"), pretrained)
    assert sorted(default_run_dir(pretrained).glob("checkpoints/step_*.pt")) == before


def test_units_match_the_model_frames_and_kmeans():
    """One unit per CNN frame (400-sample window, 320 hop), and `assign` = MiniBatchKMeans.predict."""
    from sklearn.cluster import MiniBatchKMeans

    wav = random_waveforms([20000], seed=1)[0]
    features = mfcc_features(wav, 400, 320)
    assert features.shape == (1 + (20000 - 400) // 320, 39)
    frames = torch.cat([mfcc_features(w, 400, 320) for w in random_waveforms([30000, 40000], seed=2)]).double()
    mean, std = frames.mean(0), frames.std(0)
    kmeans = MiniBatchKMeans(n_clusters=5, random_state=0, n_init=1).fit(((frames - mean) / std).numpy())
    codebook = UnitCodebook(mean, std, torch.from_numpy(kmeans.cluster_centers_), 400, 320, 0.0)
    expected = kmeans.predict(((features.double() - mean) / std).numpy())
    assert codebook.assign(wav).tolist() == expected.tolist()


def test_span_mask_covers_spans_within_valid_frames():
    lengths = torch.tensor([50, 20, 3])
    mask = span_mask(lengths, 50, 0.08, 10, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 50)
    for row, length in zip(mask, lengths.tolist()):
        assert row[:length].any() and not row[length:].any()


def _write(path: Path, samples: int, rate: int = 16000, channels: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = 0.1 * np.random.default_rng(0).standard_normal((samples, channels)).astype("float32")
    soundfile.write(path, data if channels > 1 else data[:, 0], rate)


@pytest.mark.parametrize("setup, message", [
    ("missing", "not found"),
    ("empty", "no .flac or .wav files"),
    ("8khz", "sample rate is 8000 Hz, expected 16000 Hz"),
    ("stereo", "2 channels, expected mono"),
    ("too_short", "fewer than the 12 clusters"),
])
def test_bad_input_is_a_one_line_error(tmp_path, capsys, setup, message):
    data = tmp_path / "data"
    if setup != "missing":
        data.mkdir()
    if setup in ("8khz", "stereo"):
        _write(data / "good.wav", 16000)
        _write(data / "bad.wav", 16000, rate=8000 if setup == "8khz" else 16000, channels=2 if setup == "stereo" else 1)
    if setup == "too_short":
        _write(data / "short.wav", 2000)  # 5 frames for 12 clusters
    code = cli(["pretrain-teacher", "--data", str(data), "--out", str(tmp_path / "t.pt"), *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err

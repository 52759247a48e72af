"""The distillation trainer: learning, exact resume, DDP equivalence, bad data and bad config handling."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from distill.models.student_checkpoint import load_student, read_student_checkpoint
from distill.training.loss import loss_floor
from distill.training.runs import latest_checkpoint
from distill.training.trainer import load_config, train
from tests.conftest import killed_after_first_checkpoint, write_tone_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tone_corpus(tmp_path_factory.mktemp("corpus") / "audio", num_files=16)


def tiny_config(kind, teacher, corpus, out, *overrides):
    return load_config(f"tiny_{kind}", [f"teacher={teacher}", f"data.train={corpus}", f"run.output_dir={out}",
                                        "run.progress=false", *overrides])


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["gendistiller", "distilhubert"])
def test_loss_drops_by_half(tmp_path, tiny_wavlm_path, corpus, kind):
    """From scratch (no teacher init) and free running, so the training loss is the inference loss: the loss
    above its floor (the cosine term's minimum, 0.313 per layer) at least halves."""
    out = tmp_path / kind
    last = train(tiny_config(kind, tiny_wavlm_path, corpus, out, "student.init_from_teacher=false",
                             "training.history=free_running", "optim.total_steps=300", "run.log_every=30"))
    records = metrics(out)
    floor = loss_floor(3)
    first = records[0]["loss"] - floor
    final = np.mean([r["loss"] for r in records[-3:]]) - floor
    assert records[0]["step"] == 1 and records[-1]["step"] == 300
    assert final <= 0.5 * first, f"excess loss {first:.3f} -> {final:.3f}"
    assert {"loss_layer_4", "l1_layer_4", "cos_layer_4", "lr", "audio_seconds_per_second"} <= set(records[-1])
    assert (out / "tensorboard").is_dir() and any((out / "tensorboard").iterdir())
    student, checkpoint = load_student(last)
    assert checkpoint["step"] == 300 and checkpoint["teacher"]["family"] == "wavlm"
    assert len(student.infer([torch.zeros(8000)]).predictions) == 3


def test_resume_is_exact(tmp_path, tiny_wavlm_path, corpus, monkeypatch):
    """A run killed right after its step-4 checkpoint, resumed to step 8, equals an uninterrupted 8-step run."""
    common = ["optim.total_steps=8", "run.checkpoint_every=4", "run.log_every=1", "student.dropout=0.1",
              "training.history=scheduled"]
    straight = train(tiny_config("gendistiller", tiny_wavlm_path, corpus, tmp_path / "straight", *common))
    resumed_out = tmp_path / "resumed"
    killed_after_first_checkpoint(monkeypatch, lambda: train(tiny_config("gendistiller", tiny_wavlm_path, corpus,
                                                                         resumed_out, *common)))
    assert read_student_checkpoint(latest_checkpoint(resumed_out))["step"] == 4
    resumed = train(tiny_config("gendistiller", tiny_wavlm_path, corpus, resumed_out, *common), resume=True)
    a, b = read_student_checkpoint(straight)["student"], read_student_checkpoint(resumed)["student"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert metrics(resumed_out) == [{**r, "audio_seconds_per_second": r2["audio_seconds_per_second"]}
                                    for r, r2 in zip(metrics(tmp_path / "straight"), metrics(resumed_out))]


def test_two_process_ddp_matches_single_process(tmp_path, tiny_wavlm_path, corpus):
    common = ["optim.total_steps=3", "training.history=scheduled", "data.num_workers=0"]
    single = train(tiny_config("gendistiller", tiny_wavlm_path, corpus, tmp_path / "single", *common))
    ddp_out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", "-m", "distill.cli",
               "distill", "--config", "tiny_gendistiller", f"teacher={tiny_wavlm_path}", f"data.train={corpus}",
               f"run.output_dir={ddp_out}", "run.progress=false", "run.device=cpu", *common]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=600)
    a, b = read_student_checkpoint(single)["student"], read_student_checkpoint(latest_checkpoint(ddp_out))["student"]
    # Adam's step is lr * g / (|g| + eps): a gradient near eps turns float rounding of the split batch into up to
    # ~1% of lr (measured 1.7e-5 at lr 3e-3); a wrong reduction moves every parameter by O(lr).
    lr = load_config("tiny_gendistiller").optim.lr
    for name in a:
        assert torch.allclose(a[name], b[name], atol=0.05 * lr, rtol=1e-4), name


def test_bad_audio_is_reported_and_skipped(tmp_path, tiny_wavlm_path, corpus, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for path in sorted(corpus.iterdir())[:8]:
        (data / path.name).write_bytes(path.read_bytes())
    soundfile.write(data / "stereo.wav", np.zeros((16000, 2), dtype="float32"), 16000)
    soundfile.write(data / "narrowband.wav", np.zeros(16000, dtype="float32"), 8000)
    soundfile.write(data / "empty.wav", np.zeros(0, dtype="float32"), 16000)
    (data / "corrupt.flac").write_bytes(b"fLaC but not really")
    train(tiny_config("gendistiller", tiny_wavlm_path, data, tmp_path / "out", "optim.total_steps=2"))
    log = capsys.readouterr().out
    assert "8 files, " in log and "4 files left out" in log
    for name, reason in [("stereo.wav", "2 channels"), ("narrowband.wav", "8000 Hz"), ("empty.wav", "empty"),
                         ("corrupt.flac", "cannot read")]:
        assert any(name in line and reason in line for line in log.splitlines()), (name, log)


def test_crash_while_writing_keeps_last_checkpoint(tmp_path, tiny_wavlm_path, corpus, monkeypatch):
    out = tmp_path / "out"
    train(tiny_config("gendistiller", tiny_wavlm_path, corpus, out, "optim.total_steps=2", "run.checkpoint_every=1"))
    good = latest_checkpoint(out)

    def torn_save(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        train(tiny_config("gendistiller", tiny_wavlm_path, corpus, out, "optim.total_steps=4", "run.checkpoint_every=1"),
              resume=True)
    monkeypatch.undo()
    assert latest_checkpoint(out) == good
    assert load_student(good)[1]["step"] == 2


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1.0", "optim.lrr"),
    ("optim.lr=fast", "optim.lr: expected float"),
    ("student.kind=rnn", "student.kind"),
    ("colour=blue", "unknown config key"),
    ("optim.layer_weights=[1.0, 2.0, 1.0, 1.0]", "optim.layer_weights"),
    ("optim.layer_weights=[-1.0]", "optim.layer_weights"),
])
def test_bad_config_is_rejected_with_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("tiny_gendistiller", [override])


def test_layer_weights_weigh_the_total_loss(tmp_path, tiny_wavlm_path, corpus):
    """optim.layer_weights: the loss trained on is Σ w_k·L_k, the target layers after the given weights weighing 1;
    the per-layer losses are logged unweighted."""
    train(tiny_config("gendistiller", tiny_wavlm_path, corpus, tmp_path, "optim.total_steps=1",
                      "optim.layer_weights=[0.5, 0.0]", "optim.layer0_loss=false"))
    record = metrics(tmp_path)[0]
    assert record["loss"] == pytest.approx(0.5 * record["loss_layer_2"] + record["loss_layer_4"], rel=1e-5)
    assert record["loss_layer_3"] > 0


def test_resume_without_checkpoint_fails_clearly(tmp_path, tiny_wavlm_path, corpus):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config("gendistiller", tiny_wavlm_path, corpus, tmp_path / "empty"), resume=True)


def test_target_statistics_are_measured_kept_and_resumed(tmp_path, tiny_wavlm_path, corpus, monkeypatch):
    """student.target_standardization: the statistics are each target layer's mean and std over the valid frames of
    the first batches of a draw of their own (recomputed here by hand), kept in the checkpoint, and a resumed run
    equals an uninterrupted one."""
    from distill.io.audio import read_audio
    from distill.teachers import load_teacher
    from distill.training.data import BucketBatchSampler, index_corpus
    from distill.training.trainer import TARGET_STATISTICS_BATCHES

    common = ["student.target_standardization=true", "optim.total_steps=6", "run.checkpoint_every=3", "run.log_every=1"]
    straight = train(tiny_config("gendistiller", tiny_wavlm_path, corpus, tmp_path / "straight", *common))
    student, checkpoint = load_student(straight)

    config = checkpoint["config"]
    items = index_corpus(corpus).items
    sampler = BucketBatchSampler(items, config["data"]["batch_size"], config["data"]["crop_samples"],
                                 config["run"]["seed"] + 1, bucket_batches=config["data"]["bucket_batches"])
    teacher = load_teacher(str(tiny_wavlm_path))
    frames = {layer: [] for layer in (2, 3, 4)}
    for batch in sampler.global_batches(0)[:TARGET_STATISTICS_BATCHES]:
        for index, offset in batch:
            wav = torch.from_numpy(read_audio(items[index].path)[offset: offset + config["data"]["crop_samples"]])
            states = teacher([wav]).hidden_states
            for layer in frames:
                frames[layer].append(states[layer][0])
    for step, layer in enumerate((2, 3, 4)):
        every = torch.cat(frames[layer]).double()
        assert torch.allclose(student.target_mean[step].double(), every.mean(0), atol=1e-4)
        assert torch.allclose(student.target_std[step].double(), every.std(0, unbiased=False), atol=1e-4)

    resumed_out = tmp_path / "resumed"
    killed_after_first_checkpoint(monkeypatch, lambda: train(tiny_config("gendistiller", tiny_wavlm_path, corpus,
                                                                         resumed_out, *common)))
    resumed = train(tiny_config("gendistiller", tiny_wavlm_path, corpus, resumed_out, *common), resume=True)
    for key, value in read_student_checkpoint(straight)["student"].items():
        assert torch.equal(value, read_student_checkpoint(resumed)["student"][key]), key

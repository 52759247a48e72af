"""Benchmarks: each script runs on CPU at a tiny size through its command line and writes well-formed results (no
timing assertions); the cheaper student front-end and the shared frozen CNN they measure behave as documented."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import distill.training.trainer
from distill.io.audio import pad_waveforms
from distill.models import GenDistillerConfig, student_config
from distill.teachers import load_teacher
from distill.training.trainer import DistillConfig, prepare_student, train_step
from tests.conftest import random_waveforms, write_tone_corpus

ROOT = Path(__file__).resolve().parents[1]


def run_module(module: str, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{module} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_train_throughput_cli(tmp_path):
    run_module("benchmarks.train_throughput", "--device", "cpu", "--geometry", "tiny", "--batch-size", "2", "--samples", "8000",
               "--steps", "1", "--repeats", "2", "--warmup", "1", "--threads", "1", "--profile", "--out", str(tmp_path))
    data = json.loads((tmp_path / "train_throughput.json").read_text())
    variants = data["variants"]
    assert set(variants) == {"s3prl-reference", "distilhubert", "gendistiller", "gendistiller-frozen-cnn", "gendistiller-narrow-fe"}
    for name, v in variants.items():
        assert finite(v["s_per_step_median"]) and v["s_per_step_median"] > 0, name
        assert len(v["s_per_step_rounds"]) == 2 and finite(v["speedup_vs_reference"]), name
        assert (tmp_path / f"profile_{name}.txt").is_file()
    # same student weights in s3prl's DistillerModel and ours: same parameter count, same fp32 loss on CPU
    assert variants["s3prl-reference"]["student_parameters"] == variants["distilhubert"]["student_parameters"]
    assert variants["gendistiller"]["student_parameters"] < 0.67 * variants["distilhubert"]["student_parameters"]
    assert variants["gendistiller-narrow-fe"]["student_parameters"] < variants["gendistiller"]["student_parameters"]
    checks = data["loss_checks"]
    assert checks["reference_vs_distilhubert"]["relative_difference"] < 1e-4
    assert max(checks["teacher_s3prl_vs_ours_fp32_max_rel_error"].values()) < 1e-4
    assert data["targets"]["speed_3x"].startswith("pending GPU")
    markdown = (tmp_path / "train_throughput.md").read_text()
    assert "| s3prl-reference |" in markdown and "| gendistiller |" in markdown


def test_inference_cli(tmp_path):
    run_module("benchmarks.inference", "--device", "cpu", "--geometry", "tiny", "--seconds", "1", "--repeats", "1",
               "--threads", "1", "--batch-sizes", "1", "2", "--narrow-channels", "16", "--out", str(tmp_path))
    data = json.loads((tmp_path / "inference_cpu.json").read_text())
    assert [(s["threads"], s["batch"]) for s in data["settings"]] == [(1, 1), (1, 2)]
    onnx = {f"onnx-{kind}-{q}" for kind in ("gendistiller", "distilhubert") for q in ("fp32", "int8", "int8-linear", "int8-cnn")}
    models = data["settings"][0]["models"]
    expected = {"gendistiller", "distilhubert", "gendistiller-narrow-fe-16", "wavlm-teacher", "s3prl-wavlm",
                "s3prl-distilhubert", "cnn-teacher", "cnn-narrow-16"} | onnx
    assert set(models) == expected
    assert set(data["settings"][1]["models"]) == {"gendistiller", "distilhubert", "s3prl-distilhubert"} | onnx
    for name, row in models.items():
        assert finite(row["latency_s_median"]) and row["latency_s_median"] > 0, name
        assert row["parameters"] > 0
    assert models["distilhubert"]["ratio_vs_distilhubert"] == 1.0
    assert models["onnx-gendistiller-int8"]["parameters"] == models["gendistiller"]["parameters"]
    assert models["cnn-narrow-16"]["parameters"] < models["cnn-teacher"]["parameters"]
    assert models["s3prl-wavlm"]["parameters"] - models["wavlm-teacher"]["parameters"] == 96  # + its mask embedding
    assert "not applicable" in data["targets"]["gendistiller_le_1.1x_baseline_cpu"]  # tiny geometry, 1 s
    assert "not applicable" in data["targets"]["onnx_int8_le_0.45x_pytorch_gendistiller_cpu"]
    assert "| onnx-gendistiller-int8 | 1 | 2 |" in (tmp_path / "inference_cpu.md").read_text()


def test_fidelity_cli(tmp_path, tiny_wavlm_path):
    train_dir = write_tone_corpus(tmp_path / "train", num_files=6, seed=1)
    heldout = write_tone_corpus(tmp_path / "heldout", num_files=4, seed=2)
    out = tmp_path / "out"
    run_module("benchmarks.fidelity", "--teacher", str(tiny_wavlm_path), "--train", str(train_dir), "--heldout", str(heldout),
               "--steps", "3", "--batch-size", "2", "--crop-samples", "16000", "--threads", "1", "--out", str(out),
               "--variants", "gendistiller", "distilhubert", "gendistiller-narrow-fe", "gendistiller-v0")
    data = json.loads((out / "fidelity.json").read_text())
    assert data["setup"]["target_layers"] == [2, 3, 4] and data["setup"]["heldout_files"] == 4
    assert set(data["variants"]) == {"gendistiller", "distilhubert", "gendistiller-narrow-fe", "gendistiller-v0"}
    from distill.models.student_checkpoint import read_student_checkpoint

    ablation = read_student_checkpoint(data["variants"]["gendistiller-v0"]["checkpoint"])["config"]["student"]
    assert ablation["output_projection_groups"] == [0, 0, 0] and ablation["output_norm"] is False
    for name, ev in data["variants"].items():
        assert set(ev["layers"]) == {"0", "2", "3", "4"}, name
        for layer, m in ev["layers"].items():
            assert finite(m["l1"]) and m["l1"] >= 0, (name, layer)
            assert finite(m["cosine"]) and -1.0 <= m["cosine"] <= 1.0, (name, layer)
            assert finite(m["probe_r2"]) and m["probe_r2"] <= 1.0, (name, layer)
            assert m["frames"] > 0
    assert set(data["copy_teacher_layer0"]["layers"]) == {"2", "3", "4"}  # the free baseline: teacher layer 0 copied
    diagnostics = data["diagnostics"]
    assert set(diagnostics["gendistiller"]) == {"heldout_free_running", "heldout_teacher_forced", "heldout_crops_free_running",
                                              "train_free_running"}
    assert diagnostics["gendistiller"]["heldout_free_running"]["2"] == {
        k: data["variants"]["gendistiller"]["layers"]["2"][k] for k in ("l1", "cosine", "frames")}
    # step 1 sees only the front-end, so teacher forcing changes nothing there
    assert diagnostics["gendistiller"]["heldout_teacher_forced"]["2"] == diagnostics["gendistiller"]["heldout_free_running"]["2"]
    claim = data["claim"]
    assert claim["parameter_ratio"] < 0.67 and claim["status"].split(":")[0] in ("met", "not met")
    png = out / "fidelity_loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    narrow_metrics = (out / "runs" / "gendistiller-narrow-fe" / "metrics.jsonl").read_text().splitlines()
    assert "loss_layer_0" in json.loads(narrow_metrics[-1])  # the narrow front-end is distilled against layer 0
    assert "| distilhubert |" in (out / "fidelity.md").read_text()


# ---- the options the benchmarks measure ---------------------------------------------------------------------

def student_for(teacher_path, layer0_loss=False, **student):
    teacher = load_teacher(str(teacher_path))
    config = DistillConfig(teacher=str(teacher_path))
    config.student = student_config(student.pop("kind", "gendistiller"), target_layers=[2, 3, 4], dropout=0.0, **student)
    config.optim.layer0_loss = layer0_loss
    torch.manual_seed(0)
    return config, teacher, prepare_student(config, teacher)


@pytest.mark.parametrize("kind", ["gendistiller", "distilhubert"])
def test_narrow_front_end_keeps_the_frames_and_starts_from_scratch(tiny_wavlm_path, kind):
    _, teacher, student = student_for(tiny_wavlm_path, kind=kind, front_end_channels=16, cnn_grad_mult=1.0)
    assert all(c == 16 for c, _, _ in student.feature_extractor.conv_layers_spec)
    assert [(k, s) for _, k, s in student.feature_extractor.conv_layers_spec] == \
        [(k, s) for _, k, s in teacher.model.config.conv_layers]
    assert torch.equal(student.encoder.pos_conv.conv.bias, teacher.model.encoder.pos_conv.conv.bias)  # still copied
    wavs = random_waveforms((16000, 9000, 4001), seed=3)
    out = student.eval().infer(wavs)
    assert torch.equal(out.lengths, teacher(wavs).lengths)
    assert out.layer0 is not None and out.layer0.shape == out.predictions[0].shape
    narrow = sum(p.numel() for p in student.feature_extractor.parameters())
    assert narrow < sum(p.numel() for p in teacher.model.feature_extractor.parameters()) / 10


def test_bad_front_end_config_is_rejected():
    with pytest.raises(ValueError, match="front_end_channels"):
        GenDistillerConfig(front_end_channels=-1)
    with pytest.raises(ValueError, match="cannot be frozen"):
        GenDistillerConfig(front_end_channels=32, cnn_grad_mult=0.0)


def _one_step(tiny_wavlm_path, **student):
    config, teacher, student_model = student_for(tiny_wavlm_path, **student)
    optimizer = torch.optim.AdamW([p for p in student_model.parameters() if p.requires_grad], lr=1e-3)
    waveforms, lengths = pad_waveforms(random_waveforms((16000, 12000), seed=8))
    result = train_step(student_model, student_model, teacher, optimizer, waveforms, lengths, config, [True, False, True], None)
    return result, student_model


def test_shared_frozen_cnn_step_equals_running_it_twice(tiny_wavlm_path, monkeypatch):
    """With a frozen CNN copied from the teacher, the step runs the CNN once; loss and update are unchanged."""
    shared, shared_student = _one_step(tiny_wavlm_path, cnn_grad_mult=0.0)
    monkeypatch.setattr(distill.training.trainer, "shares_teacher_cnn", lambda *args: False)
    separate, separate_student = _one_step(tiny_wavlm_path, cnn_grad_mult=0.0)
    assert torch.allclose(shared.losses.total, separate.losses.total, rtol=1e-6, atol=0)
    for (name, a), (_, b) in zip(shared_student.state_dict().items(), separate_student.state_dict().items()):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7), name


def test_layer0_loss_adds_a_term_for_the_front_end(tiny_wavlm_path):
    result, _ = _one_step(tiny_wavlm_path, front_end_channels=16, cnn_grad_mult=1.0, layer0_loss=True)
    assert result.layers == [0, 2, 3, 4] and len(result.losses.per_layer) == 4
    assert math.isfinite(result.losses.total.item())


def test_deploy_cli(tmp_path, gendistiller_ckpt, distilhubert_ckpt):
    audio = write_tone_corpus(tmp_path / "audio", num_files=3, seed=5)
    out = tmp_path / "out"
    run_module("benchmarks.deploy", "--checkpoints", f"gendistiller={gendistiller_ckpt}", f"distilhubert={distilhubert_ckpt}",
               "--heldout", str(audio), "--calibration", str(audio), "--max-files", "2", "--threads", "1", "--out", str(out))
    data = json.loads((out / "deploy.json").read_text())
    assert set(data["students"]) == {"gendistiller", "distilhubert"}
    for student in data["students"].values():
        assert max(student["fp32_max_abs_error"]) < 1e-4
        assert set(student["cosine_to_fp32"]) == set(student["cosine_to_fp32_p1"]) == {"int8", "int8-linear", "int8-cnn"}
        assert all(-1.0 <= c <= 1.0 for c in student["cosine_to_fp32"]["int8"] + student["cosine_to_fp32_p1"]["int8"])
    assert data["students"]["gendistiller"]["names"][0] == "h0"
    assert data["target"].split(":")[0] in ("met", "not met") and "| gendistiller | h0 |" in (out / "deploy.md").read_text()


def test_fidelity_cli_on_a_whisper_teacher(tmp_path):
    """A teacher that is not one of our encoders (a tiny random Whisper, HF folder): the students start from scratch at
    its width with narrow front-ends; the report gives the teacher's layer statistics and the every-layer verdict."""
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(num_mel_bins=80, d_model=64, encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=128,
                           decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=128, vocab_size=100,
                           max_source_positions=1500, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(0)
    WhisperModel(config).save_pretrained(tmp_path / "whisper")
    train_dir = write_tone_corpus(tmp_path / "train", num_files=6, seed=1)
    heldout = write_tone_corpus(tmp_path / "heldout", num_files=4, seed=2)
    out = tmp_path / "out"
    run_module("benchmarks.fidelity", "--teacher", f"whisper:{tmp_path / 'whisper'}", "--train", str(train_dir),
               "--heldout", str(heldout), "--from-scratch", "--narrow-front-ends", "--narrow-channels", "16",
               "--steps", "3", "--batch-size", "2", "--crop-samples", "16000", "--threads", "1", "--out", str(out),
               "--variants", "gendistiller", "distilhubert", "gendistiller-unstandardized")
    data = json.loads((out / "fidelity.json").read_text())
    from distill.models.student_checkpoint import read_student_checkpoint

    configs = {v: read_student_checkpoint(data["variants"][v]["checkpoint"])["config"] for v in data["variants"]}
    students = {v: config["student"] for v, config in configs.items()}
    for config in configs.values():
        student = config["student"]
        assert student["geometry"]["dim"] == 64 and student["front_end_channels"] == 16 and config["optim"]["layer0_loss"]
    assert students["gendistiller"]["target_standardization"] is True  # the shipped GenDistiller
    assert students["gendistiller-unstandardized"]["target_standardization"] is False
    assert students["distilhubert"]["target_standardization"] is False  # the baseline as s3prl trains it
    assert set(data["teacher_layers"]) == {"0", "2", "3", "4"}
    assert data["teacher_layers"]["0"]["cosine_to_previous_layer"] is None
    assert all(finite(m["norm_mean"]) and m["norm_mean"] > 0 for m in data["teacher_layers"].values())
    claim = data["claim"]
    assert claim["compared"] == ["gendistiller", "distilhubert"] and isinstance(claim["every_layer_l1_and_cosine"], bool)
    assert set(data["diagnostics"]) == {"gendistiller", "distilhubert"}
    assert "The teacher's layers on the held-out audio" in (out / "fidelity.md").read_text()


def test_real_teacher_downstream_runs_the_protocol_with_distilhubert_scored_both_ways(
        tmp_path, monkeypatch, gendistiller_ckpt, distilhubert_ckpt):
    """benchmarks/real_teacher.py's downstream stage is benchmarks/protocol.py's (the s3prl runs faked: the real ones
    need the fetched speech): every upstream a user would run, the learned weights of the weighted sum, scores over
    runs and every pair of upstreams on the same runs and test items."""
    import yaml

    from benchmarks import protocol, real_teacher
    from distill.superb.intervals import TEST_ITEMS
    from distill.superb.sweep import append_result

    seen, settings = [], []
    right_of = {"gendistiller": 90, "distilhubert": 50, "distilhubert-ws": 70}

    def fake_sweep_seeds(upstreams, tasks, lrs, results, expdir, seeds, **kwargs):
        seen.append([(u.label, u.s3prl_name, u.feature, u.model_config) for u in upstreams])
        settings.append((results.parent, kwargs["overrides"]))
        rows = []
        for seed in range(1337, 1337 + seeds):
            for upstream in upstreams:
                for task in tasks:
                    run = expdir / f"seed_{seed}" / upstream.label / task
                    (run / TEST_ITEMS).mkdir(parents=True)
                    right = right_of.get(upstream.label, 60) + seed - 1337  # of 100 items
                    separator, suffix = (",", "csv") if task == "ic" else (" ", "txt")
                    (run / TEST_ITEMS / f"test_truth.{suffix}").write_text(
                        "".join(f"u{i}{separator}a\n" for i in range(100)))
                    (run / TEST_ITEMS / f"test_predict.{suffix}").write_text(
                        "".join(f"u{i}{separator}{'a' if i < right else 'b'}\n" for i in range(100)))
                    torch.save({"Featurizer": {"weights": torch.tensor([0.0, 0.0, 2.0])}}, run / "dev-best.ckpt")
                    rows.append({"upstream": upstream.label, "task": task, "seed": str(seed), "test": right / 100,
                                 "lr": "0.01", "expdir": str(run)})
                    append_result(results, rows[-1])
        return rows

    monkeypatch.setattr(protocol, "sweep_seeds", fake_sweep_seeds)
    checkpoints = {"gendistiller": str(gendistiller_ckpt), "distilhubert": str(distilhubert_ckpt)}
    summary = real_teacher.downstream(checkpoints, tmp_path, tmp_path, 2, [0.01], 1)
    assert [(label, feature) for label, _, feature, _ in seen[0]] == [
        ("gendistiller", None), ("distilhubert", "paper"), ("distilhubert-ws", None)]
    scores = {(s["task"], s["upstream"]): s for s in summary["scores"]}
    assert scores["sid", "gendistiller"]["mean"] == pytest.approx(90.5) and scores["sid", "gendistiller"]["runs"] == 2
    assert scores["ic", "distilhubert"]["sd"] == pytest.approx(0.5 ** 0.5)
    assert scores["ic", "distilhubert-ws"]["weights"] == pytest.approx(torch.softmax(torch.tensor([0.0, 0.0, 2.0]), 0).tolist())
    pairs = {(p["task"], p["a"], p["b"]): p for p in summary["pairs"]}
    assert pairs["sid", "distilhubert", "gendistiller"]["difference"] == pytest.approx(-40)
    assert pairs["sid", "distilhubert", "gendistiller"]["better"] == "gendistiller"
    assert pairs["ic", "distilhubert-ws", "gendistiller"]["items"] == 200

    protocol.run({"0": {"gendistiller": str(gendistiller_ckpt)}}, tmp_path, ["sid"], [0.01], 1, tmp_path / "options",
                 {"gendistiller-std": {"states_in_teacher_units": False}})
    label, name, _, model_config = seen[1][-1]
    assert (label, name) == ("gendistiller-std", "gendistiller_local")
    assert yaml.safe_load(Path(model_config).read_text()) == {"states_in_teacher_units": False}
    protocol.run({"1": {"distilhubert": str(distilhubert_ckpt)}}, tmp_path, ["sid"], [0.01], 1, tmp_path / "options",
                 {"gendistiller-std": {"states_in_teacher_units": False}})
    assert [label for label, *_ in seen[2]] == ["distilhubert", "distilhubert-ws"]  # a seed without a GenDistiller
    ran = protocol.run({"1": {"distilhubert": str(distilhubert_ckpt)}}, tmp_path, ["sid"], [0.01], 1, tmp_path / "ws",
                       readouts=["distilhubert-ws"])
    assert [label for label, *_ in seen[3]] == ["distilhubert-ws"]
    assert settings[3] == (tmp_path / "ws" / "distill_seed_1", [
        "config.runner.total_steps=1000", "config.runner.eval_step=1000", "config.runner.save_step=1000",
        "config.runner.log_step=250"])
    protocol.run({"1": {"distilhubert": str(distilhubert_ckpt)}}, tmp_path, ["sid"], [0.01], 1, tmp_path / "ws",
                 readouts=["distilhubert-ws"], steps=4000)  # longer downstream runs beside, not mixed with, the others
    assert settings[4][0] == tmp_path / "ws" / "distill_seed_1_steps_4000"
    assert settings[4][1][:3] == [f"config.runner.{key}=4000" for key in ("total_steps", "eval_step", "save_step")]

    def no_runs(*args, **kwargs):
        raise AssertionError("--finished-only started s3prl runs")

    monkeypatch.setattr(protocol, "sweep_seeds", no_runs)  # a protocol cut short: what finished, reported as it is
    finished_only = ["--students", f"distilhubert@1={distilhubert_ckpt}", "--finished-only", "--out", str(tmp_path / "ws")]
    finished = protocol.main(["--corpus", str(tmp_path), "--tasks", "sid", *finished_only])
    assert finished == protocol.summarize(ran) and finished["scores"][0]["runs"] == 1
    with pytest.raises(SystemExit, match="no finished runs"):
        protocol.main(["--corpus", str(tmp_path), "--tasks", "ic", *finished_only])
    with pytest.raises(SystemExit, match=r"--options labels \['gendistiller-x'\] are also --students kinds"):
        protocol.main(["--corpus", str(tmp_path), "--students", f"gendistiller-x@0={distilhubert_ckpt}",
                       "--options", "gendistiller-x=front_end_state:true", "--out", str(tmp_path / "clash")])

    results = {"padding_gap": {"files": 1, "frames": 2, "layers": [{"layer": 0, "cosine": 1.0, "relative_l1": 0.0}]},
               "fidelity_markdown": "", "downstream": summary, "machine": {"cpu": "cpu", "date": "today"},
               "setup": {"speech": "speech", "seeds": 2, "lrs": [0.01]}}
    assert "| sid | distilhubert - gendistiller | -40.00 |" in real_teacher.render(results)


def write_probe_corpus(root: Path) -> Path:
    """The SID and content layouts `benchmarks/probes.py` reads: two voices (a low and a high tone) and two words."""
    import soundfile

    def tone(path: Path, hertz: float, seconds: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(16000 * seconds)) / 16000
        soundfile.write(path, (0.1 * np.sin(2 * np.pi * hertz * t)).astype("float32"), 16000)

    lines = []
    for speaker, hertz in (("id0", 120.0), ("id1", 900.0)):
        for take in range(6):
            name = f"{speaker}/v/{take:05d}.wav"
            tone(root / "voxceleb1" / "dev" / "wav" / name, hertz * (1 + 0.02 * take), 0.5 + 0.1 * take)
            lines.append(f"{1 if take < 4 else 3} {name}")
    (root / "voxceleb1" / "iden_split.txt").write_text("\n".join(lines) + "\n")
    (root / "fluent_commands" / "data").mkdir(parents=True)
    for split, takes in (("train", range(4)), ("test", range(4, 6))):
        rows = ["path,speakerId,transcription,action,object,location"]
        for word, hertz in (("one", 200.0), ("two", 2000.0)):
            for take in takes:
                path = f"wavs/{split}/{word}{take}.wav"
                tone(root / "fluent_commands" / path, hertz + 10 * take, 0.4 + 0.1 * take)
                rows.append(f"{path},s{take},{word},{word},none,none")
        (root / "fluent_commands" / "data" / f"{split}_data.csv").write_text("\n".join(rows) + "\n")
    return root


def test_probes_cli(tmp_path, tiny_wavlm_path, gendistiller_ckpt, distilhubert_ckpt):
    """Linear probes on every exposed state of the teacher and both students; two voices a low and a high tone apart
    are told apart from the states of all of them."""
    from benchmarks import probes

    corpus = write_probe_corpus(tmp_path / "corpus")
    voices = [{"name": f"es_{speaker}", "language": "es", "sid_speaker": speaker} for speaker in ("id0", "id1")]
    (corpus / "manifest.json").write_text(json.dumps({"voices": voices}))
    summary = probes.main(["--corpus", str(corpus), "--teacher", str(tiny_wavlm_path), "--students",
                           f"gendistiller@0={gendistiller_ckpt}", f"distilhubert@0={distilhubert_ckpt}",
                           f"gendistiller-front@0={gendistiller_ckpt}", "--options",
                           "gendistiller-front=front_end_state:true", "--out", str(tmp_path / "out")])
    kinds = summary["kinds"]
    assert list(kinds) == ["teacher", "gendistiller", "distilhubert", "gendistiller-front"]
    assert kinds["gendistiller"]["names"][0] == "h0" and kinds["distilhubert"]["names"][0] == "front_end"
    for kind in kinds.values():
        assert list(kind["tasks"]) == [probes.SPEAKER, probes.CONTENT, probes.WITHIN_LANGUAGE]
        assert kind["tasks"]["speaker"]["states"][probes.ALL]["accuracy"] == 100.0
        # one language: the same probe on the same items as the speaker task
        assert kind["tasks"][probes.WITHIN_LANGUAGE]["states"] == kind["tasks"]["speaker"]["states"]
        assert len(kind["tasks"]["content"]["norms"]) == len(kind["names"])
    # The option changes what s3prl sees, not the checkpoint: one more state, the others unchanged.
    assert kinds["gendistiller-front"]["names"] == ["front_end", *kinds["gendistiller"]["names"]]
    assert kinds["gendistiller-front"]["tasks"]["speaker"]["norms"][1:] == pytest.approx(
        kinds["gendistiller"]["tasks"]["speaker"]["norms"])
    assert {(p["a"], p["b"]) for p in summary["pairs"]} >= {("gendistiller", "distilhubert")}
    assert {p["state"] for p in summary["pairs"]} == {"best", probes.ALL, probes.WEIGHTED, probes.CENTERED}
    markdown = (tmp_path / "out" / "probes.md").read_text()
    assert "### speaker" in markdown and "| speaker | gendistiller - distilhubert | all states |" in markdown
    assert "| speaker | gendistiller - distilhubert | weighted sum, centered |" in markdown
    assert "### speaker within language" in markdown
    assert len(list((tmp_path / "out" / "states").glob("*.npz"))) == 2 * len(kinds)  # kept for the next run


def test_speaker_within_language_fits_one_probe_per_language(tmp_path):
    """With voices' languages, the speaker items of languages with two voices or more, grouped by language; each
    group gets its own probe, so a dimension that only tells the languages apart cannot help."""
    from benchmarks.probes import SPEAKER, WITHIN_LANGUAGE, Item, per_group, probe, task_items

    corpus = write_probe_corpus(tmp_path / "corpus")
    assert WITHIN_LANGUAGE not in task_items(corpus)  # no manifest: no languages
    languages = {"id0": "es", "id1": "es", "id2": "ru"}
    voices = [{"name": f"{language}_{speaker}", "language": language, "sid_speaker": speaker}
              for speaker, language in languages.items()]
    (corpus / "manifest.json").write_text(json.dumps({"voices": voices}))
    tasks = task_items(corpus)
    assert [(item.label, item.group) for item in tasks[WITHIN_LANGUAGE]] == [
        (item.label, "es") for item in tasks[SPEAKER]]  # id2 is the only "ru" voice: not in the task

    # Two languages of two voices each; dimension 0 tells the languages apart, dimension 1 the voices within each
    # (with the opposite sign in "b"): one probe over all four voices gets them right, and so does one per language,
    # but a probe given only dimension 0 is at chance within each language.
    rng = np.random.default_rng(0)
    items, rows = [], []
    for language, sign in (("a", 1.0), ("b", -1.0)):
        for voice in (0, 1):
            for n in range(10):
                items.append(Item(f"{language}{voice}/{n}", Path("x.wav"), f"{language}{voice}", n < 6, language))
                rows.append([4.0 * sign, sign * (2.0 * voice - 1.0) + 0.1 * rng.standard_normal()])
    features = np.array(rows)
    assert all(per_group(probe, features, items).values())
    calls = []
    per_group(lambda f, group: calls.append({item.group for item in group}) or probe(f, group), features, items)
    assert calls == [{"a"}, {"b"}]
    language_only = per_group(probe, features[:, :1], items)
    assert len(language_only) == 16 and sum(language_only.values()) <= 10


def test_sid_by_language_writes_one_voxceleb1_layout_per_language(tmp_path):
    """Each language with two voices gets a voxceleb1 layout of its voices alone: links to their folders and their
    lines of the split; a language with one voice gets none, and a corpus without languages is refused."""
    from benchmarks.sid_by_language import language_corpora

    corpus = write_probe_corpus(tmp_path / "corpus")
    with pytest.raises(SystemExit, match="names no language with two voices or more"):
        language_corpora(corpus, tmp_path / "none")  # no manifest
    (corpus / "manifest.json").write_text(json.dumps({"voices": [
        {"name": "es_id0", "language": "es", "sid_speaker": "id0"},
        {"name": "ru_id1", "language": "ru", "sid_speaker": "id1"}]}))
    with pytest.raises(SystemExit, match="names no language with two voices or more"):
        language_corpora(corpus, tmp_path / "none")  # one voice per language: nothing to run, said so
    speakers = {"id0": "es", "id1": "es", "id2": "ru"}
    (corpus / "manifest.json").write_text(json.dumps({"voices": [
        {"name": f"{language}_{speaker}", "language": language, "sid_speaker": speaker}
        for speaker, language in speakers.items()]}))
    split = corpus / "voxceleb1" / "iden_split.txt"
    split.write_text(split.read_text() + "1 id2/v/00000.wav\n3 id2/v/00001.wav\n")
    roots = language_corpora(corpus, tmp_path / "out")
    assert list(roots) == ["es"]
    layout = roots["es"] / "voxceleb1"
    assert sorted(p.name for p in (layout / "dev" / "wav").iterdir()) == ["id0", "id1"]
    assert (layout / "dev" / "wav" / "id0" / "v" / "00000.wav").is_file()
    kept = (layout / "iden_split.txt").read_text().split()
    assert len(kept) == 2 * 12 and not any(name.startswith("id2/") for name in kept[1::2])
    assert language_corpora(corpus, tmp_path / "out") == roots  # again: the same layout, nothing rewritten wrongly


def test_weighted_sum_probe_scores_each_seed_and_centers_on_the_training_items():
    """s3prl's head on pooled states: two voices apart on every dimension are told apart; centering subtracts the
    training items' mean, so a constant added to every state changes nothing (integer states: exact arithmetic)."""
    from benchmarks.probes import Item, weighted_sum_probe

    rng = np.random.default_rng(0)
    items = [Item(f"v{voice}/{n}", Path(f"v{voice}_{n}.wav"), f"v{voice}", n < 8) for voice in range(2) for n in range(12)]
    pooled = np.stack([rng.integers(-2, 3, size=(3, 8)) + 8 * int(item.label == "v1") for item in items]).astype(float)
    centered = weighted_sum_probe(pooled, items, center=True)
    assert len(centered) == 3 * 8 and all(centered.values())  # three seeds x eight test items
    assert weighted_sum_probe(pooled + 64.0, items, center=True) == centered
    offset = weighted_sum_probe(pooled + 64.0, items)  # unnormalised, the head learns the offset states more slowly
    assert all(weighted_sum_probe(pooled, items).values()) and sum(offset.values()) < len(offset)


def test_fidelity_intervals_cli(tmp_path, tiny_wavlm_path, gendistiller_ckpt, distilhubert_ckpt):
    """Fidelity per layer with intervals over seeds and files, the two kinds paired on the same files."""
    from benchmarks import fidelity_intervals

    heldout = write_tone_corpus(tmp_path / "heldout", num_files=4, seed=3)
    results = fidelity_intervals.main(["--teacher", str(tiny_wavlm_path), "--heldout", str(heldout), "--students",
                                       f"gendistiller@0={gendistiller_ckpt}", f"gendistiller@1={gendistiller_ckpt}",
                                       f"distilhubert@0={distilhubert_ckpt}", "--out", str(tmp_path / "out")])
    assert set(results["kinds"]) == {"gendistiller", "distilhubert"}
    for by_layer in results["kinds"].values():
        for by_metric in by_layer.values():
            for entry in by_metric.values():
                assert entry["low"] <= entry["value"] <= entry["high"]
    for by_metric in results["paired"].values():
        for metric, entry in by_metric.items():
            assert entry["verdict"] in ("ahead", "tie", "behind")
    assert "paired on the same seeds and files" in (tmp_path / "out" / "fidelity_intervals.md").read_text()


def test_budget_cli(tmp_path):
    """Every narrowed GenDistiller within the budget; the geometries over it named in the table's headline."""
    from benchmarks import budget

    rows = budget.main(["--out", str(tmp_path)])
    assert len(rows) == 2 * len(budget.FRONT_ENDS) * len(budget.WIDTHS) * len(budget.DEPTHS)
    assert all(row["share"] <= 0.67 for row in rows if row["front_end"] == 128)
    over = [row for row in rows if row["share"] > 0.67]
    assert over and all(row["front_end"] == "copied" and row["step_ffn_dims"] == [] for row in over)
    assert f"{len(rows) - len(over)} of {len(rows)} geometries within it" in (tmp_path / "budget.md").read_text()

"""ONNX export of both students: equal to PyTorch on padded batches and unseen lengths, int8 close to fp32, a runtime
without torch, `gendistiller embed`, and clear errors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from distill.cli import main as cli
from distill.deploy import DeployError, OnnxStudent
from distill.models.checkpoint import load_student
from distill.onnx_export import export_onnx
from tests.conftest import random_waveforms, write_tone_corpus

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
LENGTHS = (50000, 17001, 9999, 400)  # longer and shorter than the 32000 / 20000 samples the export traces


@pytest.fixture(scope="module", params=["gendistiller", "distilhubert"])
def exported(request, tmp_path_factory) -> tuple[Path, Path, Path]:
    """(checkpoint, fp32 ONNX, int8 ONNX) of a tiny trained student."""
    checkpoint = request.getfixturevalue(f"{request.param}_ckpt")
    folder = tmp_path_factory.mktemp(f"onnx_{request.param}")
    fp32 = export_onnx(checkpoint, folder / "student.onnx")
    int8 = export_onnx(checkpoint, folder / "student_int8.onnx", quantize="int8")
    return checkpoint, fp32, int8


def test_fp32_equals_pytorch_on_padded_batches_of_unseen_lengths(exported):
    checkpoint, fp32, _ = exported
    student, _ = load_student(checkpoint)
    wavs = random_waveforms(LENGTHS, seed=21)
    out = OnnxStudent(fp32)([wav.numpy() for wav in wavs])  # one padded batch
    assert OnnxStudent(fp32).kind == student.config.kind
    for i, wav in enumerate(wavs):
        alone = student.infer([wav])  # PyTorch, the utterance alone
        frames = int(alone.lengths[0])
        assert int(out.lengths[i]) == frames
        assert len(out.hidden_states) == len(alone.hidden_states)
        for ours, reference in zip(out.hidden_states, alone.hidden_states):
            assert np.abs(ours[i, :frames] - reference[0].numpy()).max() < TOLERANCE
            assert not ours[i, frames:].any()  # padded frames are zero


def test_int8_stays_close_to_fp32_on_held_out_audio(exported, tmp_path):
    _, fp32, int8 = exported
    audio = write_tone_corpus(tmp_path / "heldout", num_files=4, seed=9)
    wavs = [soundfile.read(path, dtype="float32")[0] for path in sorted(audio.glob("*.flac"))]
    reference, quantized = OnnxStudent(fp32)(wavs), OnnxStudent(int8)(wavs)
    assert OnnxStudent(int8).metadata["quantization"] == "int8"
    for a, b in zip(reference.hidden_states, quantized.hidden_states):
        valid = np.concatenate([a[i, :n] for i, n in enumerate(reference.lengths)]), \
            np.concatenate([b[i, :n] for i, n in enumerate(reference.lengths)])
        cosine = (valid[0] * valid[1]).sum(-1) / (np.linalg.norm(valid[0], axis=-1) * np.linalg.norm(valid[1], axis=-1))
        assert cosine.mean() >= 0.99


def test_runtime_needs_no_torch(exported, tmp_path):
    _, fp32, _ = exported
    script = (f"import sys; sys.modules['torch'] = None\n"
              f"import numpy as np\nfrom distill.deploy import OnnxStudent\n"
              f"out = OnnxStudent({str(fp32)!r})([np.zeros(16000, np.float32), np.ones(8000, np.float32) * 0.1])\n"
              f"print(len(out.hidden_states), out.lengths.tolist())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["[49,", "24]"]


def test_embed_writes_features_per_file(exported, tmp_path):
    _, fp32, _ = exported
    audio = write_tone_corpus(tmp_path / "audio", num_files=3, seed=4)
    assert cli(["embed", "--model", str(fp32), str(audio), "--out", str(tmp_path / "features")]) == 0
    features = sorted((tmp_path / "features").glob("*.npy"))
    assert len(features) == 3
    first = np.load(features[0])
    wav = soundfile.read(sorted(audio.glob("*.flac"))[0], dtype="float32")[0]
    assert first.shape[:2] == (int(OnnxStudent(fp32).metadata["num_hidden_states"]), 1 + (len(wav) - 400) // 320)
    assert cli(["embed", "--model", str(fp32), str(audio), "--out", str(tmp_path / "one"), "--layer", "1"]) == 0
    assert np.load(sorted((tmp_path / "one").glob("*.npy"))[0]).ndim == 2


def test_clear_errors(exported, tiny_wavlm_path, tmp_path, capsys):
    checkpoint, _, _ = exported
    assert cli(["export", "--to", "onnx", str(tiny_wavlm_path), str(tmp_path / "t.onnx")]) == 1
    assert "not a GenDistiller student checkpoint" in capsys.readouterr().err
    assert cli(["export", "--to", "onnx", str(checkpoint), str(tmp_path / "missing" / "s.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot write" in err and "does not exist" in err and len(err.splitlines()) == 1

    foreign = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), str(foreign), dynamo=False)
    with pytest.raises(DeployError, match="not a student exported by `gendistiller export --to onnx`"):
        OnnxStudent(foreign)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(DeployError, match="not a readable ONNX model"):
        OnnxStudent(tmp_path / "junk.onnx")
    assert cli(["embed", "--model", str(tmp_path / "junk.onnx"), str(tmp_path)]) == 2

"""ONNX export of both students: equal to PyTorch on padded batches and unseen lengths (also with the options that take
other code paths), int8 close to fp32 with every weight MatMul quantized, a runtime without torch, `gendistiller
embed`, and clear errors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from distill.cli import main as cli
from distill.deploy.onnx_export import export_onnx, export_student, state_names
from distill.deploy.runtime import DeployError, OnnxStudent
from distill.io.audio import AudioError, read_audio
from distill.models import build_student, student_config
from distill.models.student_checkpoint import load_student
from distill.nn.ssl_encoder import SSLModelConfig
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


def assert_equals_pytorch_alone(student, model: OnnxStudent, wavs: list[torch.Tensor]) -> None:
    """The ONNX model on one padded batch vs PyTorch on each utterance alone, every hidden state."""
    out = model([wav.numpy() for wav in wavs])
    for i, wav in enumerate(wavs):
        with torch.inference_mode():
            alone = student.infer([wav])
        frames = int(alone.lengths[0])
        assert int(out.lengths[i]) == frames
        assert len(out.hidden_states) == len(alone.hidden_states) == len(model.names)
        for name, ours, reference in zip(model.names, out.hidden_states, alone.hidden_states):
            error = np.abs(ours[i, :frames] - reference[0].numpy()).max()
            assert error < TOLERANCE, f"utterance {i} ({len(wav)} samples), {name}: max abs error {error}"
            assert not ours[i, frames:].any()  # padded frames are zero


def test_fp32_equals_pytorch_on_padded_batches_of_unseen_lengths(exported):
    checkpoint, fp32, _ = exported
    student, saved = load_student(checkpoint)
    model = OnnxStudent(fp32)
    assert (model.kind, model.names) == (student.config.kind, state_names(student))
    assert model.metadata["source"] == str(checkpoint) and model.metadata["step"] == str(saved["step"])
    wavs = random_waveforms(LENGTHS, seed=21)
    wavs[0][:20000] *= 1e-3  # a quiet stretch, as before speech starts: the per-frame LayerNorm magnifies its rounding
    assert_equals_pytorch_alone(student, model, wavs)


def test_cnn_exports_as_height_one_2d_convolutions(exported):
    """The layout onnxruntime runs in its blocked (NCHWc) form from one CNN layer to the next (benchmarks/results/inference_and_deploy.md)."""
    graph = onnx.load(str(exported[1])).graph
    ranks = {tensor.name: len(tensor.dims) for tensor in graph.initializer}
    cnn = [node for node in graph.node if node.op_type == "Conv" and "/feature_extractor/" in node.name]
    assert len(cnn) == 7 and all(ranks[node.input[1]] == 4 for node in cnn)


TINY_GEOMETRY = dict(family="hubert", conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2, dim=32,
                     ffn_dim=64, num_layers=4, num_heads=2, conv_pos=16, conv_pos_groups=4)


@pytest.mark.parametrize("kind, student_options, geometry_options", [
    # A LayerNorm CNN, since the default CNN's per-channel GroupNorm would undo any error in the waveform's mean.
    ("gendistiller", dict(attention_2d=True, generator_repeats=[2, 1, 1], output_projection_groups=[0, 1, 1]),
     dict(normalize=True, extractor_mode="layer_norm")),
    ("distilhubert", dict(encoder_layers=1), dict(conv_bias=True, layer_norm_first=True)),
    ("gendistiller", dict(target_standardization=True), {}),
    ("gendistiller", dict(target_standardization=True, front_end_state="unnormalized", states_in_teacher_units=False,
                          generator_states=True), {}),
], ids=["gendistiller-2d-normalize", "distilhubert-pre-ln", "gendistiller-standardized-targets",
        "gendistiller-every-exposed-state"])
def test_fp32_equals_pytorch_with_other_options(tmp_path, kind, student_options, geometry_options):
    """Options whose code the trained fixtures do not run: waveform normalisation (its loop-free export form),
    2-D attention over every earlier layer, repeated generator steps, a LayerNorm CNN, pre-LN layers, standardised
    targets (with statistics far from 0 / 1)."""
    geometry = SSLModelConfig(**TINY_GEOMETRY, **geometry_options).to_dict()
    torch.manual_seed(3)
    config = student_config(kind, target_layers=[2, 3, 4], dropout=0.0, geometry=geometry, **student_options)
    student = build_student(config).eval()
    if student.config.target_standardization is True:
        student.set_target_statistics(3 * torch.randn(3, 32), torch.rand(3, 32) + 0.5)
    model = OnnxStudent(export_student(student, tmp_path / "student.onnx"))
    assert_equals_pytorch_alone(student, model, random_waveforms((23456, 8000, 30001), seed=5))


def _fp32_weight_matmuls(path: Path) -> list[str]:
    """MatMul nodes whose weight is a float initializer, directly or through an Identity (what quantize_dynamic skips)."""
    graph = onnx.load(str(path)).graph
    initializers = {tensor.name for tensor in graph.initializer}
    identities = {node.output[0] for node in graph.node if node.op_type == "Identity" and node.input[0] in initializers}
    return [node.name for node in graph.node
            if node.op_type in ("MatMul", "Gemm") and node.input[1] in initializers | identities]


def test_int8_quantizes_every_weight_matmul(exported, tmp_path):
    checkpoint, fp32, int8 = exported
    assert _fp32_weight_matmuls(fp32)  # the check sees them in fp32 ...
    assert _fp32_weight_matmuls(int8) == []  # ... including GenDistiller's generator, used once per step
    assert OnnxStudent(int8).metadata["quantization"] == "int8"
    graph = onnx.load(str(int8)).graph
    fp32_convs = [node.name for node in graph.node if node.op_type == "Conv" and "/feature_extractor/" in node.name]
    assert len(fp32_convs) == 1 and "/conv_layers.0/" in fp32_convs[0]  # the others are integer products per frame
    assert sum(node.op_type == "MatMulInteger" and "/feature_extractor/" in node.name for node in graph.node) == 6

    linear = onnx.load(str(export_onnx(checkpoint, tmp_path / "int8_linear.onnx", "int8-linear"))).graph
    assert _fp32_weight_matmuls(tmp_path / "int8_linear.onnx") == []
    assert sum(node.op_type == "Conv" and "/feature_extractor/" in node.name for node in linear.node) == 7

    calibration = [wav.numpy() for wav in random_waveforms((16000, 24000), seed=8)]
    graph = onnx.load(str(export_onnx(checkpoint, tmp_path / "int8_cnn.onnx", "int8-cnn", calibration))).graph
    producer = {output: node.op_type for node in graph.node for output in node.output}
    int8_convs = {node.name for node in graph.node if node.op_type == "Conv" and producer.get(node.input[1]) == "DequantizeLinear"}
    cnn = {node.name for node in graph.node if node.op_type == "Conv" and "/feature_extractor/" in node.name}
    first = {name for name in cnn if "/conv_layers.0/" in name}
    assert len(first) == 1 and int8_convs == cnn - first  # every CNN conv but the first; the positional conv stays fp32
    assert _fp32_weight_matmuls(tmp_path / "int8_cnn.onnx") == []


def frame_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def test_int8_stays_close_to_fp32_on_held_out_audio(exported, tmp_path):
    _, fp32, int8 = exported
    audio = write_tone_corpus(tmp_path / "heldout", num_files=4, seed=9)  # not the corpus the students saw
    wavs = [read_audio(path) for path in sorted(audio.glob("*.flac"))]
    reference, quantized = OnnxStudent(fp32)(wavs), OnnxStudent(int8)(wavs)
    for name, a, b in zip(OnnxStudent(fp32).names, reference.hidden_states, quantized.hidden_states):
        valid = [np.concatenate([state[i, :n] for i, n in enumerate(reference.lengths)]) for state in (a, b)]
        assert frame_cosines(*valid).mean() >= 0.99, name


def test_int8_keeps_quiet_frames(exported, tmp_path):
    """A quiet stretch (as before speech starts) keeps its precision in int8 (a scale per frame in the CNN), where one
    calibrated range per tensor (int8-cnn) leaves it a few quantisation steps."""
    checkpoint, fp32, int8 = exported
    audio = write_tone_corpus(tmp_path / "heldout", num_files=3, seed=10)
    loud = [read_audio(path) for path in sorted(audio.glob("*.flac"))]
    wavs = [np.concatenate([wav[: len(wav) // 2] * 1e-3, wav[len(wav) // 2:]]) for wav in loud]
    static = export_onnx(checkpoint, tmp_path / "int8_cnn.onnx", "int8-cnn", loud)
    reference = OnnxStudent(fp32)(wavs)
    lowest = {}
    for name, path in (("int8", int8), ("int8-cnn", static)):
        out = OnnxStudent(path)(wavs)
        lowest[name] = min(np.percentile(np.concatenate([frame_cosines(a[i, :n], b[i, :n]) for i, n in enumerate(out.lengths)]), 1)
                           for a, b in zip(reference.hidden_states, out.hidden_states))
    assert lowest["int8"] >= 0.99 and lowest["int8-cnn"] < lowest["int8"], lowest


def test_runtime_needs_no_torch(exported, tmp_path):
    _, fp32, _ = exported
    audio = write_tone_corpus(tmp_path / "audio", num_files=2, seed=6)
    script = (f"import sys; sys.modules['torch'] = None; sys.modules['soundfile'] = None\n"
              f"import numpy as np\nfrom distill.deploy.runtime import OnnxStudent\n"
              f"out = OnnxStudent({str(fp32)!r})([np.zeros(16000, np.float32), np.ones(8000, np.float32) * 0.1])\n"
              f"print(len(out.hidden_states), out.lengths.tolist())\n"
              f"del sys.modules['soundfile']\nfrom distill.cli import main\n"  # embed reads audio: soundfile, not torch
              f"sys.exit(main(['embed', '--model', {str(fp32)!r}, {str(audio)!r}, '--out', {str(tmp_path / 'f')!r}]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split()[-2:] == ["[49,", "24]"]
    assert len(list((tmp_path / "f").glob("*.npy"))) == 2


def test_embed_writes_features_per_file(exported, tmp_path, capsys):
    _, fp32, _ = exported
    audio = write_tone_corpus(tmp_path / "audio", num_files=3, seed=4)
    assert cli(["embed", "--model", str(fp32), str(audio), "--out", str(tmp_path / "features")]) == 0
    features = sorted((tmp_path / "features").glob("*.npy"))
    assert len(features) == 3
    wav = read_audio(sorted(audio.glob("*.flac"))[0])
    expected = OnnxStudent(fp32)([wav])
    first = np.load(features[0])
    assert first.shape[:2] == (len(expected.hidden_states), 1 + (len(wav) - 400) // 320)
    assert np.array_equal(first[-1], expected.hidden_states[-1][0])
    assert OnnxStudent(fp32).names[-1] in capsys.readouterr().out

    (audio / "broken.wav").write_bytes(b"RIFF junk")
    assert cli(["embed", "--model", str(fp32), str(audio), "--out", str(tmp_path / "one"), "--layer", "1"]) == 1
    assert "broken.wav" in capsys.readouterr().err  # named and skipped; the others are written
    kept = sorted((tmp_path / "one").glob("*.npy"))
    assert len(kept) == 3 and np.load(kept[0]).ndim == 2


def test_clear_errors(exported, tiny_wavlm_path, tmp_path, capsys):
    checkpoint, fp32, _ = exported
    assert cli(["export", "--to", "onnx", str(tiny_wavlm_path), str(tmp_path / "t.onnx")]) == 2
    assert "not a GenDistiller student checkpoint" in capsys.readouterr().err
    for output, problem in ((tmp_path / "missing" / "s.onnx", "does not exist"), (tmp_path, "is a directory")):
        assert cli(["export", "--to", "onnx", str(checkpoint), str(output)]) == 2
        err = capsys.readouterr().err.strip()
        assert "cannot write" in err and problem in err and len(err.splitlines()) == 1
    assert cli(["export", "--to", "onnx", "--quantize", "int8-cnn", str(checkpoint), str(tmp_path / "q.onnx")]) == 2
    assert "needs --calibration" in capsys.readouterr().err

    foreign = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), str(foreign), dynamo=False)
    with pytest.raises(DeployError, match="not a student exported by `gendistiller export --to onnx`"):
        OnnxStudent(foreign)
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(DeployError, match="not a readable ONNX model"):
        OnnxStudent(tmp_path / "junk.onnx")
    assert cli(["embed", "--model", str(tmp_path / "junk.onnx"), str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

    model = OnnxStudent(fp32)
    with pytest.raises(AudioError, match="expected float samples"):
        model([np.zeros(16000, np.int16)])
    with pytest.raises(AudioError, match="1-D mono"):
        model([np.zeros((2, 16000), np.float32)])
    with pytest.raises(AudioError, match="too short"):
        model([np.zeros(100, np.float32)])

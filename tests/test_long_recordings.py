"""Long recordings: the windowing rule (frame counts exact on the CNN's grid, each frame from the window where
it has the most context), chunked inference close to whole-recording inference on a trained tiny student and the same
in PyTorch and ONNX, early stopping equal to the full run, and `gendistiller embed` reading and writing window by window
with one-line errors for bad files."""
import numpy as np
import pytest
import soundfile
import torch

from distill.cli import main as cli
from distill.deploy.onnx_export import export_onnx
from distill.deploy.runtime import MOMENT_INPUTS, DeployError, OnnxStudent
from distill.io.audio import read_audio
from distill.models.student_checkpoint import load_student
from distill.nn.chunking import Chunking, FrameGrid, NpyWriter, RecordingNorm, recording_moments, windows
from distill.nn.components import ChannelMoments, conv_output_lengths
from distill.nn.ssl_encoder import SSLModelConfig
from distill.teachers import load_teacher
from distill.training.fidelity import heldout_fidelity
from tests.conftest import write_tone_corpus

WAV2VEC2_CNN = SSLModelConfig(family="hubert").conv_layers
MIXED_LENGTHS = (400, 719, 720, 1039, 16000, 16001, 160_000, 401_234, 1_000_003)
SMALL = Chunking(window_seconds=2.0, context_seconds=1.0)  # 100 + 2 x 50 frames: several windows on a few seconds


def long_speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Tone-corpus files (gliding harmonic tones) one after another: a recording of `seconds`."""
    rng = np.random.default_rng(seed)
    pieces, total = [], 0
    while total < seconds * 16000:
        n = int(rng.integers(16000, 48000))
        t = np.arange(n) / 16000
        f0 = rng.uniform(90, 250) * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 3) * t))
        phase = 2 * np.pi * np.cumsum(f0) / 16000
        pieces.append(sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.1 + 0.01 * rng.standard_normal(n))
        total += n
    return np.concatenate(pieces)[: int(seconds * 16000)].astype(np.float32)


def level_changes(seconds: float, seed: int = 0) -> np.ndarray:
    """`long_speech` 26 dB quieter every other 3 s: each window's own statistics of the CNN's first layer differ from the
    whole recording's (chunked inference with each window's own lost most of its fidelity: mean cosine 0.86)."""
    wav = long_speech(seconds, seed)
    return wav * np.where(np.arange(len(wav)) // 48000 % 2 == 1, 1.0, 0.05).astype(np.float32)


def frame_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def test_frame_grid_counts_as_the_cnn_does():
    grid = FrameGrid.of(WAV2VEC2_CNN)
    assert grid == FrameGrid(400, 320)
    lengths = torch.tensor(MIXED_LENGTHS + (399, 0))
    assert [grid.frames(n) for n in lengths.tolist()] == conv_output_lengths(lengths, WAV2VEC2_CNN).tolist()


@pytest.mark.parametrize("samples", MIXED_LENGTHS)
@pytest.mark.parametrize("chunking", [SMALL, Chunking(1.0, 0.0), Chunking(20.0, 2.0)], ids=["2s+1s", "1s+0s", "20s+2s"])
def test_windows_cover_every_frame_once_from_the_window_with_most_context(samples, chunking):
    grid = FrameGrid()
    total = grid.frames(samples)
    plan = windows(samples, chunking, grid)
    assert plan[0].keep_start == 0 and plan[-1].keep_stop == total
    assert all(a.keep_stop == b.keep_start for a, b in zip(plan, plan[1:]))  # contiguous, no frame twice
    assert all(w.stop - w.start <= chunking.longest_frames(grid) for w in plan)
    assert all(grid.samples(w.start, w.stop)[1] <= samples and grid.frames(grid.samples(w.start, w.stop)[1]
               - grid.samples(w.start, w.stop)[0]) == w.stop - w.start for w in plan)
    if total <= chunking.longest_frames(grid):
        assert len(plan) == 1  # whole-recording inference when it fits

    def context(window, frame):  # frames of context on the shorter side; a recording's edge is no cut
        left = frame - window.start if window.start > 0 else total
        right = window.stop - 1 - frame if window.stop < total else total
        return min(left, right)

    for frame in range(0, total, max(1, total // 500)):
        chosen = next(w for w in plan if w.keep_start <= frame < w.keep_stop)
        assert context(chosen, frame) == max(context(w, frame) for w in plan if w.start <= frame < w.stop)


def test_windows_normalise_with_the_whole_recordings_first_layer_statistics(gendistiller_ckpt):
    """The first layer's moments pooled from pieces equal the whole recording's, and with them a window's CNN output
    equals the whole recording's frames (with its own, it does not)."""
    student, _ = load_student(gendistiller_ckpt)
    extractor = student.feature_extractor
    wav = torch.from_numpy(level_changes(9.3, seed=8))
    with torch.inference_mode():
        whole = extractor.first_layer_moments(wav[None])
        norm = RecordingNorm(FrameGrid.of(student.config.front_end_conv_layers()[:1]),
                             lambda first, end: tuple(m[0].numpy() for m in extractor.first_layer_moments(wav[None, first:end])))
        pooled = recording_moments(norm, len(wav), piece_frames=3001)
        for ours, reference in zip(pooled, whole):
            assert np.allclose(ours, reference[0].numpy(), rtol=1e-4, atol=1e-7)
        features, _ = extractor(wav[None], torch.tensor([len(wav)]))
        first, end = FrameGrid().samples(200, 350)
        window = wav[None, first:end]
        given, _ = extractor(window, torch.tensor([end - first]), ChannelMoments(*(torch.from_numpy(m)[None] for m in pooled)))
        own, _ = extractor(window, torch.tensor([end - first]))
    assert (given[0] - features[0, 200:350]).abs().max() < 1e-4 < (own[0] - features[0, 200:350]).abs().max()


def test_chunked_inference_reproduces_whole_recordings_on_a_trained_student(gendistiller_ckpt, distilhubert_ckpt):
    """Mixed lengths in one call: the stitched output has each recording's frame count, and with a second of context
    every hidden state stays within the issue's tolerance of whole-recording inference, on recordings whose level
    changes (the windows normalise with the whole recording's first-layer statistics)."""
    for checkpoint in (gendistiller_ckpt, distilhubert_ckpt):
        student, _ = load_student(checkpoint)
        wavs = [torch.from_numpy(level_changes(seconds, seed)) for seconds, seed in ((9.3, 1), (2.1, 2), (6.02, 3))]
        whole, chunked = student.infer(wavs, None), student.infer(wavs, SMALL)
        assert chunked.lengths.tolist() == whole.lengths.tolist() == [FrameGrid().frames(len(wav)) for wav in wavs]
        assert len(chunked.hidden_states) == len(whole.hidden_states) and len(chunked.predictions) == len(whole.predictions)
        for index, (a, b) in enumerate(zip(whole.hidden_states, chunked.hidden_states)):
            cosines = np.concatenate([frame_cosines(a[i, :n].numpy(), b[i, :n].numpy())
                                      for i, n in enumerate(whole.lengths.tolist())])
            assert cosines.mean() >= 0.995 and np.percentile(cosines, 1) >= 0.98, (student.config.kind, index)
            assert not b[1, int(whole.lengths[1]):].any()  # padding stays zero
        assert not torch.equal(whole.hidden_states[-1], chunked.hidden_states[-1])  # the windows were really cut


@pytest.fixture(scope="module")
def exported(gendistiller_ckpt, tmp_path_factory):
    folder = tmp_path_factory.mktemp("long_onnx")
    return export_onnx(gendistiller_ckpt, folder / "student.onnx"), export_onnx(gendistiller_ckpt, folder / "int8.onnx", "int8")


def test_onnx_runtime_cuts_the_same_windows_as_pytorch(gendistiller_ckpt, exported):
    """The same windows and the same whole-recording statistics (the model's second graph; the moment inputs stay
    inputs through int8 quantisation), so the same states."""
    student, _ = load_student(gendistiller_ckpt)
    wavs = [level_changes(7.7, seed=4), level_changes(1.5, seed=5)]
    reference = student.infer([torch.from_numpy(wav) for wav in wavs], SMALL)
    out = OnnxStudent(exported[0], chunking=SMALL)(wavs)
    assert out.lengths.tolist() == reference.lengths.tolist()
    for ours, theirs in zip(out.hidden_states, reference.hidden_states):
        assert np.abs(ours - theirs.numpy()).max() < 1e-4
    for path in exported:
        session = OnnxStudent(path).session
        assert {tensor.name for tensor in session.get_overridable_initializers()} == set(MOMENT_INPUTS)


def test_early_stopping_equals_the_full_run(gendistiller_ckpt, distilhubert_ckpt, exported):
    wavs = [long_speech(5.0, seed=6), long_speech(3.3, seed=7)]
    for checkpoint in (gendistiller_ckpt, distilhubert_ckpt):
        student, _ = load_student(checkpoint)
        full = student.infer([torch.from_numpy(wav) for wav in wavs], SMALL)
        for layers in range(len(full.hidden_states)):
            stopped = student.infer([torch.from_numpy(wav) for wav in wavs], SMALL, layers=layers)
            assert len(stopped.hidden_states) == layers + 1
            assert all(torch.equal(a, b) for a, b in zip(stopped.hidden_states, full.hidden_states))
    full_model = OnnxStudent(exported[1], chunking=SMALL)
    full = full_model(wavs)
    nodes = len(full_model.session.get_outputs())
    for layers in range(len(full.hidden_states)):
        model = OnnxStudent(exported[1], layers=layers, chunking=SMALL)
        stopped = model(wavs)
        assert model.names == full_model.names[: layers + 1] and len(model.session.get_outputs()) == layers + 2 <= nodes
        assert all(np.array_equal(a, b) for a, b in zip(stopped.hidden_states, full.hidden_states))
    with pytest.raises(DeployError, match="hidden states 0 to 6"):  # h0, then each step's update and layer
        OnnxStudent(exported[1], layers=7)


def test_early_stopping_prunes_the_generator_steps(exported):
    """The pruned graph runs fewer nodes: onnxruntime would run every node of the full graph."""
    import onnx

    from distill.deploy.runtime import _pruned

    full = onnx.load(str(exported[0])).graph
    sizes = [len(onnx.load_from_string(_pruned(exported[0], layers)).graph.node) for layers in range(7)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 7 and sizes[-1] == len(full.node)


def test_heldout_fidelity_says_what_it_did_to_long_files(gendistiller_ckpt, tiny_wavlm_path, tmp_path, capsys):
    """Files cut to `max_samples` are counted in the output; a teacher without a window (ours) runs every file whole,
    with nothing to say (Whisper's 30 s windows: tests/test_whisper_teacher.py)."""
    student, _ = load_student(gendistiller_ckpt)
    teacher = load_teacher(str(tiny_wavlm_path))
    paths = [tmp_path / "long.wav", tmp_path / "short.wav"]
    for path, seconds in zip(paths, (3.5, 1.0)):
        soundfile.write(path, long_speech(seconds), 16000)
    cut = heldout_fidelity(student, teacher, paths, max_samples=32000)
    assert "[fidelity] 1 of 2 files cut to their first 2 s (1.5 s of audio left out)\n" in capsys.readouterr().out
    whole = heldout_fidelity(student, teacher, paths)
    assert "[fidelity]" not in capsys.readouterr().out and teacher.window_samples is None
    assert cut[2].frames == 99 + 49 and whole[2].frames == 174 + 49


def test_npy_writer_writes_spans_in_place(tmp_path):
    states = np.random.default_rng(0).standard_normal((3, 10, 4)).astype(np.float32)
    writer = NpyWriter(tmp_path / "x.npy", states.shape, np.float16)
    assert not (tmp_path / "x.npy").exists()
    for first, last in ((6, 10), (0, 3), (3, 6)):
        writer.write(first, list(states[:, first:last]))
    writer.close()
    assert np.array_equal(np.load(tmp_path / "x.npy"), states.astype(np.float16))


def test_embed_long_files_window_by_window_with_one_line_errors(exported, tmp_path, capsys):
    fp32 = exported[0]
    audio = write_tone_corpus(tmp_path / "audio", num_files=2, seed=11)
    long = long_speech(9.0, seed=12)
    soundfile.write(audio / "long.flac", long, 16000)
    soundfile.write(audio / "short.wav", np.zeros(399, np.float32), 16000)  # below one frame of the CNN
    (audio / "broken.wav").write_bytes(b"RIFF junk")
    args = ["embed", "--model", str(fp32), str(audio), "--window", "2", "--context", "1"]
    assert cli(args + ["--out", str(tmp_path / "all")]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("[embed]")]
    assert len(errors) == 2 and any("short.wav" in e and "too short" in e for e in errors) and any("broken.wav" in e for e in errors)
    written = sorted(path.name for path in (tmp_path / "all").iterdir())
    assert written == ["long.npy", "utt000.npy", "utt001.npy"]  # no .partial left behind
    expected = OnnxStudent(fp32, chunking=SMALL)([read_audio(audio / "long.flac")])  # as FLAC stores it: 16-bit
    states = np.load(tmp_path / "all" / "long.npy")
    assert states.shape == (7, FrameGrid().frames(len(long)), expected.hidden_states[0].shape[-1]) and states.dtype == np.float32
    assert all(np.array_equal(ours, theirs[0]) for ours, theirs in zip(states, expected.hidden_states))

    assert cli(args + ["--out", str(tmp_path / "one"), "--layer", "2", "--float16"]) == 1
    capsys.readouterr()
    one = np.load(tmp_path / "one" / "long.npy")
    assert one.dtype == np.float16 and np.array_equal(one, expected.hidden_states[2][0].astype(np.float16))


def test_s3prl_upstream_chunks_and_stops_early_when_its_config_asks(gendistiller_ckpt, tmp_path):
    pytest.importorskip("s3prl")
    from gendistiller_upstream.expert import UpstreamExpert

    wavs = [torch.from_numpy(long_speech(seconds, seed)) for seconds, seed in ((6.5, 8), (1.2, 9))]
    student, _ = load_student(gendistiller_ckpt)
    config = tmp_path / "upstream.yaml"
    config.write_text("chunk_window_seconds: 2\nchunk_context_seconds: 1\nlayers: 2\n")
    with torch.no_grad():
        states = UpstreamExpert(str(gendistiller_ckpt), str(config))(wavs)["hidden_states"]
        whole = UpstreamExpert(str(gendistiller_ckpt))(wavs)["hidden_states"]
    reference = student.infer(wavs, SMALL, layers=2).hidden_states
    assert len(states) == 3 and all(torch.equal(a, b) for a, b in zip(states, reference))
    assert len(whole) == 7 and all(torch.equal(a, b) for a, b in zip(whole, student.infer(wavs, None).hidden_states))
    config.write_text("window: 2\n")
    with pytest.raises(ValueError, match="may set"):
        UpstreamExpert(str(gendistiller_ckpt), str(config))

"""Whisper teachers: parity with transformers' WhisperFeatureExtractor + WhisperEncoder layer by layer, the same weights
as an openai-whisper checkpoint and as CTranslate2 model.bin files (written by ctranslate2's own converter, checked
against ctranslate2's own encoder too), the two modes, padding invariance, 30 s windows, detection and errors."""
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from benchmarks.whisper_padding import padding_gap
from distill.cli import main as cli
from distill.io.checkpoint_files import CheckpointError
from distill.nn.whisper_encoder import mel_filters, whisper_frames
from distill.teachers import WhisperTeacher, load_teacher
from distill.teachers.ctranslate2_format import CTranslate2File
from distill.training.fidelity import long_files_notes
from tests.conftest import random_waveforms, write_tone_corpus

LENGTHS = (8000, 20800, 48000)  # 0.5 s, 1.3 s, 3 s
TOLERANCE = 1e-4  # float32 against float32 (max abs; states are of order 1-10)
# Weights stored in lower precision, against transformers' float32 model, relative to the largest state: float16
# rounds each weight by up to 2^-11 (seen: 3e-4), int8 to one of 127 levels per row (seen: 6e-4).
QUANTIZED_TOLERANCE = {"float16": 2e-3, "int8": 5e-3}


# ---- a tiny Whisper in every format -----------------------------------------------------------------------------

def _tiny_whisper():
    """A tiny WhisperForConditionalGeneration with random weights. Encoder LayerNorms, biases and positions are
    randomised too (transformers initialises them to 1 / 0), except the final LayerNorm, left at 1 / 0 so that
    ctranslate2's converter aliases it to an equal decoder variable and the reader's alias path is exercised."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(vocab_size=100, num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                           encoder_ffn_dim=128, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=128,
                           max_source_positions=1500, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=1, dropout=0.0, attention_dropout=0.0,
                           activation_dropout=0.0)
    torch.manual_seed(3)
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, parameter in model.model.encoder.named_parameters():
            if name.startswith("layer_norm."):
                continue
            if "layer_norm.weight" in name:
                parameter.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                parameter.normal_(0.0, 0.1)
            elif name == "embed_positions.weight":
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def _write_tiny_tokenizer(folder: Path, vocab_size: int) -> None:
    """A byte-level BPE vocabulary of `vocab_size` tokens and no merges: ctranslate2's converter loads the tokenizer,
    and WhisperTokenizer reads these two files offline."""
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    vocab = {char: i for i, char in enumerate(list(bytes_to_unicode().values())[: vocab_size - 1])}
    vocab["<|endoftext|>"] = vocab_size - 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")


@pytest.fixture(scope="module")
def hf_whisper(tmp_path_factory):
    from transformers import WhisperFeatureExtractor

    folder = tmp_path_factory.mktemp("hf_whisper")
    model = _tiny_whisper()
    model.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    _write_tiny_tokenizer(folder, model.config.vocab_size)
    return folder, model


# transformers' WhisperForConditionalGeneration names -> openai-whisper's (`whisper/model.py`: AudioEncoder with
# conv1, conv2, positional_embedding, blocks.N.{attn.{query,key,value,out}, attn_ln, mlp.0, mlp.2, mlp_ln}, ln_post).
# Decoder weights keep transformers' names under `decoder.`: the importer drops every `decoder.*` without reading it.
_TO_OPENAI = (
    (r"model\.encoder\.embed_positions\.weight", "encoder.positional_embedding"),
    (r"model\.encoder\.(conv1|conv2)\.(.*)", r"encoder.\1.\2"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn\.q_proj\.(.*)", r"encoder.blocks.\1.attn.query.\2"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn\.k_proj\.(.*)", r"encoder.blocks.\1.attn.key.\2"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn\.v_proj\.(.*)", r"encoder.blocks.\1.attn.value.\2"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.(.*)", r"encoder.blocks.\1.attn.out.\2"),
    (r"model\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.(.*)", r"encoder.blocks.\1.attn_ln.\2"),
    (r"model\.encoder\.layers\.(\d+)\.fc1\.(.*)", r"encoder.blocks.\1.mlp.0.\2"),
    (r"model\.encoder\.layers\.(\d+)\.fc2\.(.*)", r"encoder.blocks.\1.mlp.2.\2"),
    (r"model\.encoder\.layers\.(\d+)\.final_layer_norm\.(.*)", r"encoder.blocks.\1.mlp_ln.\2"),
    (r"model\.encoder\.layer_norm\.(.*)", r"encoder.ln_post.\1"),
    (r"model\.decoder\.(.*)", r"decoder.\1"),
)


def _openai_state_dict(model) -> dict:
    state = {}
    for key, value in model.state_dict().items():
        if key == "proj_out.weight":  # tied to the token embedding in openai-whisper
            continue
        for pattern, replacement in _TO_OPENAI:
            if re.fullmatch(pattern, key):
                state[re.sub(pattern, replacement, key)] = value.clone()
                break
        else:
            raise KeyError(key)
    return state


@pytest.fixture(scope="module")
def openai_checkpoint(hf_whisper, tmp_path_factory) -> Path:
    _, model = hf_whisper
    config = model.config
    dims = {"n_mels": config.num_mel_bins, "n_vocab": config.vocab_size, "n_audio_ctx": config.max_source_positions,
            "n_audio_state": config.d_model, "n_audio_head": config.encoder_attention_heads,
            "n_audio_layer": config.encoder_layers, "n_text_ctx": config.max_target_positions,
            "n_text_state": config.d_model, "n_text_head": config.decoder_attention_heads,
            "n_text_layer": config.decoder_layers}
    path = tmp_path_factory.mktemp("openai") / "tiny.pt"
    torch.save({"dims": dims, "model_state_dict": _openai_state_dict(model)}, path)
    return path


def _convert(hf_folder: Path, out: Path, quantization: str | None) -> Path:
    """A faster-whisper folder (model.bin, config.json, vocabulary) written by ctranslate2's own converter."""
    converters = pytest.importorskip("ctranslate2.converters")
    converters.TransformersConverter(str(hf_folder)).convert(str(out), quantization=quantization, force=True)
    return out


@pytest.fixture(scope="module", params=[None, "float16", "int8"], ids=lambda q: q or "float32")
def ct2_folder(request, hf_whisper, tmp_path_factory) -> tuple[Path, str | None]:
    return _convert(hf_whisper[0], tmp_path_factory.mktemp(f"ct2_{request.param}"), request.param), request.param


@pytest.fixture(scope="module")
def ct2_float32(hf_whisper, tmp_path_factory) -> Path:
    return _convert(hf_whisper[0], tmp_path_factory.mktemp("ct2_float32"), None)


def _transformers_states(model, wav: torch.Tensor, max_length: int = 480000) -> list[torch.Tensor]:
    """WhisperFeatureExtractor (padded to `max_length` samples) + WhisperEncoder(output_hidden_states=True), one
    3,000-frame window at a time, windows concatenated."""
    from transformers import WhisperFeatureExtractor

    features = WhisperFeatureExtractor(feature_size=80)(wav.numpy(), sampling_rate=16000, return_tensors="pt",
                                                         padding="max_length", max_length=max_length, truncation=False)
    windows = features.input_features.split(3000, dim=-1)
    with torch.no_grad():
        outputs = [model.model.encoder(window, output_hidden_states=True).hidden_states for window in windows]
    return [torch.cat([states[layer][0] for states in outputs]) for layer in range(len(outputs[0]))]


def _max_error(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs))


# ---- parity -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_are_transformers(n_mels):
    from transformers import WhisperFeatureExtractor

    theirs = WhisperFeatureExtractor(feature_size=n_mels).mel_filters
    assert np.abs(mel_filters(n_mels).numpy() - theirs).max() < 1e-6


def test_pad_to_30s_matches_transformers_layer_by_layer(hf_whisper):
    folder, model = hf_whisper
    teacher = load_teacher(f"whisper-30s:{folder}")
    assert isinstance(teacher, WhisperTeacher) and teacher.pad_to_30s
    assert (teacher.family, teacher.num_layers, teacher.dim, teacher.downsample_rate) == ("whisper", 2, 64, 320)
    wavs = random_waveforms(LENGTHS, seed=1)
    out = teacher(wavs)  # one padded batch
    assert out.lengths.tolist() == [25, 65, 150] == whisper_frames(torch.tensor(LENGTHS)).tolist()
    for i, wav in enumerate(wavs):
        expected = _transformers_states(model, wav)
        assert len(out.hidden_states) == len(expected) == 3
        frames = int(out.lengths[i])
        error = _max_error([state[i, :frames] for state in out.hidden_states], [state[:frames] for state in expected])
        assert error < TOLERANCE, (i, error)


def test_openai_checkpoint_gives_the_same_states(hf_whisper, openai_checkpoint):
    folder, _ = hf_whisper
    wavs = random_waveforms(LENGTHS, seed=2)
    for mode in ("whisper", "whisper-30s"):
        ours, reference = load_teacher(f"{mode}:{openai_checkpoint}")(wavs), load_teacher(f"{mode}:{folder}")(wavs)
        assert torch.equal(ours.lengths, reference.lengths)
        assert _max_error(ours.hidden_states, reference.hidden_states) < 1e-6


def test_ctranslate2_model_bin_gives_the_same_states(hf_whisper, ct2_folder):
    """Our reader on ctranslate2's own files: against transformers within the storage precision, and against
    ctranslate2's own encoder (float32 compute, so it dequantises as we do) within float32 error, in both modes."""
    import ctranslate2

    (_, model), (ct2, quantization) = hf_whisper, ct2_folder
    assert any(alias.startswith("encoder/") for alias in CTranslate2File(ct2 / "model.bin").aliases)
    wavs = random_waveforms(LENGTHS, seed=3)
    teacher = load_teacher(f"whisper-30s:{ct2}")
    out = teacher(wavs)
    tolerance = TOLERANCE if quantization is None else QUANTIZED_TOLERANCE[quantization]
    for i, wav in enumerate(wavs):
        frames = int(out.lengths[i])
        expected = [state[:frames] for state in _transformers_states(model, wav)]
        scale = 1.0 if quantization is None else max(state.abs().max().item() for state in expected)
        assert _max_error([state[i, :frames] for state in out.hidden_states], expected) < tolerance * scale
    theirs = ctranslate2.models.Whisper(str(ct2), device="cpu", compute_type="float32", intra_threads=1)
    per_utterance = load_teacher(f"whisper:{ct2}")
    alone = per_utterance(wavs)
    for mode_teacher, mode_out in ((teacher, out), (per_utterance, alone)):
        for i, wav in enumerate(wavs):
            mel = mode_teacher.model.windows(wav, mode_teacher.pad_to_30s)[0]
            encoded = theirs.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()[None])))
            frames = int(mode_out.lengths[i])
            last = torch.from_numpy(np.array(encoded))[0, :frames]
            assert (mode_out.hidden_states[-1][i, :frames] - last).abs().max().item() < TOLERANCE


# ---- modes, padding, windows ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["whisper", "whisper-30s"])
def test_a_padded_batch_gives_each_utterance_what_it_gets_alone(hf_whisper, mode):
    folder, _ = hf_whisper
    teacher = load_teacher(f"{mode}:{folder}")
    wavs = random_waveforms(LENGTHS, seed=4)
    batch = teacher(wavs)
    for i, wav in enumerate(wavs):
        alone = teacher([wav])
        frames = int(alone.lengths[0])
        assert int(batch.lengths[i]) == frames
        assert _max_error([s[i, :frames] for s in batch.hidden_states], [s[0] for s in alone.hidden_states]) < 1e-5
        assert all(s[i, frames:].abs().sum() == 0 for s in batch.hidden_states)  # beyond the valid frames: zeros
    first_two = teacher(wavs, num_layers=1)  # the final LayerNorm belongs to the last layer only
    assert len(first_two.hidden_states) == 2
    assert _max_error(first_two.hidden_states, batch.hidden_states[:2]) < 1e-6


def test_per_utterance_differs_from_padded_but_has_the_same_frames(hf_whisper):
    folder, _ = hf_whisper
    wavs = random_waveforms((8000,), seed=5)
    alone, padded = load_teacher(f"whisper:{folder}")(wavs), load_teacher(f"whisper-30s:{folder}")(wavs)
    assert torch.equal(alone.lengths, padded.lengths) and alone.lengths.tolist() == [25]
    assert [s.shape for s in alone.hidden_states] == [s.shape for s in padded.hidden_states] == [(1, 25, 64)] * 3
    assert _max_error(alone.hidden_states, padded.hidden_states) > 1e-2  # attention over 25 frames, not 1,500


def test_recordings_longer_than_30s_run_in_30s_windows(hf_whisper):
    """45 s: pad_to_30s equals transformers' long-form features (one log-mel padded to 60 s, two 3,000-frame windows,
    each encoded alone); per utterance gives the same frame count."""
    folder, model = hf_whisper
    wav = random_waveforms((720_000,), seed=6)[0]
    padded = load_teacher(f"whisper-30s:{folder}")([wav])
    assert padded.lengths.tolist() == [2250] == whisper_frames(torch.tensor([720_000])).tolist()
    expected = [state[:2250] for state in _transformers_states(model, wav, max_length=960_000)]
    assert _max_error([state[0] for state in padded.hidden_states], expected) < TOLERANCE
    teacher = load_teacher(f"whisper:{folder}")
    alone = teacher([wav])
    assert alone.lengths.tolist() == [2250] and alone.hidden_states[-1].shape == (1, 2250, 64)
    assert bool(torch.isfinite(alone.hidden_states[-1]).all())
    # held-out fidelity says so
    assert long_files_notes(teacher, [720_000, 480_000, 16000]) == [
        "1 of 3 files (45.0 s) are longer than the teacher's 30 s window: the teacher ran them as consecutive 30 s "
        "windows, each without context from the others; the student ran them whole"]
    assert long_files_notes(teacher, [720_000, 16000], max_samples=480_000) == ["1 of 2 files cut to their first 30 s "
                                                                                "(15.0 s of audio left out)"]


def test_padding_gap(hf_whisper, tmp_path):
    folder, _ = hf_whisper
    short = random_waveforms((8000,), seed=7)[0]
    path = tmp_path / "short.wav"
    soundfile.write(path, short.numpy(), 16000)
    gap = padding_gap(f"whisper:{folder}", [path, short])
    assert gap["files"] == 2 and gap["frames"] == 50 and [row["layer"] for row in gap["layers"]] == [0, 1, 2]
    assert all(-1.0 <= row["cosine"] < 1.0 and row["relative_l1"] > 0.0 for row in gap["layers"])
    full = padding_gap(folder, random_waveforms((480_000,), seed=8))  # exactly 30 s: nothing to pad, no gap
    assert all(row["cosine"] > 1 - 1e-9 and row["relative_l1"] < 1e-9 for row in full["layers"])


# ---- specs, detection, errors -------------------------------------------------------------------------------------

def test_specs_and_detection(hf_whisper, openai_checkpoint, ct2_float32):
    folder, ct2 = hf_whisper[0], ct2_float32
    for spec, expected in ((str(folder), f"whisper:{folder}"), (f"hf:{folder}", f"whisper:{folder}"),
                           (str(openai_checkpoint), f"whisper:{openai_checkpoint}"), (str(ct2), f"whisper:{ct2}"),
                           (str(ct2 / "model.bin"), f"whisper:{ct2 / 'model.bin'}"),
                           (f"whisper-30s:{ct2}", f"whisper-30s:{ct2}")):
        teacher = load_teacher(spec)
        assert isinstance(teacher, WhisperTeacher) and teacher.spec == expected, spec
        assert teacher.pad_to_30s == expected.startswith("whisper-30s:")


def test_teacher_info(openai_checkpoint, capsys):
    assert cli(["teacher-info", f"whisper:{openai_checkpoint}"]) == 0
    out = capsys.readouterr().out
    assert "family: whisper" in out and "layers: 2" in out and "width: 64" in out


def test_a_student_distils_from_a_whisper_teacher(hf_whisper, tmp_path):
    """Whisper's frames (one per 320 samples) pair with the student CNN's; the student's geometry is given (a Whisper
    teacher has no CNN to copy)."""
    folder, _ = hf_whisper
    corpus = write_tone_corpus(tmp_path / "corpus", num_files=4)
    geometry = ("student.geometry={family: hubert, dim: 64, ffn_dim: 128, num_layers: 2, num_heads: 4, conv_pos: 16, "
                "conv_pos_groups: 4, conv_layers: [[64,10,5],[64,3,2],[64,3,2],[64,3,2],[64,3,2],[64,2,2],[64,2,2]]}")
    code = cli(["distill", "--config", "tiny_gendistiller", f"teacher=whisper:{folder}", geometry,
                "student.init_from_teacher=false", "student.target_layers=[1,2]", f"data.train={corpus}", "data.crop_samples=32000",
                "optim.total_steps=2", "run.progress=false", f"run.output_dir={tmp_path / 'run'}"])
    assert code == 0 and (tmp_path / "run" / "checkpoints" / "step_00000002.pt").is_file()


def _one_line_error(spec: str, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as error:
        load_teacher(spec)
    assert len(str(error.value).splitlines()) == 1, str(error.value)


def _ct2_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def test_broken_model_bin_files_give_one_line_errors(ct2_float32, tmp_path):
    data = (ct2_float32 / "model.bin").read_bytes()
    (tmp_path / "truncated.bin").write_bytes(data[: len(data) // 2])
    _one_line_error(f"whisper:{tmp_path / 'truncated.bin'}", "truncated CTranslate2 file")
    (tmp_path / "version.bin").write_bytes(struct.pack("<I", 99) + data[4:])
    _one_line_error(f"whisper:{tmp_path / 'version.bin'}", "CTranslate2 binary version 99 is not supported")
    other = struct.pack("<I", 6) + _ct2_string("TransformerSpec") + struct.pack("<III", 1, 0, 0)
    (tmp_path / "other.bin").write_bytes(other)
    _one_line_error(str(tmp_path / "other.bin"), "a CTranslate2 TransformerSpec model, not a Whisper model")


def test_a_pt_without_dims_gives_a_one_line_error(openai_checkpoint, tmp_path):
    state = torch.load(openai_checkpoint, weights_only=True)["model_state_dict"]
    torch.save({"model_state_dict": state}, tmp_path / "no_dims.pt")
    _one_line_error(f"whisper:{tmp_path / 'no_dims.pt'}", "expected a dict with `dims` and `model_state_dict`")
    with pytest.raises(CheckpointError, match="not a Whisper model"):
        load_teacher(f"whisper:{tmp_path / 'missing'}")

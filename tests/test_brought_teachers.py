"""Teachers users bring: HuggingFace folders (parity with transformers' own models), s3prl upstreams on mixed-length
recordings (frame alignment), a custom nn.Module from the command line, and one-line errors for what cannot work."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from torch import nn

from distill.cli import main as cli
from distill.models import GenDistillerConfig
from distill.nn.components import FeatureExtractor, valid_mask
from distill.teachers import FrameAlignmentError, ModuleTeacher, TeacherOutput, load_teacher
from distill.teachers.base import MAX_FRAME_DIFFERENCE, align_to_student
from distill.training.trainer import DistillConfig, prepare_student
from tests.conftest import random_waveforms

LENGTHS = (16000, 23456, 9001)
TOLERANCE = 1e-4
# The tiny teacher's student geometry, for teachers that are not checkpoints (no geometry to copy).
TINY_GEOMETRY = ("student.geometry={family: hubert, dim: 96, ffn_dim: 192, num_layers: 4, num_heads: 4, conv_pos: 16, "
                 "conv_pos_groups: 4, conv_layers: [[64,10,5],[64,3,2],[64,3,2],[64,3,2],[64,3,2],[64,2,2],[64,2,2]]}")


# ---- HuggingFace ------------------------------------------------------------------------------------------

def _hf_model(family: str, large: bool):
    """A tiny transformers model with random weights; relative-position and gate weights scaled up so that a wrong
    bucket, gate or position bias would show."""
    import transformers

    classes = {"wavlm": ("WavLMConfig", "WavLMModel"), "hubert": ("HubertConfig", "HubertModel"),
               "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model")}
    config_class, model_class = (getattr(transformers, name) for name in classes[family])
    options = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(32,) * 7,
                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, hidden_dropout=0.0,
                   attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
    if family == "wavlm":
        options.update(num_buckets=16, max_bucket_distance=40)
    if large:
        options.update(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    torch.manual_seed(7)
    model = model_class(config_class(**options)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "rel_attn_embed" in name:
                parameter.normal_(0.0, 5.0)
            elif "gru_rel_pos" in name:
                parameter.normal_(0.0, 1.0)
            elif name.endswith("layer_norm.weight"):
                parameter.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module", params=[(f, large) for f in ("wavlm", "hubert", "wav2vec2") for large in (False, True)],
                ids=lambda p: f"{p[0]}-{'large' if p[1] else 'base'}")
def hf_folder(request, tmp_path_factory) -> tuple[Path, object, bool]:
    from transformers import Wav2Vec2FeatureExtractor

    family, large = request.param
    folder = tmp_path_factory.mktemp(f"hf_{family}_{large}")
    model = _hf_model(family, large)
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=large).save_pretrained(folder)  # Large models normalise the waveform
    return folder, model, large


def test_hf_teacher_matches_transformers_per_utterance(hf_folder):
    folder, reference, normalize = hf_folder
    from transformers import Wav2Vec2FeatureExtractor

    processor = Wav2Vec2FeatureExtractor.from_pretrained(folder)
    teacher = load_teacher(str(folder))  # a folder with config.json is recognised
    assert teacher.spec == f"hf:{folder}" and teacher.num_layers == 2 and teacher.dim == 32
    wavs = random_waveforms(LENGTHS, seed=11)
    batch = teacher(wavs)  # ours runs the utterances as one padded batch
    for i, wav in enumerate(wavs):
        inputs = torch.from_numpy(processor(wav.numpy(), sampling_rate=16000, return_tensors="np").input_values)
        with torch.no_grad():
            expected = reference(inputs, output_hidden_states=True).hidden_states
        frames = int(batch.lengths[i])
        assert len(batch.hidden_states) == len(expected) == 3
        for layer, (ours, theirs) in enumerate(zip(batch.hidden_states, expected)):
            assert theirs.shape[1] == frames
            error = (ours[i, :frames] - theirs[0]).abs().max().item()
            assert error < TOLERANCE, (layer, error)


def test_hf_prefix_and_teacher_info(hf_folder, capsys):
    folder, reference, _ = hf_folder
    assert load_teacher(f"hf:{folder}").num_parameters() > 0
    assert cli(["teacher-info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"spec: hf:{folder}" in out and f"parameters: {sum(p.numel() for p in reference.parameters()):,}" in out


def test_student_initialised_from_hf_teacher_has_its_front_end(hf_folder):
    folder, _, _ = hf_folder
    teacher = load_teacher(str(folder))
    config = DistillConfig(teacher=str(folder))
    config.student = GenDistillerConfig(target_layers=[1, 2], dropout=0.0)
    student = prepare_student(config, teacher).eval()
    wavs = random_waveforms((12000, 20000), seed=5)
    ours, theirs = student.infer(wavs), teacher(wavs)
    assert torch.equal(ours.lengths, theirs.lengths)
    mask = valid_mask(ours.lengths, ours.hidden_states[0].shape[1])
    assert (ours.hidden_states[0] - theirs.hidden_states[0])[mask].abs().max().item() < 1e-5


def test_not_a_hf_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert' is not supported"):
        load_teacher(str(tmp_path))
    with pytest.raises(ValueError, match="not a HuggingFace model folder"):
        load_teacher(f"hf:{tmp_path / 'missing'}")


# ---- frame alignment --------------------------------------------------------------------------------------

def test_alignment_trims_to_the_shorter_and_refuses_larger_gaps():
    states = [torch.ones(2, 6, 3)]
    aligned = align_to_student(TeacherOutput(states, torch.tensor([6, 4])), torch.tensor([5, 5]), 5)
    assert aligned.lengths.tolist() == [5, 4] and aligned.hidden_states[0].shape == (2, 5, 3)
    assert aligned.hidden_states[0][1, 4:].abs().sum() == 0  # beyond the teacher's frames: zeros
    with pytest.raises(FrameAlignmentError, match=f"by more than {MAX_FRAME_DIFFERENCE}"):
        align_to_student(TeacherOutput(states, torch.tensor([6, 1])), torch.tensor([5, 5]), 5)


@pytest.fixture(scope="module")
def mixed_lengths(tmp_path_factory) -> Path:
    """Recordings of 0.5 to 10 s, as a user's folder holds them."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for i, seconds in enumerate((0.5, 1.3, 2.0, 3.7, 6.1, 10.0)):
        n = int(seconds * 16000)
        t = np.arange(n) / 16000
        wav = 0.1 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.01 * rng.standard_normal(n)
        soundfile.write(root / f"utt{i}.wav", wav.astype("float32"), 16000)
    return root


def _distill_cli(tmp_path: Path, teacher: str, data: Path, *extra: str) -> int:
    return cli(["distill", "--config", "tiny_gendistiller", f"teacher={teacher}", "student.init_from_teacher=false",
                f"data.train={data}", "data.crop_samples=32000", "optim.total_steps=2", "run.progress=false",
                f"run.output_dir={tmp_path / 'run'}", *extra])


def test_s3prl_upstream_teacher_on_mixed_lengths(tmp_path, tiny_wavlm_path, mixed_lengths):
    """The issue's command: s3prl's own wavlm_local counts round(samples / 320) frames, one more than the student's
    CNN on a 2 s crop; the frames are aligned and it trains."""
    spec = f"s3prl:wavlm_local:{tiny_wavlm_path}"
    # s3prl's rule, round(samples / 320) capped at the batch's frames, against the CNN's 1 + (samples - 400) // 320:
    assert load_teacher(spec)(random_waveforms([32000, 20200])).lengths.tolist() == [99, 63]  # the student: [99, 62]
    assert _distill_cli(tmp_path, spec, mixed_lengths, TINY_GEOMETRY) == 0
    assert (tmp_path / "run" / "checkpoints" / "step_00000002.pt").is_file()


class ToyTeacher(nn.Module):
    """A user's own teacher: a small CNN at `hop` samples per frame and two linear layers; waveforms in, states out."""

    def __init__(self, hop: int = 320, dim: int = 96, extra_frames: int = 0):
        super().__init__()
        torch.manual_seed(0)
        strides = [5, 2, 2, 2, 2, 2, 2] if hop == 320 else [5, 2, 2, 2, 2, 2]
        self.cnn = FeatureExtractor([(32, 10, strides[0])] + [(32, 3, s) for s in strides[1:]])
        self.project = nn.Linear(32, dim)
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(2))
        self.downsample_rate, self.extra_frames = hop, extra_frames

    def forward(self, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
        lengths = torch.tensor([len(w) for w in wavs])
        x, frames = self.cnn(nn.utils.rnn.pad_sequence(wavs, batch_first=True), lengths)
        states = [self.project(x)]
        for layer in self.layers:
            states.append(torch.tanh(layer(states[-1])))
        mask = valid_mask(frames, states[0].shape[1])[..., None]
        states = [s * mask for s in states]
        return [nn.functional.pad(s, (0, 0, 0, self.extra_frames)) for s in states]


def make_toy_teacher() -> nn.Module:
    return ToyTeacher(extra_frames=1)


def make_160_hop_teacher() -> nn.Module:
    return ToyTeacher(hop=160)


def test_custom_module_teacher_from_the_command_line(tmp_path, mixed_lengths):
    code = _distill_cli(tmp_path, "module:tests.test_brought_teachers:make_toy_teacher", mixed_lengths, TINY_GEOMETRY,
                        "student.target_layers=[1,2]")
    assert code == 0 and (tmp_path / "run" / "checkpoints" / "step_00000002.pt").is_file()


def test_custom_module_teacher_from_python(tmp_path, mixed_lengths):
    from distill.training.trainer import load_config, train

    config = load_config("tiny_distilhubert", ["student.init_from_teacher=false", TINY_GEOMETRY, "student.target_layers=[1,2]",
                                               f"data.train={mixed_lengths}", "optim.total_steps=2", "run.progress=false",
                                               f"run.output_dir={tmp_path}"])
    last = train(config, teacher=ModuleTeacher(ToyTeacher(), spec="toy"))
    assert last.is_file()


@pytest.mark.parametrize("teacher, extra, message", [
    ("module:tests.test_brought_teachers:make_160_hop_teacher", ["student.target_layers=[1,2]"],
     "gives a frame every 160 samples, the student every 320"),
    ("s3prl:fbank", [], "the teacher s3prl:fbank gives a frame every 160 samples, the student every 320"),
    ("module:tests.test_brought_teachers:make_toy_teacher", ["student.target_layers=[2,3]"],
     "ask for layers the teacher module:tests.test_brought_teachers:make_toy_teacher lacks: it has 2"),
    ("module:tests.test_brought_teachers:make_toy_teacher",
     [TINY_GEOMETRY.replace("dim: 96", "dim: 64"), "student.target_layers=[1,2]"], "the student is 64 wide but"),
    ("module:tests.test_brought_teachers:no_such_factory", [], "cannot import no_such_factory"),
])
def test_teachers_that_cannot_work_get_one_line_errors(tmp_path, mixed_lengths, capsys, teacher, extra, message):
    geometry = [] if any(item.startswith("student.geometry") for item in extra) else [TINY_GEOMETRY]
    assert _distill_cli(tmp_path, teacher, mixed_lengths, *geometry, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err

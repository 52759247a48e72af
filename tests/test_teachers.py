"""Teachers against the references we did not write: s3prl's WavLM expert and fairseq's own models."""
import subprocess
import sys

import pytest
import torch

from distill.io.audio import AudioError
from distill.nn.components import MaskedGroupNorm, conv_output_lengths
from distill.teachers import CheckpointError, load_teacher
from distill.teachers.tiny import TINY_WAVLM_CFG, WAVLM_BASE_PLUS_CFG, build_reference_wavlm, write_wavlm_checkpoint
from tests.conftest import random_waveforms

LENGTHS = (16000, 11237, 5003)
TOLERANCE = 1e-4


def s3prl_wavlm_hidden_states(ckpt_path, wav):
    from s3prl.upstream.wavlm.expert import UpstreamExpert

    expert = UpstreamExpert(str(ckpt_path)).eval()
    with torch.no_grad():
        return expert([wav])["hidden_states"]


def assert_matches_alone(ours, reference_alone):
    """ours: TeacherOutput of a padded batch; reference_alone[i]: list of (1, T_i, D) states of utterance i."""
    for i, reference in enumerate(reference_alone):
        frames = int(ours.lengths[i])
        assert frames == reference[0].shape[1]
        assert len(ours.hidden_states) == len(reference)
        for layer, (mine, theirs) in enumerate(zip(ours.hidden_states, reference)):
            error = (mine[i, :frames] - theirs[0]).abs().max().item()
            assert error < TOLERANCE, f"utterance {i} layer {layer}: max abs error {error}"


def _make_position_terms_matter(path):
    """Random init leaves the relative position bias and its gate too small to show up within 1e-4;
    scale them the way training does so a wrong bucket or gate formula fails the parity test."""
    checkpoint = torch.load(path)
    generator = torch.Generator().manual_seed(7)
    for name, value in checkpoint["model"].items():
        if name.endswith("relative_attention_bias.weight"):
            value.mul_(30.0)
        elif name.endswith("grep_a"):
            value.copy_(0.5 + 1.5 * torch.rand(value.shape, generator=generator))
        elif "grep_linear" in name:
            value.copy_(torch.randn(value.shape, generator=generator))
    torch.save(checkpoint, path)


@pytest.mark.parametrize("variant", ["base_plus_like", "large_like"])
def test_wavlm_matches_s3prl_reference_per_utterance(tmp_path, variant):
    cfg = dict(TINY_WAVLM_CFG)
    if variant == "large_like":  # pre-LN, LayerNorm CNN with bias, waveform normalisation, no gating
        cfg.update(layer_norm_first=True, extractor_mode="layer_norm", conv_bias=True, normalize=True, gru_rel_pos=False)
    path = write_wavlm_checkpoint(tmp_path / "wavlm.pt", cfg, seed=3)
    _make_position_terms_matter(path)
    teacher = load_teacher(str(path))
    wavs = random_waveforms(LENGTHS)
    ours = teacher(wavs)
    reference = [s3prl_wavlm_hidden_states(path, wav) for wav in wavs]
    assert_matches_alone(ours, reference)


def test_padding_invariance_and_frame_counts(tiny_wavlm_path):
    teacher = load_teacher(str(tiny_wavlm_path))
    wavs = random_waveforms(LENGTHS + (48000,), seed=1)
    batch = teacher(wavs)
    for i, wav in enumerate(wavs):
        alone = teacher([wav])
        frames = int(alone.lengths[0])
        assert frames == int(batch.lengths[i])
        # frames follow the CNN exactly and s3prl's downsample rate of 320 up to the 400-sample window
        assert frames == int(conv_output_lengths(torch.tensor([wav.numel()]), teacher.model.config.conv_layers)[0])
        assert abs(frames - round(wav.numel() / 320)) <= 1
        for layer in range(len(batch.hidden_states)):
            diff = (batch.hidden_states[layer][i, :frames] - alone.hidden_states[layer][0]).abs().max().item()
            assert diff < TOLERANCE, f"utterance {i} layer {layer} changes with the batch by {diff}"


def test_s3prl_reference_is_not_padding_invariant(tiny_wavlm_path):
    """Why we normalise over valid samples only: s3prl's GroupNorm sees the padding."""
    from s3prl.upstream.wavlm.expert import UpstreamExpert

    expert = UpstreamExpert(str(tiny_wavlm_path)).eval()
    short, long = random_waveforms((8000, 48000), seed=2)
    with torch.no_grad():
        alone = expert([short])["hidden_states"][-1]
        batched = expert([short, long])["hidden_states"][-1][:1, : alone.shape[1]]
    assert (alone - batched).abs().max().item() > 1e-3


def test_masked_group_norm_is_per_utterance_and_keeps_only_its_input():
    torch.manual_seed(0)
    norm = MaskedGroupNorm(8, 8)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(3, 8, 50, requires_grad=True)
    lengths = torch.tensor([50, 30, 0])
    saved: dict[int, int] = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = norm(x, lengths)
    for i, length in enumerate(lengths.tolist()[:2]):
        alone = torch.nn.functional.group_norm(x[i:i + 1, :, :length], 8, norm.weight, norm.bias, norm.eps)
        assert torch.equal(out[i:i + 1, :, :length], alone)
        assert torch.equal(norm(x[i:i + 1, :, :length], lengths[i:i + 1]), alone)
    assert not out[1, :, 30:].any() and not out[2].any()  # padding and an empty utterance: zeros
    # Activation memory: the valid samples and per-channel statistics; nothing of the padding, no masked copies.
    assert sum(saved.values()) < 1.2 * int(lengths.sum()) * 8 * x.element_size()
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and not x.grad[1, :, 30:].any()


def test_teacher_is_frozen_and_in_eval(tiny_wavlm_path):
    teacher = load_teacher(str(tiny_wavlm_path))
    teacher.train()
    assert not teacher.training and not teacher.model.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert teacher.family == "wavlm" and teacher.num_layers == 4 and teacher.dim == 96


def test_base_plus_parameter_count_matches_s3prl(tmp_path):
    reference = build_reference_wavlm(WAVLM_BASE_PLUS_CFG)
    assert sum(p.numel() for p in reference.parameters()) == 94_381_936
    path = tmp_path / "base_plus.pt"
    torch.save({"cfg": WAVLM_BASE_PLUS_CFG, "model": reference.state_dict()}, path)
    del reference
    out = subprocess.run([sys.executable, "-m", "distill.cli", "teacher-info", str(path)], capture_output=True, text=True, check=True).stdout
    assert "family: wavlm" in out and "layers: 12" in out and "width: 768" in out
    assert "parameters: 94,381,936" in out


# ---- bad input -----------------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_teacher(str(tmp_path / "nope.pt"))


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_teacher(str(path))


def test_unknown_family(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_teacher(str(path))


def test_wrong_family_prefix(tiny_wavlm_path):
    with pytest.raises(CheckpointError, match="expected a hubert checkpoint, found a wavlm checkpoint"):
        load_teacher(f"hubert:{tiny_wavlm_path}")


@pytest.mark.parametrize(
    "wavs, kwargs, message",
    [
        ([torch.zeros(2, 16000)], {}, "1-D mono"),
        ([torch.zeros(0)], {}, "too short"),
        ([], {}, "non-empty list"),
        ([torch.zeros(16000)], {"sample_rate": 8000}, "16000 Hz"),
    ],
)
def test_bad_audio(tiny_wavlm_path, wavs, kwargs, message):
    teacher = load_teacher(str(tiny_wavlm_path))
    with pytest.raises(AudioError, match=message):
        teacher(wavs, **kwargs)

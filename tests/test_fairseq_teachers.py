"""fairseq HuBERT / wav2vec 2.0 teachers against fairseq's own models.

Checkpoints are written in the real fairseq format by fairseq's classes (tests/fairseq_checkpoints.py); our
`load_teacher` imports them into `SSLModel`, and every hidden state of a padded batch must match fairseq run
on each utterance alone (no padding mask), within 1e-4 max-abs in fp32.
"""
import shutil

import pytest
import torch
import torch.nn.functional as F

from distill.teachers import CheckpointError, load_teacher
from tests.conftest import random_waveforms

pytest.importorskip("fairseq", reason="fairseq teachers need fairseq (fairseq-fixed==0.12.3.1)")

from tests.fairseq_checkpoints import write_fairseq_checkpoint  # noqa: E402

LENGTHS = (16000, 11237, 5003)
TOLERANCE = 1e-4

# (family, variant) -> checkpoint options. base_like: post-LN, GroupNorm CNN; large_like: pre-LN, LayerNorm
# CNN with bias, waveform normalisation.
VARIANTS = {
    "base_like": {},
    "large_like": {"layer_norm_first": True, "extractor_mode": "layer_norm", "conv_bias": True, "normalize": True},
}
CASES = [(family, variant) for family in ("hubert", "wav2vec2") for variant in VARIANTS]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("fairseq")
    return {
        (family, variant): write_fairseq_checkpoint(root / f"{family}_{variant}.pt", family, seed=11, **VARIANTS[variant])
        for family, variant in CASES
    }


def load_fairseq(path):
    """fairseq's own loader, independent of ours; returns (model in eval mode, task normalize flag)."""
    from fairseq import checkpoint_utils

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    return models[0].eval(), bool(task.cfg.normalize)


@torch.no_grad()
def fairseq_hidden_states(model, wav, normalize):
    """All states [0..N] of one utterance, alone, through fairseq's public `extract_features`, each (1, T, D)."""
    source = wav[None]
    if normalize:
        source = F.layer_norm(source, source.shape[1:])
    hubert = type(model).__name__ == "HubertModel"
    num_layers = len(model.encoder.layers)
    pre_ln = model.encoder.layer_norm_first

    def run(layer):  # layer: 1-based index of the wanted output, or None (all layers + final LN for pre-LN)
        if hubert:
            return model.extract_features(source, padding_mask=None, mask=False, output_layer=layer)[0]
        return model.extract_features(source, None, mask=False, layer=None if layer is None else layer - 1)["x"]

    # Layer 0 (input of the first transformer layer) is not an output of extract_features: hook it.
    captured = []
    hook = model.encoder.layers[0].register_forward_pre_hook(lambda module, args: captured.append(args[0].transpose(0, 1)))
    try:
        first = run(1)
    finally:
        hook.remove()
    frames = first.shape[1]
    states = [captured[0][:, :frames], first]  # wav2vec 2.0 pads the encoder input to an even length
    states += [run(layer) for layer in range(2, num_layers)]
    # post-LN: output_layer=N is the last layer's output. pre-LN: only a full run (no layer requested)
    # applies the final encoder LayerNorm, which our last state includes.
    states.append(run(None) if pre_ln else run(num_layers))
    if not pre_ln:
        assert (run(None) - states[-1]).abs().max().item() == 0.0
    return states


def max_errors(ours, reference_alone):
    """Per (utterance, layer) max-abs error of a padded batch against per-utterance references; checks frames."""
    errors = {}
    for i, reference in enumerate(reference_alone):
        frames = int(ours.lengths[i])
        assert frames == reference[0].shape[1], f"utterance {i}: {frames} frames, fairseq gives {reference[0].shape[1]}"
        assert len(ours.hidden_states) == len(reference)
        for layer, (mine, theirs) in enumerate(zip(ours.hidden_states, reference)):
            assert theirs.shape[1] == frames
            errors[i, layer] = (mine[i, :frames] - theirs[0]).abs().max().item()
    return errors


@pytest.fixture(scope="module")
def references(checkpoints):
    """fairseq's states for each case, computed once: {case: (wavs, [per-utterance state lists])}."""
    wavs = random_waveforms(LENGTHS, seed=5)
    out = {}
    for case, path in checkpoints.items():
        model, normalize = load_fairseq(path)
        assert normalize == VARIANTS[case[1]].get("normalize", False)
        out[case] = [fairseq_hidden_states(model, wav, normalize) for wav in wavs]
    return wavs, out


@pytest.mark.parametrize("family, variant", CASES)
def test_matches_fairseq_per_utterance(checkpoints, references, family, variant):
    teacher = load_teacher(str(checkpoints[family, variant]))
    assert teacher.family == family and teacher.num_layers == 3 and teacher.dim == 64
    config = teacher.model.config
    options = VARIANTS[variant]
    assert config.layer_norm_first == options.get("layer_norm_first", False)
    assert config.normalize == options.get("normalize", False)
    assert config.extractor_mode == options.get("extractor_mode", "default")
    wavs, reference = references
    ours = teacher(wavs)
    assert len(ours.hidden_states) == 4
    errors = max_errors(ours, reference[family, variant])
    bad = {key: error for key, error in errors.items() if not error < TOLERANCE}
    assert not bad, f"(utterance, layer) -> max abs error above {TOLERANCE}: {bad}"


@pytest.mark.parametrize("family, variant", CASES)
def test_comparison_is_sensitive(checkpoints, references, family, variant):
    """The parity test can fail: layers differ far above the tolerance, and a small change to one imported
    weight (one bias entry of the last layer's FFN, by 1e-3) is detected."""
    wavs, reference = references
    states = reference[family, variant][0]
    for a in range(len(states)):
        for b in range(a + 1, len(states)):
            assert (states[a] - states[b]).abs().max().item() > 1e-2, f"layers {a} and {b} are nearly equal"
    teacher = load_teacher(str(checkpoints[family, variant]))
    with torch.no_grad():
        teacher.model.encoder.layers[-1].fc2.bias[0] += 1e-3
    errors = max_errors(teacher(wavs), reference[family, variant])
    assert all(errors[i, layer] < TOLERANCE for i in range(len(wavs)) for layer in range(3))
    assert all(errors[i, 3] > TOLERANCE for i in range(len(wavs)))


def test_hubert_loads_without_its_label_dir(tmp_path):
    """Downloaded HuBERT checkpoints name a label_dir that does not exist here; the loader writes a stand-in
    dict.km.txt sized from label_embs_concat."""
    path = write_fairseq_checkpoint(tmp_path / "ckpt" / "hubert.pt", "hubert", label_dir=tmp_path / "labels", seed=3)
    wavs = random_waveforms(LENGTHS[1:], seed=6)
    with_labels = load_teacher(str(path))(wavs)
    shutil.move(str(tmp_path / "labels"), str(tmp_path / "moved"))
    assert not (tmp_path / "labels").exists()
    teacher = load_teacher(f"hubert:{path}")
    assert teacher.family == "hubert" and teacher.num_layers == 3
    without_labels = teacher(wavs)
    assert torch.equal(with_labels.lengths, without_labels.lengths)
    for mine, theirs in zip(with_labels.hidden_states, without_labels.hidden_states):
        assert torch.equal(mine, theirs)
    shutil.rmtree(tmp_path / "moved")
    load_teacher(str(path))


def test_wrong_family_prefix_names_both(checkpoints):
    path = checkpoints["hubert", "base_like"]
    with pytest.raises(CheckpointError, match="expected a wavlm checkpoint, found a hubert checkpoint"):
        load_teacher(f"wavlm:{path}")
    with pytest.raises(CheckpointError, match="expected a wav2vec2 checkpoint, found a hubert checkpoint"):
        load_teacher(f"wav2vec2:{path}")


def test_source_parameter_count_is_fairseqs(checkpoints):
    """`source_parameters` counts fairseq's model (incl. pre-training heads); ours drops only those heads."""
    for case, path in checkpoints.items():
        teacher = load_teacher(str(path))
        model, _ = load_fairseq(path)
        assert teacher.source_parameters == sum(p.numel() for p in model.parameters())
        heads = sum(p.numel() for name, p in model.named_parameters()
                    if name.split(".")[0] in ("mask_emb", "label_embs_concat", "final_proj", "project_q", "quantizer"))
        assert teacher.num_parameters() == teacher.source_parameters - heads, case

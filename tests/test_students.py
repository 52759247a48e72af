"""Students: parameter budgets, teacher-free inference, padding invariance, history modes."""
from dataclasses import replace

import pytest
import torch

from benchmarks.budget import shares
from distill.io.audio import pad_waveforms
from distill.models import (
    DistilHuBERTConfig,
    GenDistillerConfig,
    StudentConfig,
    TeacherFacts,
    build_student,
    distilhubert_base_config,
    gendistiller_base_config,
    resolve_student,
    student_config,
)
from distill.models.resolve import EARLY_STEP_FFN_RATIO
from distill.nn.components import valid_mask
from distill.teachers import load_teacher
from distill.training.trainer import DistillConfig, prepare_student
from tests.conftest import random_waveforms

WAVLM_BASE_PLUS_PARAMS = 94.70e6


def count(config: StudentConfig) -> int:
    """The student's parameters, built and counted (on the meta device: no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_student(config).parameters())


def test_parameter_budgets_for_768_wide_teacher():
    gendistiller, baseline = count(gendistiller_base_config()), count(distilhubert_base_config())
    assert baseline == 27_034_752  # s3prl's DistillerModel with pred_layer_id [4, 8, 12]
    assert gendistiller == 17_001_856  # 16,997,248 in one shared-projection design (gendistiller-v0) + 3 output LayerNorms
    assert gendistiller <= 0.18 * WAVLM_BASE_PLUS_PARAMS
    assert gendistiller <= 0.67 * baseline  # at least 33% fewer parameters


def test_early_step_blocks_fit_the_budget_only_with_a_narrowed_front_end():
    """step_ffn_dims auto: with a narrowed front-end (128 channels, as Whisper teachers need) the early steps' blocks
    keep GenDistiller within 67% of DistilHuBERT's parameters from Whisper base to medium (pre-LN, no LayerNorms; 66.9%
    on base, the student of BENCHMARKS.md, "A real teacher: Whisper base"); with the teacher's CNN copied they would not, so auto leaves them out."""
    def share(dim: int, num_layers: int, front_end_channels: int, step_ffn_dims: str | list) -> float:
        geometry = {**gendistiller_base_config().geometry, "dim": dim, "ffn_dim": 4 * dim, "num_heads": dim // 64,
                    "num_layers": num_layers}
        options = dict(geometry=geometry, target_layers=[num_layers // 3, 2 * num_layers // 3, num_layers],
                       front_end_channels=front_end_channels, cnn_grad_mult=1.0 if front_end_channels else 0.1)
        ours = GenDistillerConfig(step_ffn_dims=step_ffn_dims, **options)
        theirs = DistilHuBERTConfig(**options)
        ours, theirs = (resolve_student(config, replace(TeacherFacts.implied_by(config), layers_end_in_layer_norm=False))
                        for config in (ours, theirs))
        return count(ours) / count(theirs)

    assert round(share(512, 6, 128, "auto"), 3) == 0.669  # 6,898,048 / 10,309,248
    for dim, num_layers in ((768, 12), (1024, 24)):
        assert 0.6 < share(dim, num_layers, 128, "auto") <= 0.67
        assert share(dim, num_layers, 0, "early") > 0.67 and share(dim, num_layers, 0, "auto") <= 0.67


@pytest.mark.parametrize("pre_ln", [False, True])
@pytest.mark.parametrize("dim", [256, 384, 512, 768, 1024])
def test_auto_keeps_the_budget_at_every_width(dim, pre_ln):
    """step_ffn_dims auto sizes the early steps' blocks from the budget (at most 0.75·D): with a narrowed front-end
    GenDistiller stays within 67% of DistilHuBERT's parameters at every width and depth, pre-LN or post-LN teacher.
    With the teacher's CNN copied, auto adds no blocks: GenDistiller is then within 67% from 768 wide (three or more
    layers); narrower teachers' 512-channel CNN alone takes it past (the README says to narrow the front-end there)."""
    for num_layers in (2, 3, 4, 6, 12, 24):
        narrowed, _, sizes = shares(dim, num_layers, 128, pre_ln)
        assert narrowed <= 0.67, (dim, num_layers, narrowed)
        assert sizes[-1] == 0 and 0 < max(sizes) <= round(0.75 * dim), sizes
        copied, copied_bare, copied_sizes = shares(dim, num_layers, 0, pre_ln)
        assert copied_sizes == [] and copied == copied_bare
        if dim >= 768 and num_layers >= 3:
            assert copied <= 0.67, (dim, num_layers, copied)


def test_training_states_the_share_and_warns_over_the_budget(tiny_wavlm_path):
    """The run's announcement gives GenDistiller's share of the matching DistilHuBERT (the students built and
    counted) and, over the budget, a warning that names what to change."""
    from distill.models.resolve import share_of_distilhubert
    from distill.training.trainer import _budget_note, load_config, teacher_facts

    teacher = load_teacher(str(tiny_wavlm_path))
    student = load_config("tiny_gendistiller", [f"teacher={tiny_wavlm_path}", "data.train=unused"]).student
    built = {config.kind: count(resolve_student(config, teacher_facts(teacher)))
             for config in (student, DistilHuBERTConfig(target_layers=student.target_layers, geometry=student.geometry))}
    share = share_of_distilhubert(student, teacher_facts(teacher))
    assert share == built["gendistiller"] / built["distilhubert"] and share < 0.67
    assert _budget_note(student, teacher) == f" ({100 * share:.1f}% of the DistilHuBERT of this teacher and front-end)"
    wide_blocks = replace(student, step_ffn_dims=[4 * 96, 4 * 96, 0])
    assert share_of_distilhubert(wide_blocks, teacher_facts(teacher)) > 0.67
    assert "warning: over the 67% budget" in _budget_note(wide_blocks, teacher)
    assert "student.front_end_channels" in _budget_note(wide_blocks, teacher)
    one_layer = GenDistillerConfig(geometry={**student.geometry, "num_layers": 1}, target_layers=[1])
    assert 0 < share_of_distilhubert(one_layer, TeacherFacts.implied_by(one_layer)) < 1  # DistilHuBERT copies 2 layers


def test_baseline_count_matches_s3prl_distiller_model():
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    reference = DistillerModel(DistillerConfig({
        "extractor_mode": "default", "encoder_layers": 2, "n_tasks": 3, "task_emb_type": "expand-last",
        "out_layer_type": "expand-last", "pred_layer_id": [4, 8, 12], "layer_emb_size": 0, "final_dim": 768,
    }))
    assert sum(p.numel() for p in reference.parameters()) == count(distilhubert_base_config())


def test_unshared_generator_costs_one_block_per_step():
    shared, unshared = count(gendistiller_base_config()), count(gendistiller_base_config(share_generator=False))
    assert unshared - shared == 2 * 7_087_872


@pytest.fixture(scope="module")
def tiny_students(tiny_wavlm_path):
    teacher = load_teacher(str(tiny_wavlm_path))
    students = {}
    for kind, extra in [("gendistiller", {}), ("gendistiller_2d", {"attention_2d": True}), ("distilhubert", {})]:
        config = DistillConfig(teacher=str(tiny_wavlm_path))
        config.student = student_config(kind.split("_")[0], target_layers=[2, 3, 4], dropout=0.0, **extra)
        torch.manual_seed(0)
        students[kind] = prepare_student(config, teacher).eval()
    return teacher, students


@pytest.mark.parametrize("kind", ["gendistiller", "gendistiller_2d", "distilhubert"])
def test_inference_is_teacher_free_and_padding_invariant(tiny_students, kind):
    _, students = tiny_students
    student = students[kind]
    wavs = random_waveforms((16000, 9000, 4000), seed=4)
    batch = student.infer(wavs)
    # GenDistiller: h0, then (update, layer) per step; DistilHuBERT: front-end, 2 layers, 3 heads
    expected_states = 1 + 2 * 3 if kind.startswith("gendistiller") else 1 + 2 + 3
    assert len(batch.hidden_states) == expected_states and len(batch.predictions) == 3
    for i, wav in enumerate(wavs):
        alone = student.infer([wav])
        frames = int(alone.lengths[0])
        assert frames == int(batch.lengths[i])
        for mine, theirs in zip(batch.hidden_states, alone.hidden_states):
            assert (mine[i, :frames] - theirs[0]).abs().max().item() < 1e-4
            if mine.shape[1] > frames:
                assert mine[i, frames:].abs().max().item() == 0  # padding is zeroed


def test_front_end_copied_from_teacher(tiny_students):
    teacher, students = tiny_students
    wavs = random_waveforms((12000,), seed=5)
    h0 = students["gendistiller"].infer(wavs).hidden_states[0]
    assert (h0 - teacher(wavs).hidden_states[0]).abs().max().item() < 1e-5


@pytest.mark.parametrize("kind", ["gendistiller", "gendistiller_2d"])
def test_history_is_autoregressive_and_causal_across_layers(tiny_students, kind):
    teacher, students = tiny_students
    student = students[kind]
    wavs = random_waveforms((16000, 12000), seed=6)
    targets = [teacher(wavs).hidden_states[layer] for layer in (2, 3, 4)]

    waveforms, lengths = pad_waveforms(wavs)
    with torch.no_grad():
        free = student(waveforms, lengths)
        forced = student(waveforms, lengths, targets, [True, True, True])
        changed_target = [targets[0], targets[1] + 1.0, targets[2]]
        forced_changed = student(waveforms, lengths, changed_target, [True, True, True])
    assert torch.allclose(free.predictions[0], forced.predictions[0])  # step 1 sees only h0
    assert (free.predictions[1] - forced.predictions[1]).abs().max() > 1e-3  # step 2 sees the teacher's layer
    # the teacher's 2nd target feeds step 3 only: earlier steps are untouched (causal across layers)
    assert torch.allclose(forced.predictions[1], forced_changed.predictions[1])
    assert (forced.predictions[2] - forced_changed.predictions[2]).abs().max() > 1e-3


@pytest.mark.parametrize("history_gradient", [True, False])
def test_detached_history_trains_each_step_for_its_own_target(history_gradient):
    """Free running, the last step's loss reaches the first step's own output projection only through the history;
    `history_gradient=false` cuts that path."""
    config = GenDistillerConfig(target_layers=[1, 2], dropout=0.0, geometry=gendistiller_base_config().geometry,
                                front_end_channels=16, cnn_grad_mult=1.0, output_projection_groups=[0, 1], step_ffn_dims=[])
    torch.manual_seed(0)
    student = build_student(config)

    waveforms, lengths = pad_waveforms(random_waveforms((8000, 6000), seed=3))
    student(waveforms, lengths, history_gradient=history_gradient).predictions[-1].square().mean().backward()
    first_projection = student.output_projection[0].weight.grad
    assert (first_projection is not None and first_projection.abs().max() > 0) == history_gradient
    assert student.output_projection[1].weight.grad.abs().max() > 0


def test_output_projections_by_step():
    """Default: the first step has its own output projection, later steps none; D² = 589,824 + D weights each."""
    default = count(gendistiller_base_config())
    assert resolve_student(gendistiller_base_config()).output_projection_groups == [0, -1, -1]
    assert resolve_student(gendistiller_base_config(output_norm=False)).output_projection_groups == [0, 1, 1]  # not ending in G's LayerNorm
    assert count(gendistiller_base_config(output_projection_groups=[0, 1, 1])) - default == 590_592
    assert count(gendistiller_base_config(output_projection_groups=[0, 1, 2])) - default == 2 * 590_592
    assert default - count(gendistiller_base_config(output_projection_groups=[-1, -1, -1])) == 590_592
    with pytest.raises(ValueError, match="without gaps"):
        GenDistillerConfig(output_projection_groups=[0, 2, 2])


def test_step_feed_forward_blocks_cost_their_size_and_change_only_their_steps():
    """`step_ffn_dims`: a step's own feed-forward block after G, 2·D·F + F + 3·D parameters (a 768-wide teacher);
    a step without one is the same function as before."""
    default = count(gendistiller_base_config())
    assert count(gendistiller_base_config(step_ffn_dims=[512, 0, 0])) - default == 2 * 768 * 512 + 512 + 3 * 768
    with pytest.raises(ValueError, match="step_ffn_dims"):
        GenDistillerConfig(step_ffn_dims=[512, 0])
    with pytest.raises(ValueError, match="step_ffn_dims must be one of"):
        GenDistillerConfig(step_ffn_dims="late")
    assert resolve_student(gendistiller_base_config(step_ffn_dims="early")).step_ffn_dims == [576, 576, 0]  # 0.75 x 768, last none
    assert resolve_student(gendistiller_base_config(step_ffn_dims="auto")).step_ffn_dims == []  # the teacher's CNN: no room
    assert resolve_student(gendistiller_base_config(step_ffn_dims="auto", front_end_channels=128)).step_ffn_dims == [576, 576, 0]
    assert [key for key in build_student(distilhubert_base_config(front_end_channels=128)).state_dict()
            if key.startswith("step_ffn")] == []  # DistilHuBERT has no step blocks (nor a step_ffn_dims field)
    config = GenDistillerConfig(target_layers=[1, 2], dropout=0.0, geometry=gendistiller_base_config().geometry,
                                front_end_channels=16, cnn_grad_mult=1.0, step_ffn_dims=[])
    torch.manual_seed(0)
    plain = build_student(config).eval()
    config = replace(config, step_ffn_dims=[0, 32])
    with_block = build_student(config).eval()
    with_block.load_state_dict(plain.state_dict(), strict=False)
    wavs = [torch.randn(8000)]
    first, second = plain.infer(wavs), with_block.infer(wavs)
    assert torch.equal(first.predictions[0], second.predictions[0])
    assert (first.predictions[1] - second.predictions[1]).abs().max() > 1e-4


def test_feature_layer_norm_defaults_by_student_and_can_be_set():
    """GenDistiller normalises the CNN's 512 channels before projecting (as WavLM), DistilHuBERT does not (as s3prl's
    distiller); `feature_layer_norm` overrides either, with the LayerNorm's 2 x 512 weights."""
    gendistiller, baseline = gendistiller_base_config(), distilhubert_base_config()
    assert build_student(gendistiller).projection.layer_norm is not None
    assert build_student(baseline).projection.layer_norm is None
    assert count(gendistiller) - count(gendistiller_base_config(feature_layer_norm=False)) == 2 * 512
    assert count(distilhubert_base_config(feature_layer_norm=True)) - count(baseline) == 2 * 512


def test_bad_student_config_is_rejected():
    with pytest.raises(ValueError, match="student.kind"):
        student_config("transformer")
    with pytest.raises(ValueError, match="increasing"):
        GenDistillerConfig(target_layers=[8, 4])


@pytest.mark.parametrize("kind", ["gendistiller", "distilhubert"])
def test_target_standardization_predicts_in_standard_units(kind):
    """With per-layer statistics (μ, σ) the student's outputs are μ + σ·z of what the same weights give without them,
    and GenDistiller's teacher-forced history is the teacher's state in those units, (h - μ) / σ."""
    torch.manual_seed(0)
    geometry = {"family": "hubert", "conv_layers": [[32, 10, 5], [32, 3, 2], [32, 2, 2], [32, 2, 2], [32, 2, 2], [32, 2, 2], [32, 2, 2]],
                "dim": 32, "ffn_dim": 64, "num_heads": 4, "num_layers": 4, "conv_pos": 8, "conv_pos_groups": 4}
    plain = build_student(student_config(kind, target_layers=[2, 3, 4], dropout=0.0, geometry=geometry)).eval()
    standardized = build_student(student_config(kind, target_layers=[2, 3, 4], dropout=0.0, geometry=geometry,
                                                target_standardization=True)).eval()
    standardized.load_state_dict({**plain.state_dict(), "target_mean": standardized.target_mean,
                                  "target_std": standardized.target_std})
    mean, std = torch.randn(3, 32), torch.rand(3, 32) + 0.5
    standardized.set_target_statistics(mean, std)

    waveforms, lengths = pad_waveforms(random_waveforms((16000, 11000), seed=7))
    teacher_states = [torch.randn(2, 49, 32) for _ in range(3)]
    with torch.no_grad():
        for forced in (False, True):
            ours = standardized(waveforms, lengths, teacher_states, [forced] * 3)
            reference = plain(waveforms, lengths, [(t - m) / s for t, m, s in zip(teacher_states, mean, std)], [forced] * 3)
            frames = int(ours.lengths.min())
            for step, (mine, theirs) in enumerate(zip(ours.predictions, reference.predictions)):
                expected = theirs * std[step] + mean[step]
                assert (mine[:, :frames] - expected[:, :frames]).abs().max() < 1e-4
    with pytest.raises(ValueError, match="target_standardization"):
        plain.set_target_statistics(mean, std)


def test_auto_options_follow_the_teachers_layer_norms(tmp_path):
    """auto, for a post-LN teacher (every layer leaves a LayerNorm): no target standardisation, per-step output
    LayerNorms, and the LayerNorm before the projection; for a pre-LN one, the opposite, except that a CNN copied from
    the teacher keeps the LayerNorm its projection expects. Step feed-forward blocks follow the front-end alone: with a
    narrowed one, whatever the teacher. The checkpointed config holds the decisions."""
    from distill.teachers.tiny import TINY_WAVLM_CFG, write_wavlm_checkpoint

    for layer_norm_first in (False, True):
        path = write_wavlm_checkpoint(tmp_path / f"wavlm_{layer_norm_first}.pt", {**TINY_WAVLM_CFG, "layer_norm_first": layer_norm_first})
        teacher = load_teacher(str(path))
        for front_end_channels in (0, 16):
            config = DistillConfig(teacher=str(path))
            config.student = GenDistillerConfig(target_layers=[2, 3, 4], target_standardization="auto",
                                                step_ffn_dims="auto", front_end_channels=front_end_channels, cnn_grad_mult=1.0)
            student = prepare_student(config, teacher)
            assert student.config.target_standardization is layer_norm_first
            assert hasattr(student, "target_mean") is layer_norm_first
            assert student.config.output_norm is (not layer_norm_first)
            assert (student.output_norm is not None) is (not layer_norm_first)
            assert student.projection_of_step == ([0, 1, 1] if layer_norm_first else [0, -1, -1])
            feature_norm = not (layer_norm_first and front_end_channels)
            assert student.config.feature_layer_norm is feature_norm
            assert (student.projection.layer_norm is not None) is feature_norm
            early = round(EARLY_STEP_FFN_RATIO * teacher.dim)
            assert student.config.step_ffn_dims == ([early, early, 0] if front_end_channels else [])
            assert sorted(student.step_ffn) == (["0", "1"] if front_end_channels else [])
        config.student = DistilHuBERTConfig(target_layers=[2, 3, 4])
        assert prepare_student(config, teacher).projection.layer_norm is None  # s3prl's distiller, whatever the teacher
    with pytest.raises(ValueError, match="true, false or auto"):
        GenDistillerConfig(target_standardization="sometimes")
    with pytest.raises(ValueError, match="student.output_norm must be true, false or auto"):
        GenDistillerConfig(output_norm="yes")


def _tiny_geometry() -> dict:
    """A 32-wide, 4-layer teacher geometry for the exposed-state tests."""
    return {**gendistiller_base_config().geometry, "conv_layers": ((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
            "dim": 32, "ffn_dim": 64, "num_layers": 4, "num_heads": 2, "conv_pos": 16, "conv_pos_groups": 4}


def test_unnormalized_front_end_state_skips_the_feature_layer_norm():
    """front_end_state "unnormalized": the CNN output through the projection's Linear alone (DistilHuBERT's front-end
    has no LayerNorm, which removes each frame's mean and scale over channels); every other state is unchanged."""
    geometry = {**_tiny_geometry(), "conv_layers": ((48, 10, 5),) + ((48, 3, 2),) * 4 + ((48, 2, 2),) * 2}
    options = dict(target_layers=[2, 3, 4], dropout=0.0, geometry=geometry, feature_layer_norm=True)
    torch.manual_seed(0)
    plain = build_student(GenDistillerConfig(**options, front_end_state=True)).eval()
    unnormalized = build_student(GenDistillerConfig(**options, front_end_state="unnormalized")).eval()
    unnormalized.load_state_dict(plain.state_dict())
    wavs = random_waveforms((16000, 9000), seed=2)
    ours, theirs = unnormalized.infer(wavs, chunking=None), plain.infer(wavs, chunking=None)
    with torch.no_grad():
        cnn, _ = plain._features(*pad_waveforms(wavs))
    linear = plain.projection.projection
    mask = valid_mask(ours.lengths, cnn.shape[1])[..., None]
    assert torch.allclose(ours.hidden_states[0], (cnn @ linear.weight.T + linear.bias) * mask, atol=1e-5)
    assert not torch.allclose(ours.hidden_states[0], theirs.hidden_states[0], atol=1e-2)
    assert all(torch.equal(a, b) for a, b in zip(ours.hidden_states[1:], theirs.hidden_states[1:]))
    with pytest.raises(ValueError, match="front_end_state must be true, false or unnormalized"):
        GenDistillerConfig(**options, front_end_state="raw")


def test_exposed_states_options():
    """front_end_state: the projected CNN output (before the positional convolution) comes first, as DistilHuBERT's
    does; states_in_teacher_units=false: the generated states as predicted, standardised per dimension. The predictions
    (loss, fidelity) stay in the teacher's units; `layers` counts the exposed states; windows keep the layout."""
    from distill.nn.chunking import Chunking

    options = dict(target_layers=[2, 3, 4], dropout=0.0, geometry=_tiny_geometry(), target_standardization=True,
                   generator_states=False)
    torch.manual_seed(0)
    plain = build_student(GenDistillerConfig(**options)).eval()
    plain.set_target_statistics(3 * torch.randn(3, 32), torch.rand(3, 32) + 0.5)
    exposed = build_student(GenDistillerConfig(**options, front_end_state=True, states_in_teacher_units=False)).eval()
    exposed.load_state_dict(plain.state_dict())
    wavs = random_waveforms((16000, 9000, 23456), seed=2)
    ours, theirs = exposed.infer(wavs, chunking=None), plain.infer(wavs, chunking=None)
    assert exposed.state_names() == ["front_end", "h0", "generated_layer_2", "generated_layer_3", "generated_layer_4"]
    assert len(ours.hidden_states) == 5 and torch.equal(ours.hidden_states[1], theirs.hidden_states[0])
    for mine, reference in zip(ours.predictions, theirs.predictions):
        assert torch.equal(mine, reference)
    mask = valid_mask(ours.lengths, ours.hidden_states[0].shape[1])[..., None]
    for step, state in enumerate(ours.hidden_states[2:]):
        expected = (theirs.predictions[step] - plain.target_mean[step]) / plain.target_std[step] * mask
        assert torch.allclose(state, expected, atol=1e-5)
    with torch.no_grad():
        features = exposed.projection(exposed._features(*pad_waveforms(wavs))[0])
    assert torch.allclose(ours.hidden_states[0], features * mask, atol=1e-6)
    early = exposed.infer(wavs, chunking=None, layers=2)
    assert len(early.hidden_states) == 3 and torch.equal(early.hidden_states[2], ours.hidden_states[2])
    assert len(exposed.infer(wavs, chunking=None, layers=0).hidden_states) == 1
    windowed = exposed.infer([wavs[2]], chunking=Chunking(0.4, 0.1))  # 23,456 samples: several windows
    assert [state.shape for state in windowed.hidden_states] == [state[2:3].shape for state in ours.hidden_states]
    assert len(windowed.predictions) == 3
    assert torch.allclose(windowed.hidden_states[0], ours.hidden_states[0][2:3], atol=1e-5)  # the CNN sees the same


def test_generator_states_expose_each_steps_update():
    """generator_states (the default): each generated state follows its step's update, G's output after the step's own block and
    before the residual (captured here from the modules themselves); the generated states and the predictions are
    unchanged, `layers` counts the exposed states, windows keep the layout."""
    from distill.nn.chunking import Chunking

    options = dict(target_layers=[2, 3, 4], dropout=0.0, geometry=_tiny_geometry(), step_ffn_dims=[16, 0, 0])
    torch.manual_seed(0)
    plain = build_student(GenDistillerConfig(**options, generator_states=False)).eval()
    exposed = build_student(GenDistillerConfig(**options)).eval()  # the default
    exposed.load_state_dict(plain.state_dict())
    g_outputs, block_outputs = [], []
    exposed.generator[0][-1].register_forward_hook(lambda module, args, out: g_outputs.append(out[0]))
    exposed.step_ffn["0"].register_forward_hook(lambda module, args, out: block_outputs.append(out))
    wavs = random_waveforms((16000, 9000, 23456), seed=2)
    ours, theirs = exposed.infer(wavs, chunking=None), plain.infer(wavs, chunking=None)
    assert exposed.state_names() == ["h0", "update_2", "generated_layer_2", "update_3", "generated_layer_3",
                                     "update_4", "generated_layer_4"]
    assert len(ours.hidden_states) == 7
    for index, reference in zip((0, 2, 4, 6), theirs.hidden_states):
        assert torch.equal(ours.hidden_states[index], reference)
    for mine, reference in zip(ours.predictions, theirs.predictions):
        assert torch.equal(mine, reference)
    mask = valid_mask(ours.lengths, ours.hidden_states[0].shape[1])[..., None]
    for index, update in zip((1, 3, 5), [block_outputs[0], g_outputs[1], g_outputs[2]]):
        assert torch.equal(ours.hidden_states[index], update * mask)
    assert not torch.allclose(ours.hidden_states[1], g_outputs[0] * mask)  # the step's own block came after G
    early = exposed.infer(wavs, chunking=None, layers=3)
    assert len(early.hidden_states) == 4 and torch.equal(early.hidden_states[3], ours.hidden_states[3])
    windowed = exposed.infer([wavs[2]], chunking=Chunking(0.4, 0.1))
    assert [state.shape for state in windowed.hidden_states] == [state[2:3].shape for state in ours.hidden_states]

"""Export to transformers folders: the baseline as a plain HubertModel, GenDistiller with its code beside its weights
(loaded in a fresh process that never imports distill), every hidden state equal to our student's on mixed-length
batches, safetensors, a model card whose figures are the run's files', the folders read back as teachers, one-line
errors."""
import ast
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

transformers = pytest.importorskip("transformers")

from distill.cli import main as cli
from distill.deploy.hf_export import (
    CARRIED_AS,
    GEOMETRY_CARRIED_AS,
    GEOMETRY_UNUSED,
    HF_CODE_DIR,
    HF_CODE_FILES,
    TRAINING_ONLY,
    export_hf,
    gendistiller_hf_config,
)
from distill.deploy.hf_gendistiller import configuration_gendistiller
from distill.models import GenDistillerConfig, Student, build_student, student_config
from distill.models.student_checkpoint import CHECKPOINT_FORMAT, load_student
from distill.nn.ssl_encoder import SSLModelConfig
from distill.teachers import CheckpointTeacher, load_teacher
from distill.teachers.gendistiller_format import GenDistillerTeacher
from distill.training.config import load_config
from tests.conftest import random_waveforms

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5
LENGTHS = (23456, 16000, 8001, 1200)  # one padded batch of four lengths
TINY_GEOMETRY = dict(family="hubert", conv_layers=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2, dim=32,
                     ffn_dim=64, num_layers=4, num_heads=2, conv_pos=16, conv_pos_groups=4)
# Students whose options the trained fixtures do not run, built (random weights, target statistics far from 0 / 1).
GENDISTILLER_OPTIONS = {
    # A pre-LN teacher's student: standardised targets, a narrowed front-end without LayerNorm, the early steps' own
    # feed-forward blocks, no per-step LayerNorms and [0, 1, 1] projections (all `auto`), a repeated first step.
    "pre-ln": (dict(layer_norm_first=True),
               dict(front_end_channels=16, cnn_grad_mult=1.0, step_ffn_dims="early", generator_repeats=[2, 1, 1])),
    # 2-D attention, one two-layer generator per step, no step embedding, a LayerNorm CNN with biases, waveform
    # normalisation, one projection per step.
    "2d-unshared": (dict(extractor_mode="layer_norm", conv_bias=True, normalize=True),
                    dict(attention_2d=True, share_generator=False, generator_layers=2, step_embedding=False,
                         output_projection_groups=[0, 1, 2])),
    # The other choice of exposed states: the projected front-end first (without its LayerNorm), the generated states
    # standardised, each after its step's update.
    "exposed": (dict(layer_norm_first=True), dict(front_end_state="unnormalized", states_in_teacher_units=False,
                                                  generator_states=True)),
}
# A baseline whose CNN normalises per frame (a padded batch then matches with the attention mask), pre-LN layers,
# waveform normalisation with the feature extractor's epsilon, and a CNN as wide as the model (no projection).
BASELINE_OPTIONS = (dict(extractor_mode="layer_norm", conv_bias=True, layer_norm_first=True, normalize=True,
                         normalize_eps=1e-7), dict(encoder_layers=1, front_end_channels=32, cnn_grad_mult=1.0))

# Runs in a fresh interpreter: transformers reads each folder (AutoModel with the code beside the weights,
# AutoFeatureExtractor), runs one padded batch with its attention mask, and saves every hidden state.
FRESH_PROCESS = """
import json, sys
import numpy as np, torch
from transformers import AutoFeatureExtractor, AutoModel
folders, waves, out = json.loads(sys.argv[1]), np.load(sys.argv[2]), sys.argv[3]
wavs = [waves[key] for key in sorted(waves.files)]
report = {}
for index, folder in enumerate(folders):
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    inputs = AutoFeatureExtractor.from_pretrained(folder)(wavs, sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        result = model(**inputs, output_hidden_states=True)
    states = {f"state_{i}": state.numpy() for i, state in enumerate(result.hidden_states)}
    np.savez(f"{out}/{index}.npz", last=result.last_hidden_state.numpy(), **states)
    report[folder] = [type(model).__name__, model.config.model_type]
report["distill_imported"] = sorted(name for name in sys.modules if name.split(".")[0] == "distill")
print(json.dumps(report))
"""


def write_checkpoint(path: Path, student: Student) -> Path:
    """A student checkpoint as the trainer writes it, for a student built in the test."""
    torch.save({"format": CHECKPOINT_FORMAT, "config": {"student": student.config.to_dict()},
                "student": student.state_dict(), "step": 0}, path)
    return path


def built_student(kind: str, geometry_options: dict, student_options: dict) -> Student:
    torch.manual_seed(11)
    geometry = SSLModelConfig(**TINY_GEOMETRY, **geometry_options).to_dict()
    config = student_config(kind, target_layers=[2, 3, 4], dropout=0.0, init_from_teacher=False, geometry=geometry,
                            **student_options)
    student = build_student(config).eval()
    if student.config.target_standardization is True:
        student.set_target_statistics(3 * torch.randn(3, 32), torch.rand(3, 32) + 0.5)
    return student


@pytest.fixture(scope="module")
def exports(tmp_path_factory, gendistiller_ckpt, distilhubert_ckpt) -> dict[str, tuple[Path, Path, float]]:
    """name -> (checkpoint, exported folder, seconds the export took)."""
    root = tmp_path_factory.mktemp("hf_exports")
    checkpoints = {"gendistiller": gendistiller_ckpt, "distilhubert": distilhubert_ckpt}
    for name, (geometry, options) in GENDISTILLER_OPTIONS.items():
        checkpoints[name] = write_checkpoint(root / f"{name}.pt", built_student("gendistiller", geometry, options))
    baseline = built_student("distilhubert", *BASELINE_OPTIONS)
    checkpoints["baseline-layer-norm"] = write_checkpoint(root / "baseline.pt", baseline)
    exported = {}
    for name, checkpoint in checkpoints.items():
        started = time.perf_counter()
        folder = export_hf(checkpoint, root / name)
        exported[name] = (checkpoint, folder, time.perf_counter() - started)
    print("export seconds:", {name: round(seconds, 2) for name, (_, _, seconds) in exported.items()})
    return exported


def fresh_process_states(folders: list[Path], wavs: list[torch.Tensor], scratch: Path) -> list[dict[str, np.ndarray]]:
    """FRESH_PROCESS on `folders`: each folder's saved arrays; asserts that distill was never imported."""
    scratch.mkdir(parents=True, exist_ok=True)
    np.savez(scratch / "waves.npz", **{f"w{i}": wav.numpy() for i, wav in enumerate(wavs)})
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(scratch / "modules")  # transformers copies the folder's code here
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, json.dumps([str(f) for f in folders]),
                             str(scratch / "waves.npz"), str(scratch)], capture_output=True, text=True, cwd=scratch,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["distill_imported"] == []
    assert all(report[str(folder)] == ["GenDistillerModel", "gendistiller"] for folder in folders)
    return [dict(np.load(scratch / f"{index}.npz")) for index in range(len(folders))]


def max_differences(ours: list[torch.Tensor], lengths: torch.Tensor, theirs: list[np.ndarray]) -> list[float]:
    """Max abs difference per state over valid frames; padded frames of `theirs` must be zero."""
    differences = []
    for mine, other in zip(ours, theirs):
        assert other.shape == tuple(mine.shape)
        error = 0.0
        for i, frames in enumerate(lengths.tolist()):
            error = max(error, float(np.abs(mine[i, :frames].numpy() - other[i, :frames]).max()))
            assert not other[i, frames:].any()
        differences.append(error)
    return differences


def valid(lengths: torch.Tensor, state: torch.Tensor) -> np.ndarray:
    """(B, T, 1) 0/1 mask of the valid frames (our encoder as a teacher leaves its padded frames as they come)."""
    return (torch.arange(state.shape[1])[None, :, None] < lengths[:, None, None]).numpy()


# ---- GenDistiller ---------------------------------------------------------------------------------------------------

def test_gendistiller_loads_in_a_fresh_process_and_equals_our_student(exports, tmp_path):
    names = ["gendistiller", *GENDISTILLER_OPTIONS]
    wavs = random_waveforms(LENGTHS, seed=12)
    wavs[1][:8000] *= 1e-3  # a quiet stretch: the per-frame normalisations magnify rounding there
    saved = fresh_process_states([exports[name][1] for name in names], wavs, tmp_path)
    for name, theirs in zip(names, saved):
        student, _ = load_student(exports[name][0])
        ours = student.infer(wavs, chunking=None)
        states = [theirs[f"state_{i}"] for i in range(len(ours.hidden_states))]
        assert len(theirs) == len(ours.hidden_states) + 1  # the states and last_hidden_state
        differences = max_differences(ours.hidden_states, ours.lengths, states)
        print(name, "max abs difference per hidden state:", [f"{d:.1e}" for d in differences])
        assert max(differences) < TOLERANCE, (name, differences)
        assert np.array_equal(theirs["last"], states[-1])


def test_every_student_option_is_carried_in_the_config():
    """A GenDistillerConfig field (or geometry field) added without a place in the exported config fails here."""
    assert {f.name for f in fields(GenDistillerConfig)} == set(CARRIED_AS) | TRAINING_ONLY
    assert {f.name for f in fields(SSLModelConfig)} == set(GEOMETRY_CARRIED_AS) | GEOMETRY_UNUSED
    student = built_student("gendistiller", *GENDISTILLER_OPTIONS["pre-ln"])
    exported = gendistiller_hf_config(student)
    accepted = set(inspect.signature(configuration_gendistiller.GenDistillerConfig).parameters)
    for keys in [*CARRIED_AS.values(), *GEOMETRY_CARRIED_AS.values()]:
        assert set(keys) <= set(exported) & accepted, keys
    assert exported["step_ffn_dims"] == [24, 24, 0] and exported["output_projection_groups"] == [0, 1, 1]
    assert exported["target_standardization"] and not exported["output_norm"] and not exported["feature_layer_norm"]


def test_exported_code_is_the_repositorys_and_needs_torch_and_transformers_only(exports):
    folder = exports["gendistiller"][1]
    allowed = {"torch", "transformers", "typing", "math"}
    for name in HF_CODE_FILES:
        assert (folder / name).read_bytes() == (HF_CODE_DIR / name).read_bytes()
        for node in ast.walk(ast.parse((HF_CODE_DIR / name).read_text())):
            if isinstance(node, ast.Import):
                assert {alias.name.split(".")[0] for alias in node.names} <= allowed, name
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in allowed, (name, node.module)
            elif isinstance(node, ast.ImportFrom):
                assert node.module == "configuration_gendistiller", (name, node.module)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gendistiller" and config["auto_map"] == {
        "AutoConfig": "configuration_gendistiller.GenDistillerConfig",
        "AutoModel": "modeling_gendistiller.GenDistillerModel"}


# ---- DistilHuBERT ---------------------------------------------------------------------------------------------------

def baseline_states(student: Student, wavs: list[torch.Tensor]):
    """Our baseline's states in a HubertModel's order (layer 0 after the positional convolution, then its layers)."""
    out = student.infer(wavs, chunking=None)
    return [out.layer0, *out.hidden_states[1: student.config.encoder_layers + 1]], out.lengths


def test_baseline_is_a_plain_hubert_model_equal_to_our_student_per_utterance(exports):
    checkpoint, folder, _ = exports["distilhubert"]
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["feat_proj_layer_norm"], config["num_hidden_layers"]) == ("hubert", False, 2)
    assert "auto_map" not in config and not list(folder.glob("*.py"))
    model = transformers.AutoModel.from_pretrained(folder).eval()  # no custom code
    assert type(model) is transformers.HubertModel
    student, _ = load_student(checkpoint)
    wavs = random_waveforms(LENGTHS, seed=13)
    ours, lengths = baseline_states(student, wavs)
    alone, padded = [], []
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    with torch.no_grad():
        for wav in wavs:  # one utterance per call: what the card tells users to do
            inputs = extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt")
            alone.append([state[0].numpy() for state in model(**inputs, output_hidden_states=True).hidden_states])
        batch = extractor([wav.numpy() for wav in wavs], sampling_rate=16000, padding=True, return_tensors="pt")
        padded = model(**batch, output_hidden_states=True).hidden_states
    differences = [max(float(np.abs(ours[k][i, :n].numpy() - alone[i][k]).max())
                       for i, n in enumerate(lengths.tolist())) for k in range(len(ours))]
    print("baseline max abs difference per hidden state (each utterance alone):", [f"{d:.1e}" for d in differences])
    assert max(differences) < TOLERANCE, differences
    # The card's padding note: in a padded batch the first CNN layer's GroupNorm sees the padding, so every utterance
    # but the longest differs from what it gets alone, attention mask or not.
    last = len(ours) - 1
    gaps = [float((padded[last][i, :n] - ours[last][i, :n]).abs().max()) for i, n in enumerate(lengths.tolist())]
    assert gaps[0] < TOLERANCE and min(gaps[1:]) > 1e-2, gaps
    assert "run one utterance per call" in (folder / "README.md").read_text()


def test_baseline_with_a_layer_norm_cnn_matches_a_padded_batch(exports):
    checkpoint, folder, _ = exports["baseline-layer-norm"]
    config = json.loads((folder / "config.json").read_text())
    assert (config["feat_extract_norm"], config["do_stable_layer_norm"], config["conv_bias"]) == ("layer", True, True)
    assert json.loads((folder / "preprocessor_config.json").read_text())["do_normalize"] is True
    student, _ = load_student(checkpoint)
    model = transformers.HubertModel.from_pretrained(folder).eval()
    extractor = transformers.AutoFeatureExtractor.from_pretrained(folder)
    wavs = random_waveforms(LENGTHS, seed=14)
    ours, lengths = baseline_states(student, [wav * 3 + 0.05 for wav in wavs])  # normalisation has work to do
    with torch.no_grad():
        batch = extractor([(wav * 3 + 0.05).numpy() for wav in wavs], sampling_rate=16000, padding=True,
                          return_tensors="pt")
        padded = model(**batch, output_hidden_states=True).hidden_states
    differences = [max(float((padded[k][i, :n] - ours[k][i, :n]).abs().max()) for i, n in enumerate(lengths.tolist()))
                   for k in range(len(ours))]
    assert max(differences) < TOLERANCE, differences
    assert "attention_mask" in (folder / "README.md").read_text()


# ---- both ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gendistiller", "distilhubert"])
def test_both_write_safetensors_and_a_hub_card(exports, name):
    from safetensors import safe_open

    _, folder, seconds = exports[name]
    assert seconds < 60
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        assert len(list(weights.keys())) > 10
    header = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "feature-extraction"
    assert {"audio", "speech", "distillation", "feature-extraction"} <= set(header["tags"]) and header["license"]
    extractor = json.loads((folder / "preprocessor_config.json").read_text())
    assert (extractor["feature_extractor_type"], extractor["sampling_rate"]) == ("Wav2Vec2FeatureExtractor", 16000)


def test_card_figures_are_the_run_files(gendistiller_ckpt, tiny_wavlm_path, tmp_path):
    """Beside a copy of the run folder, the files the demo writes (held-out fidelity, SUPERB results); the card
    shows their figures for this checkpoint, and none of another checkpoint's."""
    from distill.commands.demo import _heldout_fidelity
    from distill.superb.sweep import append_result
    from tests.conftest import write_tone_corpus

    run = tmp_path / "work" / "gendistiller"
    shutil.copytree(Path(gendistiller_ckpt).parents[1], run, ignore=shutil.ignore_patterns("tensorboard"))
    checkpoint = run / "checkpoints" / Path(gendistiller_ckpt).name
    heldout = write_tone_corpus(tmp_path / "heldout", num_files=2, seed=5)
    fidelity = _heldout_fidelity({"gendistiller": checkpoint}, str(tiny_wavlm_path), [heldout],
                                 tmp_path / "work" / "heldout_fidelity.json")["gendistiller"]
    results = tmp_path / "work" / "superb_results.csv"
    for upstream, ckpt, seed, test in (("gendistiller", checkpoint, 1337, 0.5), ("gendistiller", checkpoint, 1338, 0.7),
                                       ("gendistiller", run / "checkpoints" / "other.pt", 1337, 0.1),
                                       ("wavlm", tiny_wavlm_path, 1337, 0.9)):
        append_result(results, {"upstream": upstream, "task": "ks", "seed": seed, "metric": "acc",
                                "higher_is_better": True, "lr": 0.01, "dev": test, "test": test, "params": 1,
                                "ckpt": str(ckpt), "expdir": "x", "finished_at": "now"})
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["step"] == 2  # the fixture's run
    student = sum(p.numel() for p in load_student(checkpoint)[0].parameters())

    card = (export_hf(checkpoint, tmp_path / "out") / "README.md").read_text()
    for layer, measured in fidelity["layers"].items():
        assert f"| {layer} | {measured['l1']:.4f} | {measured['cosine']:.4f} | {measured['frames']:,} |" in card
    assert "| ks | acc↑ | 0.6000 ± 0.1414 (2 seeds) | 0.9000 (1 seed) |" in card
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert f"training loss at step 2: {metrics[-1]['loss']:.4f}" in card
    assert f"({saved['data']['hours']:.2f} h in {saved['data']['files']:,} files)" in card
    teacher = saved["teacher"]["num_parameters"]
    assert f"| {student:,} | {100 * student / teacher:.1f}% |" in card
    assert f"`{saved['config']['data']['train']}`" in card and "not measured" not in card

    config = load_config(str(tmp_path / "out" / "gendistiller_config.yaml"))  # the card's command reads it
    assert config.to_dict() == load_config(str(run / "config.yaml")).to_dict()

    bare = (export_hf(gendistiller_ckpt, tmp_path / "bare") / "README.md").read_text()
    assert bare.count("not measured") == 2  # no fidelity, no downstream scores beside the fixture's run


def test_one_line_errors(gendistiller_ckpt, tiny_wavlm_path, tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    for checkpoint, message in ((tiny_wavlm_path, "not a GenDistiller student checkpoint"),
                                (junk, "not a readable PyTorch checkpoint"), (tmp_path / "missing.pt", "not found")):
        assert cli(["export", "--to", "hf", str(checkpoint), str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    assert cli(["export", "--to", "hf", str(gendistiller_ckpt), str(occupied)]) == 2
    assert "holds files an export does not write (notes.txt)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and (occupied / "notes.txt").is_file()
    assert cli(["export", "--to", "hf", str(gendistiller_ckpt), str(tmp_path / "again")]) == 0
    assert cli(["export", "--to", "hf", str(gendistiller_ckpt), str(tmp_path / "again")]) == 0  # a former export
    assert cli(["export", "--to", "onnx", "--license", "mit", str(gendistiller_ckpt), str(tmp_path / "s.onnx")]) == 2


# ---- back: exported folders as teachers -----------------------------------------------------------------------------

def test_exported_folders_are_teachers(exports, tmp_path, capsys):
    wavs = random_waveforms(LENGTHS, seed=15)
    checkpoint, folder, _ = exports["distilhubert"]
    teacher = load_teacher(f"hf:{folder}")
    assert isinstance(teacher, CheckpointTeacher) and not teacher.model.config.projection_layer_norm
    ours, lengths = baseline_states(load_student(checkpoint)[0], wavs)
    out = teacher(wavs)
    assert torch.equal(out.lengths, lengths) and len(out.hidden_states) == len(ours)
    theirs = [state.numpy() * valid(lengths, state) for state in out.hidden_states]
    assert max(max_differences(ours, lengths, theirs)) < TOLERANCE

    for name in ("gendistiller", "pre-ln"):
        checkpoint, folder, _ = exports[name]
        started = time.perf_counter()
        teacher = load_teacher(str(folder))
        print(f"{name}: read back as a teacher in {time.perf_counter() - started:.2f} s")
        assert isinstance(teacher, GenDistillerTeacher) and teacher.num_layers == 3
        ours = load_student(checkpoint)[0].infer(wavs, chunking=None)
        out = teacher(wavs)
        assert torch.equal(out.lengths, ours.lengths)
        theirs = [state.numpy() for state in out.hidden_states]
        assert max(max_differences(ours.hidden_states, ours.lengths, theirs)) < TOLERANCE
        assert teacher.layers_end_in_layer_norm == (name == "gendistiller")  # pre-ln: standardised, no LayerNorm
    assert cli(["teacher-info", str(exports["gendistiller"][1])]) == 0
    assert "family: gendistiller" in capsys.readouterr().out


def test_students_distil_from_exported_folders(exports, tmp_path):
    """A GenDistiller initialised from the exported baseline (whose projection has no LayerNorm: the student's copied
    front-end has none either), and a student of the exported GenDistiller (a teacher without a geometry to copy)."""
    from distill.training.trainer import train
    from tests.conftest import write_tone_corpus

    corpus = write_tone_corpus(tmp_path / "corpus", num_files=2)
    common = [f"data.train={corpus}", "optim.total_steps=1", "run.progress=false", "data.batch_size=2"]
    baseline = exports["distilhubert"][1]
    last = train(load_config("tiny_gendistiller", [f"teacher=hf:{baseline}", f"run.output_dir={tmp_path / 'a'}",
                                                   "student.target_layers=[1,2]", *common]))
    student = load_student(last)[0]
    assert student.config.feature_layer_norm is False and student.projection.layer_norm is None
    geometry = json.dumps(dict(TINY_GEOMETRY, dim=96, ffn_dim=192, num_heads=4))
    last = train(load_config("tiny_distilhubert", [
        f"teacher={exports['gendistiller'][1]}", "student.target_layers=[1,2,3]", "student.init_from_teacher=false",
        f"student.geometry={geometry}", f"run.output_dir={tmp_path / 'b'}", *common]))
    assert torch.load(last, weights_only=False)["teacher"]["family"] == "gendistiller"


def readme_snippet() -> str:
    """The three lines of README.md's "Use a student in transformers"."""
    section = (ROOT / "README.md").read_text().split("### Use a student in transformers", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("name, num_states", [("gendistiller", 7), ("distilhubert", 3)])
def test_readme_snippet_runs_as_written(exports, tmp_path, name, num_states):
    snippet = readme_snippet()
    assert len(snippet.strip().splitlines()) == 3
    shutil.copytree(exports[name][1], tmp_path / "student_hf")
    script = ("import numpy as np\nwav = 0.1 * np.random.default_rng(0).standard_normal(20000).astype(np.float32)\n"
              + snippet + "print(len(states), tuple(states[-1].shape))\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == f"{num_states} (1, {1 + (20000 - 400) // 320}, 96)"

"""How a teacher spec is read: `distill.teachers.formats.sniff` tells its format once, the loader of that format alone
reads it, and no format module looks at another's files (checked at run time and in the imports)."""
import ast
import re
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch

import distill.teachers
from distill.teachers import CheckpointTeacher, ModuleTeacher, WhisperTeacher, formats, load_teacher
from distill.teachers.gendistiller_format import GenDistillerTeacher

TEACHERS = Path(distill.teachers.__file__).parent
# One module per source format; each may import only the contract and the teacher classes from this package.
FORMAT_MODULES = ("fairseq_format", "huggingface_format", "openai_whisper_format", "ctranslate2_format", "module_teacher",
                  "gendistiller_format")
SHARED = ("base", "ssl_teacher", "whisper_teacher")
OTHERS = ("__init__", "formats", "tiny")
# What each format module exposes for `sniff` to tell formats apart.
DETECTORS = {"fairseq_format": ["checkpoint_family"], "huggingface_format": ["is_hf_folder", "model_type"],
             "openai_whisper_format": ["is_openai_checkpoint"], "ctranslate2_format": ["is_ctranslate2_file"]}
# format (a key of LOADERS) -> the module that reads it.
READ_BY = {"wavlm-checkpoint": "fairseq_format", "fairseq-checkpoint": "fairseq_format", "huggingface": "huggingface_format",
           "huggingface-whisper": "huggingface_format", "huggingface-gendistiller": "gendistiller_format",
           "openai-whisper": "openai_whisper_format",
           "ctranslate2-whisper": "ctranslate2_format", "s3prl": "module_teacher", "module": "module_teacher"}


# ---- one teacher of every kind --------------------------------------------------------------------------------------

def _wavlm(root: Path) -> Path:
    from distill.teachers.tiny import write_wavlm_checkpoint

    return write_wavlm_checkpoint(root / "wavlm.pt")


def _fairseq(family: str) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        pytest.importorskip("fairseq", reason="fairseq teachers need fairseq (fairseq-fixed==0.12.3.1)")
        from tests.fairseq_checkpoints import write_fairseq_checkpoint

        return write_fairseq_checkpoint(root / f"{family}.pt", family, seed=1)
    return build


def _hf(family: str) -> Callable[[Path], Path]:
    def build(root: Path) -> Path:
        from transformers import Wav2Vec2FeatureExtractor

        from tests.test_brought_teachers import _hf_model

        _hf_model(family, large=False).save_pretrained(root / f"hf_{family}")
        Wav2Vec2FeatureExtractor().save_pretrained(root / f"hf_{family}")
        return root / f"hf_{family}"
    return build


def _hf_whisper(root: Path) -> Path:
    from tests.test_whisper_teacher import _tiny_whisper

    _tiny_whisper().save_pretrained(root / "hf_whisper")
    return root / "hf_whisper"


def _hf_gendistiller(root: Path) -> Path:
    """A GenDistiller exported for transformers (`gendistiller export --to hf`)."""
    from distill.deploy.hf_export import export_hf
    from tests.test_hf_export import built_student, write_checkpoint

    checkpoint = write_checkpoint(root / "gendistiller.pt", built_student("gendistiller", {}, {}))
    return export_hf(checkpoint, root / "hf_gendistiller")


def _openai_whisper(root: Path) -> Path:
    from tests.test_whisper_teacher import _openai_state_dict, _tiny_whisper

    model = _tiny_whisper()
    config = model.config
    dims = {"n_mels": config.num_mel_bins, "n_audio_ctx": config.max_source_positions, "n_audio_state": config.d_model,
            "n_audio_head": config.encoder_attention_heads, "n_audio_layer": config.encoder_layers}
    torch.save({"dims": dims, "model_state_dict": _openai_state_dict(model)}, root / "openai.pt")
    return root / "openai.pt"


def _ctranslate2(root: Path) -> Path:
    from transformers import WhisperFeatureExtractor

    from tests.test_whisper_teacher import _convert, _write_tiny_tokenizer

    folder = _hf_whisper(root / "for_ct2")
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)
    _write_tiny_tokenizer(folder, 100)
    return _convert(folder, root / "ct2", None)


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "wavlm": _wavlm, "hubert": _fairseq("hubert"), "wav2vec2": _fairseq("wav2vec2"), "hf_wavlm": _hf("wavlm"),
    "hf_hubert": _hf("hubert"), "hf_wav2vec2": _hf("wav2vec2"), "hf_whisper": _hf_whisper, "openai": _openai_whisper,
    "ct2": _ctranslate2, "hf_gendistiller": _hf_gendistiller,
}

# spec -> (the format it is sniffed as, the teacher's class); {name} is a file or folder of BUILDERS.
CASES = {
    "{wavlm}": ("wavlm-checkpoint", CheckpointTeacher),
    "wavlm:{wavlm}": ("wavlm-checkpoint", CheckpointTeacher),
    "{hubert}": ("fairseq-checkpoint", CheckpointTeacher),
    "hubert:{hubert}": ("fairseq-checkpoint", CheckpointTeacher),
    "{wav2vec2}": ("fairseq-checkpoint", CheckpointTeacher),
    "wav2vec2:{wav2vec2}": ("fairseq-checkpoint", CheckpointTeacher),
    "{hf_wavlm}": ("huggingface", CheckpointTeacher),
    "hf:{hf_wavlm}": ("huggingface", CheckpointTeacher),
    "{hf_hubert}": ("huggingface", CheckpointTeacher),
    "{hf_wav2vec2}": ("huggingface", CheckpointTeacher),
    "{hf_whisper}": ("huggingface-whisper", WhisperTeacher),
    "hf:{hf_whisper}": ("huggingface-whisper", WhisperTeacher),
    "{hf_gendistiller}": ("huggingface-gendistiller", GenDistillerTeacher),
    "hf:{hf_gendistiller}": ("huggingface-gendistiller", GenDistillerTeacher),
    "whisper-30s:{hf_whisper}": ("huggingface-whisper", WhisperTeacher),
    "{openai}": ("openai-whisper", WhisperTeacher),
    "whisper:{openai}": ("openai-whisper", WhisperTeacher),
    "{ct2}": ("ctranslate2-whisper", WhisperTeacher),
    "{ct2}/model.bin": ("ctranslate2-whisper", WhisperTeacher),
    "whisper:{ct2}": ("ctranslate2-whisper", WhisperTeacher),
    "s3prl:wavlm_local:{wavlm}": ("s3prl", ModuleTeacher),
    "module:tests.test_brought_teachers:make_toy_teacher": ("module", ModuleTeacher),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Callable[[str], Path]:
    """name -> its file or folder, built on first use."""
    root, paths = tmp_path_factory.mktemp("teacher_formats"), {}

    def get(name: str) -> Path:
        if name not in paths:
            paths[name] = BUILDERS[name](root)
        return paths[name]
    return get


@pytest.mark.parametrize("template", CASES)
def test_every_spec_is_sniffed_once_and_loaded_by_its_format(template, built, monkeypatch):
    spec = re.sub(r"\{(\w+)\}", lambda name: str(built(name.group(1))), template)
    expected_format, teacher_class = CASES[template]
    real_sniff, sniffed = formats.sniff, []
    detector_calls: list[tuple[str, str]] = []  # (phase, module.detector)

    def sniff(spec_seen: str) -> formats.Source:
        source = real_sniff(spec_seen)
        sniffed.append((spec_seen, source.format))
        return source
    for module in [m for name, m in sys.modules.items() if name.startswith("distill.teachers") and m is not None]:
        if getattr(module, "sniff", None) is real_sniff:
            monkeypatch.setattr(module, "sniff", sniff)
    _record_detector_calls(monkeypatch, detector_calls, phase=lambda: "load" if sniffed else "sniff")

    teacher = load_teacher(spec)

    assert sniffed == [(spec, expected_format)]
    assert isinstance(teacher, teacher_class)
    asked = [detector for phase, detector in detector_calls if phase == "sniff"]
    assert len(asked) == len(set(asked)), asked  # while sniffing, each question is asked once at most
    foreign = [detector for phase, detector in detector_calls
               if phase == "load" and detector.split(".")[0] != READ_BY[expected_format]]
    assert not foreign, f"the {expected_format} loader asked other formats' detectors: {foreign}"


def _record_detector_calls(monkeypatch, calls: list[tuple[str, str]], phase: Callable[[], str]) -> None:
    for module_name, names in DETECTORS.items():
        module = sys.modules[f"distill.teachers.{module_name}"]
        for name in names:
            def recorded(*args, _real=getattr(module, name), _key=f"{module_name}.{name}", **kwargs):
                calls.append((phase(), _key))
                return _real(*args, **kwargs)
            monkeypatch.setattr(module, name, recorded)


def test_every_format_has_a_loader_and_a_case():
    assert set(formats.LOADERS) == set(READ_BY) == {expected for expected, _ in CASES.values()}
    assert set(READ_BY.values()) == set(FORMAT_MODULES)


# ---- imports ---------------------------------------------------------------------------------------------------------

def _imported(path: Path) -> set[str]:
    """Every module an import statement of `path` names, function bodies included; `from a import b` names a and a.b."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(f"<relative import {'.' * node.level}{node.module or ''}>")
    return names


def test_every_teachers_module_is_classified():
    assert {path.stem for path in TEACHERS.glob("*.py")} == {*FORMAT_MODULES, *SHARED, *OTHERS}


@pytest.mark.parametrize("name", FORMAT_MODULES)
def test_a_format_module_imports_no_other_format_module(name):
    imported = _imported(TEACHERS / f"{name}.py")
    teachers = {".".join(module.split(".")[:3]) for module in imported if module.split(".")[:2] == ["distill", "teachers"]}
    others = {module for module in teachers if module.split(".")[-1] in FORMAT_MODULES and module != f"distill.teachers.{name}"}
    assert not others, f"{name} imports other format modules: {sorted(others)}"
    assert teachers <= {f"distill.teachers.{shared}" for shared in SHARED}, f"{name} imports {sorted(teachers)}"
    assert not any(module.startswith("<relative") for module in imported)


@pytest.mark.parametrize("name", [*FORMAT_MODULES, *SHARED, *OTHERS])
def test_teachers_import_only_io_nn_and_teachers(name):
    ours = {module for module in _imported(TEACHERS / f"{name}.py") if module.split(".")[0] == "distill"}
    allowed = ("distill.io", "distill.nn", "distill.teachers")
    outside = sorted(module for module in ours if not any(module.startswith(f"{prefix}.") for prefix in allowed)
                     and module not in allowed)
    assert not outside, f"{name} imports {outside}"

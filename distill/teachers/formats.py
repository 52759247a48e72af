"""Teacher specs -> teachers in two steps: `sniff` tells, once, which source format a spec names (a `Source`), and
`LOADERS` hands it to the one module that reads that format. The format modules never look at each other's files:
every rule that tells formats apart is here. A new format is a module of its own, an entry in `LOADERS` and a rule
in `sniff` (a prefix in `_PREFIXES`, or a test in `_path` for a bare PATH).

Specs:
- `wavlm:PATH`, `hubert:PATH`, `wav2vec2:PATH`: an official WavLM or fairseq checkpoint, insisting on that family;
- `hf:DIR`: a HuggingFace `save_pretrained` folder (one with model_type "whisper" loads as `whisper:DIR`, one with
  model_type "gendistiller", written by `gendistiller export --to hf`, with the code beside its weights);
- `whisper:PATH` / `whisper-30s:PATH`: a Whisper model (openai-whisper .pt, HF folder, CTranslate2 model.bin or a
  folder holding one), per utterance or padded to 30 s as Whisper runs;
- `s3prl:NAME` or `s3prl:NAME:CKPT`, `module:package.module:factory`: see `distill/teachers/module_teacher.py`;
- a bare PATH, told by what it holds: a folder with a Whisper config.json or a model.bin is a Whisper model, one with
  a GenDistiller config.json an exported GenDistiller, another folder with config.json a HF folder; a file that starts
  like a CTranslate2 model.bin is one; any other file is read as a checkpoint dict: openai-whisper (`dims` +
  `model_state_dict`), else official WavLM or fairseq.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from distill.io.checkpoint_files import CheckpointError, check_finite_weights, read_checkpoint
from distill.teachers import (
    ctranslate2_format,
    fairseq_format,
    gendistiller_format,
    huggingface_format,
    module_teacher,
    openai_whisper_format,
)
from distill.teachers.base import Teacher


@dataclass(frozen=True)
class Source:
    """What a spec names, as `sniff` told it."""

    format: str  # a key of LOADERS
    location: str  # as the teacher's spec shows it: the path, or what follows `s3prl:` / `module:`
    family: Optional[str] = None  # checkpoint formats: 'wavlm', 'hubert' or 'wav2vec2', as found in the file
    pad_to_30s: bool = False  # Whisper formats: every input padded to 30 s, as Whisper runs (`whisper-30s:`)
    # The dict read from the file while telling its format, so that its loader does not read the file again.
    checkpoint: Optional[Mapping[str, Any]] = field(default=None, repr=False, compare=False)


# format -> its loader. Each loader lives in the format's own module.
LOADERS: dict[str, Callable[[Source], Teacher]] = {
    "wavlm-checkpoint": lambda source: fairseq_format.load_wavlm_checkpoint(source.location, source.checkpoint),
    "fairseq-checkpoint": lambda source: fairseq_format.load_fairseq_checkpoint(source.location, source.family,
                                                                                source.checkpoint),
    "huggingface": lambda source: huggingface_format.load_hf_teacher(source.location),
    "huggingface-whisper": lambda source: huggingface_format.load_hf_whisper(source.location, source.pad_to_30s),
    "huggingface-gendistiller": lambda source: gendistiller_format.load_gendistiller_folder(source.location),
    "openai-whisper": lambda source: openai_whisper_format.load_openai_whisper(source.location, source.pad_to_30s,
                                                                               source.checkpoint),
    "ctranslate2-whisper": lambda source: ctranslate2_format.load_ctranslate2_whisper(source.location,
                                                                                      source.pad_to_30s),
    "s3prl": lambda source: module_teacher.load_s3prl(source.location),
    "module": lambda source: module_teacher.load_module(source.location),
}


def load_teacher(spec: str, device: str | torch.device = "cpu") -> Teacher:
    """The frozen, eval-mode teacher a spec names, on `device`. CheckpointError if any of its weights is not finite
    (such a teacher gives only NaN targets)."""
    source = sniff(spec)
    teacher = LOADERS[source.format](source)
    check_finite_weights(dict(teacher.named_parameters()), source.location)
    return teacher.to(device)


def sniff(spec: str) -> Source:
    """Which format `spec` names. Files and folders are opened only as far as telling their format needs (a checkpoint
    dict is read whole, and kept in the Source); errors name the path and what was expected."""
    prefix, sep, rest = spec.partition(":")
    rule = _PREFIXES.get(prefix) if sep else None
    return rule(rest) if rule is not None else _path(Path(spec))


def _path(path: Path) -> Source:
    """A bare PATH, told by what it holds."""
    if path.is_dir():
        folder = _folder(path)
        if folder is not None:
            return Source(folder, str(path))
    elif ctranslate2_format.is_ctranslate2_file(path):
        return Source("ctranslate2-whisper", str(path))
    return _checkpoint(path)


def _folder(path: Path) -> Optional[str]:
    """A folder's format: a config.json of model_type "whisper" or "gendistiller", else a model.bin (CTranslate2), else
    any config.json (HuggingFace); None if it holds none of them."""
    model_type = huggingface_format.model_type(path)
    if model_type in _HF_MODEL_TYPES:
        return _HF_MODEL_TYPES[model_type]
    if (path / "model.bin").is_file():
        return "ctranslate2-whisper"
    if huggingface_format.is_hf_folder(path):
        return "huggingface"
    return None


def _checkpoint(path: Path, family: Optional[str] = None) -> Source:
    """A checkpoint dict: openai-whisper (only for a bare PATH), else official WavLM or fairseq, of `family` if given."""
    checkpoint = read_checkpoint(path)
    if openai_whisper_format.is_openai_checkpoint(checkpoint):
        if family is None:
            return Source("openai-whisper", str(path), checkpoint=checkpoint)
        raise CheckpointError(f"{path}: an openai-whisper checkpoint (`dims` + `model_state_dict`); use the spec "
                              "'whisper:PATH'")
    try:
        found = fairseq_format.checkpoint_family(checkpoint)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    if family is not None and found != family:
        raise CheckpointError(f"{path}: expected a {family} checkpoint, found a {found} checkpoint")
    return Source("wavlm-checkpoint" if found == "wavlm" else "fairseq-checkpoint", str(path), family=found,
                  checkpoint=checkpoint)


def _hf(folder: str) -> Source:
    if not huggingface_format.is_hf_folder(folder):
        raise CheckpointError(f"{folder}: not a HuggingFace model folder (expected a directory with config.json)")
    other = _HF_MODEL_TYPES.get(huggingface_format.model_type(folder) or "")
    return Source(other, str(Path(folder))) if other else Source("huggingface", folder)


def _whisper(path: Path, pad_to_30s: bool) -> Source:
    """A Whisper model in one of its three formats; a file that is not a CTranslate2 model.bin counts as an
    openai-whisper .pt (its loader says so if it is not one)."""
    if path.is_dir():
        whisper = _folder(path)
    elif path.is_file():
        whisper = "ctranslate2-whisper" if ctranslate2_format.is_ctranslate2_file(path) else "openai-whisper"
    else:
        whisper = None
    if whisper not in ("huggingface-whisper", "ctranslate2-whisper", "openai-whisper"):
        raise CheckpointError(f"{path}: not a Whisper model (expected an openai-whisper .pt, a HuggingFace folder with "
                              "model_type 'whisper', or a CTranslate2 model.bin or folder holding one)")
    return Source(whisper, str(path), pad_to_30s=pad_to_30s)


# config.json's model_type -> the format of a HF folder that is not read as a WavLM / HuBERT / wav2vec 2.0 teacher.
_HF_MODEL_TYPES = {"whisper": "huggingface-whisper", "gendistiller": "huggingface-gendistiller"}

# spec prefix -> the rule for the rest of the spec. A spec with no known prefix is a bare PATH.
_PREFIXES: dict[str, Callable[[str], Source]] = {
    "wavlm": lambda path: _checkpoint(Path(path), "wavlm"),
    "hubert": lambda path: _checkpoint(Path(path), "hubert"),
    "wav2vec2": lambda path: _checkpoint(Path(path), "wav2vec2"),
    "hf": _hf,
    "whisper": lambda path: _whisper(Path(path), pad_to_30s=False),
    "whisper-30s": lambda path: _whisper(Path(path), pad_to_30s=True),
    "s3prl": lambda rest: Source("s3prl", rest),
    "module": lambda rest: Source("module", rest),
}

"""The two datasets s3prl's `ctc` expert loads for phoneme recognition (PR, `corpus.name: libriphone`) and slot filling
(SF, `corpus.name: snips`). s3prl's PyPI wheel ships the expert but not its `downstream/ctc/corpus/` folder, so
`gendistiller_upstream.register()` installs these under the module names the expert imports
(`s3prl.downstream.ctc.corpus.libriphone`, `.snips`) when s3prl has none of its own.

The contract, from `s3prl/downstream/ctc/data.py`: the expert builds `Dataset(split, tokenizer, bucket_size, **corpus)`
with `split` the list of subsets its config names for train, dev or test, and every key of the config's `corpus`
section as keyword arguments; an item is `(audio path, token ids)`, or with `bucket_size > 1` a list of
`bucket_size` such pairs of similar length (its collate function reads the audio and halves long training buckets).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from torch.utils.data import Dataset


class _Bucketed(Dataset):
    """(path, tokens) pairs sorted by token count (longest first), served one at a time or as buckets."""

    def __init__(self, files: Sequence[Path], tokens: Sequence[list[int]], bucket_size: int, ascending: bool, where: str):
        if not files:
            raise ValueError(f"{where}: no audio found")
        pairs = sorted(zip(files, tokens), key=lambda pair: len(pair[1]), reverse=not ascending)
        self.files = [str(path) for path, _ in pairs]
        self.tokens = [ids for _, ids in pairs]
        self.bucket_size = bucket_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Any:
        if self.bucket_size <= 1:
            return self.files[index], self.tokens[index]
        start = max(0, min(index, len(self.files) - self.bucket_size))
        end = start + self.bucket_size
        return list(zip(self.files[start:end], self.tokens[start:end]))


def read_lexicon(paths: Sequence[str | Path]) -> dict[str, list[str]]:
    """"WORD PH1 PH2 ..." lines; the first pronunciation of a word wins (files in the order given)."""
    lexicon: dict[str, list[str]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            word, *phonemes = line.split()
            if phonemes:
                lexicon.setdefault(word, phonemes)
    return lexicon


class LibriPhoneDataset(_Bucketed):
    """LibriSpeech subsets (`path/SUBSET/SPK/CHAP/*.flac` + `*.trans.txt`) with words turned into phonemes by the
    lexicon files; the tokenizer (`text.mode: word`, a phoneme per "word") encodes the space-separated phonemes."""

    def __init__(self, split: Sequence[str], tokenizer: Any, bucket_size: int, path: str, lexicon: Sequence[str],
                 ascending: bool = False, **kwargs: Any):
        pronunciations = read_lexicon(lexicon)
        files, tokens = [], []
        for subset in split:
            for transcript in sorted((Path(path) / subset).rglob("*.trans.txt")):
                for line in transcript.read_text().splitlines():
                    utterance, _, text = line.partition(" ")
                    missing = [word for word in text.split() if word not in pronunciations]
                    if missing:
                        raise ValueError(f"{transcript}: words {missing[:5]} are in no lexicon of {list(lexicon)}")
                    phonemes = [phone for word in text.split() for phone in pronunciations[word]]
                    files.append(transcript.parent / f"{utterance}.flac")
                    tokens.append(tokenizer.encode(" ".join(phonemes)))
        super().__init__(files, tokens, bucket_size, ascending, f"libriphone {path} {list(split)}")


class SnipsDataset(_Bucketed):
    """SNIPS audio folders `path/SPLIT/SPEAKER-snips-SPLIT-N.wav` of the speakers `<split>_speakers` lists, with the
    slot-tagged transcripts of `all.iob.snips.txt` (slot modes) or the plain ones of `all-trans.txt`."""

    def __init__(self, split: Sequence[str], tokenizer: Any, bucket_size: int, path: str, ascending: bool = False,
                 **kwargs: Any):
        speakers = kwargs.get(f"{split[0]}_speakers") or []
        slot_mode = "-slot" in tokenizer.token_type
        transcripts = {}
        for line in (Path(path) / ("all.iob.snips.txt" if slot_mode else "all-trans.txt")).read_text().splitlines():
            uid, _, text = line.partition(" ")
            transcripts[uid] = text
        files, tokens = [], []
        for subset in split:
            for wav in sorted((Path(path) / subset).rglob("*.wav")):
                if wav.stem in transcripts and any(wav.stem.startswith(speaker) for speaker in speakers):
                    files.append(wav)
                    tokens.append(tokenizer.encode(transcripts[wav.stem]))
        super().__init__(files, tokens, bucket_size, ascending, f"snips {path} {list(split)} speakers {speakers}")


def missing_modules() -> list[str]:
    """The corpus modules s3prl's ctc expert imports that this s3prl install lacks."""
    import importlib.util

    names = ("s3prl.downstream.ctc.corpus.libriphone", "s3prl.downstream.ctc.corpus.snips")
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def install() -> list[str]:
    """Makes this module importable as the ctc corpus modules s3prl lacks; returns the names installed."""
    import sys
    import types

    installed = []
    for name in missing_modules():
        package = name.rsplit(".", 1)[0]
        if package not in sys.modules:
            module = types.ModuleType(package, "ctc corpora installed by gendistiller_upstream (absent from s3prl's wheel)")
            module.__path__ = []  # a package, so that `from .corpus.x import ...` resolves submodules from sys.modules
            sys.modules[package] = module
        sys.modules[name] = sys.modules[__name__]
        installed.append(name)
    return installed

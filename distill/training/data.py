"""Distillation data: a corpus index, random crops, length-bucketed batches that resume exactly.

A corpus is a directory searched recursively for .flac/.wav, or a fairseq-style manifest (.tsv: a root line,
then `relative_path<TAB>num_samples`). Files that are unreadable, empty, not mono or not 16 kHz are reported
once with their path and left out; the count is logged. A crop holding NaN or infinite samples is skipped when read,
with its file and the reason. Crop offsets and batch order come from
(seed, epoch, batch) alone, so a resumed run reads exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import soundfile
import torch
from torch.utils.data import Dataset

from distill.io.audio import AUDIO_SUFFIXES, MIN_SAMPLES, NON_FINITE, SAMPLE_RATE, AudioError, all_finite


@dataclass(frozen=True)
class AudioItem:
    path: str
    num_samples: int


@dataclass
class CorpusIndex:
    items: list[AudioItem]
    problems: list[str]  # "path: reason" for each file left out

    @property
    def hours(self) -> float:
        return sum(item.num_samples for item in self.items) / SAMPLE_RATE / 3600


def _check_header(path: Path) -> tuple[Optional[int], str]:
    try:
        info = soundfile.info(str(path))
    except Exception as error:  # corrupt or not audio at all
        return None, f"cannot read audio ({error})"
    if info.samplerate != SAMPLE_RATE:
        return None, f"sample rate is {info.samplerate} Hz, expected {SAMPLE_RATE} Hz"
    if info.channels != 1:
        return None, f"{info.channels} channels, expected mono"
    if info.frames < MIN_SAMPLES:
        return None, f"{info.frames} samples, at least {MIN_SAMPLES} needed" if info.frames else "empty audio"
    return int(info.frames), ""


def index_corpus(source: str | Path) -> CorpusIndex:
    """Index a directory of audio or a .tsv manifest; bad files are listed in `problems`, not used."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"training data {source} not found (expected a directory of .flac/.wav or a .tsv manifest)")
    items, problems = [], []
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not paths:
            raise FileNotFoundError(f"no .flac or .wav files under {source}")
        for path in paths:
            frames, reason = _check_header(path)
            if frames is None:
                problems.append(f"{path}: {reason}")
            else:
                items.append(AudioItem(str(path), frames))
    else:
        lines = source.read_text().splitlines()
        if not lines:
            raise ValueError(f"{source}: empty manifest; expected a root line, then 'relative_path<TAB>num_samples' lines")
        root = Path(lines[0].strip())
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[1].strip().isdigit():
                raise ValueError(f"{source}:{number}: expected 'relative_path<TAB>num_samples', got {line!r}")
            path, frames = root / parts[0], int(parts[1])
            if not path.is_file():
                problems.append(f"{path}: file not found")
            elif frames < MIN_SAMPLES:
                problems.append(f"{path}: {frames} samples, at least {MIN_SAMPLES} needed")
            else:
                items.append(AudioItem(str(path), frames))
    if not items:
        raise ValueError(f"{source}: no usable audio; problems: {problems[:5]}")
    return CorpusIndex(items, problems)


class CropDataset(Dataset):
    """Item (index, offset) -> (waveform crop, path). A file that fails to read yields (None, 'path: reason')."""

    def __init__(self, items: Sequence[AudioItem], crop_samples: int):
        self.items, self.crop_samples = list(items), crop_samples

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> tuple[Optional[torch.Tensor], str]:
        index, offset = key
        item = self.items[index]
        try:
            data, sample_rate = soundfile.read(item.path, start=offset, stop=offset + self.crop_samples, dtype="float32", always_2d=True)
            if sample_rate != SAMPLE_RATE or data.shape[1] != 1 or data.shape[0] < MIN_SAMPLES:
                raise AudioError(f"{sample_rate} Hz, {data.shape[1]} channels, {data.shape[0]} samples")
        except Exception as error:
            return None, f"{item.path}: cannot read audio ({error})"
        if not all_finite(data):
            return None, f"{item.path}: {NON_FINITE}"
        return torch.from_numpy(data[:, 0].copy()), item.path


def collate(batch: Sequence[tuple[Optional[torch.Tensor], str]]) -> dict:
    """Pads the good crops (their files in `paths`); passes along the reasons for the bad ones (`failed`) so the
    trainer can report them."""
    good = [wav for wav, _ in batch if wav is not None]
    paths = [path for wav, path in batch if wav is not None]
    failed = [message for wav, message in batch if wav is None]
    if not good:
        return {"waveforms": None, "lengths": None, "paths": paths, "failed": failed}
    lengths = torch.tensor([wav.numel() for wav in good])
    return {"waveforms": torch.nn.utils.rnn.pad_sequence(good, batch_first=True), "lengths": lengths, "paths": paths,
            "failed": failed}


class BucketBatchSampler:
    """Yields this rank's share of each global batch as (index, crop offset) pairs.

    Per epoch: shuffle, cut into buckets of `bucket_batches` batches, sort each bucket by cropped length,
    split into batches, shuffle the batch order. Incomplete batches are dropped. Rank r of W takes every
    W-th element of each global batch, so W ranks together see exactly the single-process batch.
    """

    def __init__(self, items: Sequence[AudioItem], batch_size: int, crop_samples: int, seed: int,
                 rank: int = 0, world_size: int = 1, bucket_batches: int = 50):
        if batch_size % world_size:
            raise ValueError(f"data.batch_size {batch_size} must be divisible by the number of processes {world_size}")
        if len(items) < batch_size:
            raise ValueError(f"{len(items)} usable files is fewer than one batch (data.batch_size={batch_size})")
        self.lengths = np.array([item.num_samples for item in items])
        self.batch_size, self.crop_samples, self.seed = batch_size, crop_samples, seed
        self.rank, self.world_size, self.bucket_batches = rank, world_size, bucket_batches
        self.epoch, self.start_batch = 0, 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def global_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        room = np.maximum(self.lengths - self.crop_samples, 0)
        offsets = (rng.random(len(self.lengths)) * (room + 1)).astype(np.int64)
        cropped = np.minimum(self.lengths, self.crop_samples)
        bucket = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order) - self.batch_size + 1, bucket):
            chunk = order[start : start + bucket]
            chunk = chunk[np.argsort(-cropped[chunk], kind="stable")]
            for b in range(0, len(chunk) - self.batch_size + 1, self.batch_size):
                batches.append([(int(i), int(offsets[i])) for i in chunk[b : b + self.batch_size]])
        return [batches[i] for i in rng.permutation(len(batches))]

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch)) - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.global_batches(self.epoch)[self.start_batch :]:
            yield batch[self.rank :: self.world_size]

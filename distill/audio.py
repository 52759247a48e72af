"""Waveform checks, padding and reading. Every model here takes 16 kHz mono audio."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile
import torch
from torch import Tensor

SAMPLE_RATE = 16000
MIN_SAMPLES = 400  # one frame of the wav2vec 2.0 CNN (25 ms): shorter audio yields no frames


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, not mono, or not 16 kHz."""


def check_waveforms(wavs: Sequence[Tensor], sample_rate: int = SAMPLE_RATE) -> None:
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"expected {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample it first")
    if len(wavs) == 0:
        raise AudioError("expected a non-empty list of waveforms, got an empty list")
    for i, wav in enumerate(wavs):
        if not isinstance(wav, Tensor):
            raise AudioError(f"waveform {i}: expected a torch.Tensor, got {type(wav).__name__}")
        if wav.ndim != 1:
            raise AudioError(f"waveform {i}: expected a 1-D mono waveform (samples,), got shape {tuple(wav.shape)}; "
                             "mix stereo down to mono first")
        if wav.numel() < MIN_SAMPLES:
            raise AudioError(f"waveform {i}: {wav.numel()} samples is too short; at least {MIN_SAMPLES} samples "
                             f"({MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms at 16 kHz) are needed")


def pad_waveforms(wavs: Sequence[Tensor], sample_rate: int = SAMPLE_RATE) -> tuple[Tensor, Tensor]:
    """Validated list of 1-D waveforms -> zero-padded (B, max_samples) float tensor and (B,) lengths."""
    check_waveforms(wavs, sample_rate)
    lengths = torch.tensor([wav.numel() for wav in wavs], device=wavs[0].device)
    padded = torch.nn.utils.rnn.pad_sequence([wav.float() for wav in wavs], batch_first=True)
    return padded, lengths


def unpad(padded: Tensor, lengths: Tensor) -> list[Tensor]:
    return [row[:length] for row, length in zip(padded, lengths.tolist())]


def read_audio(path: str | Path) -> np.ndarray:
    """Reads a 16 kHz mono file as float32; raises AudioError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        data, sample_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises RuntimeError/LibsndfileError for corrupt data
        raise AudioError(f"{path}: cannot read audio ({error})") from error
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"{path}: sample rate is {sample_rate} Hz, expected {SAMPLE_RATE} Hz")
    if data.shape[1] != 1:
        raise AudioError(f"{path}: {data.shape[1]} channels, expected mono")
    if data.shape[0] < MIN_SAMPLES:
        raise AudioError(f"{path}: {data.shape[0]} samples is too short (at least {MIN_SAMPLES} needed)")
    return data[:, 0]

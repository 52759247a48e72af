"""Waveform checks, padding and reading. Every model here takes 16 kHz mono audio.

Importing this module needs numpy alone (torch and soundfile are imported by the functions that use them), so the
torch-free runtime (`distill.deploy.runtime`, `gendistiller embed`) shares these checks and this reader.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

SAMPLE_RATE = 16000
MIN_SAMPLES = 400  # one frame of the wav2vec 2.0 CNN (25 ms): shorter audio yields no frames
AUDIO_SUFFIXES = (".flac", ".wav")


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, not mono, not 16 kHz, or holding NaN or infinite samples."""

NON_FINITE = "non-finite samples (NaN or inf)"  # the reason given for audio holding them, wherever it is read


def all_finite(samples: Any) -> bool:
    """Whether every sample of a numpy array or torch tensor is finite (integer PCM always is)."""
    if hasattr(samples, "isfinite"):  # a torch tensor
        return bool(samples.isfinite().all())
    return bool(np.isfinite(samples).all())


def check_waveforms(wavs: Sequence[Any], sample_rate: int = SAMPLE_RATE) -> None:
    """A non-empty list of 1-D float waveforms (torch tensors or numpy arrays), each at least MIN_SAMPLES long, every
    sample finite."""
    if sample_rate != SAMPLE_RATE:
        raise AudioError(f"expected {SAMPLE_RATE} Hz audio, got {sample_rate} Hz; resample it first")
    if len(wavs) == 0:
        raise AudioError("expected a non-empty list of waveforms, got an empty list")
    for i, wav in enumerate(wavs):
        if not hasattr(wav, "shape") or not hasattr(wav, "dtype"):
            raise AudioError(f"waveform {i}: expected a torch.Tensor or numpy array, got {type(wav).__name__}")
        if len(wav.shape) != 1:
            raise AudioError(f"waveform {i}: expected a 1-D mono waveform (samples,), got shape {tuple(wav.shape)}; "
                             "mix stereo down to mono first")
        if wav.shape[0] < MIN_SAMPLES:
            raise AudioError(f"waveform {i}: {wav.shape[0]} samples is too short; at least {MIN_SAMPLES} samples "
                             f"({MIN_SAMPLES / SAMPLE_RATE * 1000:.0f} ms at 16 kHz) are needed")
        if not _is_float(wav.dtype):
            raise AudioError(f"waveform {i}: expected float samples in [-1, 1], got {wav.dtype}; "
                             "scale integer PCM to floats first (int16: divide by 32768)")
        if not all_finite(wav):
            raise AudioError(f"waveform {i}: {NON_FINITE}")


def _is_float(dtype: Any) -> bool:
    """torch dtypes say so themselves; numpy dtypes through np.issubdtype."""
    if hasattr(dtype, "is_floating_point"):
        return bool(dtype.is_floating_point)
    return isinstance(dtype, np.dtype) and np.issubdtype(dtype, np.floating)


def pad_waveforms(wavs: Sequence[Tensor], sample_rate: int = SAMPLE_RATE) -> tuple[Tensor, Tensor]:
    """Validated list of 1-D waveforms -> zero-padded (B, max_samples) float tensor and (B,) lengths."""
    import torch

    check_waveforms(wavs, sample_rate)
    wavs = [torch.as_tensor(wav) for wav in wavs]
    lengths = torch.tensor([wav.numel() for wav in wavs], device=wavs[0].device)
    padded = torch.nn.utils.rnn.pad_sequence([wav.float() for wav in wavs], batch_first=True)
    return padded, lengths


def unpad(padded: Tensor, lengths: Tensor) -> list[Tensor]:
    return [row[:length] for row, length in zip(padded, lengths.tolist())]


def read_audio(path: str | Path) -> np.ndarray:
    """Reads a 16 kHz mono file as float32; raises AudioError naming the file and the problem."""
    with AudioFile(path) as audio:
        return audio[0: len(audio)]


class AudioFile:
    """A 16 kHz mono file read by spans, `audio[first:end]` (float32), never whole unless asked: long recordings are
    read window by window. Checked on opening like `read_audio`, and each span read for non-finite samples; AudioError
    names the file and the problem."""

    def __init__(self, path: str | Path):
        import soundfile

        self.path = Path(path)
        if not self.path.is_file():
            raise AudioError(f"{self.path}: audio file not found")
        try:
            self.file = soundfile.SoundFile(str(self.path))
        except Exception as error:  # soundfile raises RuntimeError/LibsndfileError for corrupt data
            raise AudioError(f"{self.path}: cannot read audio ({error})") from error
        problem = (f"sample rate is {self.file.samplerate} Hz, expected {SAMPLE_RATE} Hz" if self.file.samplerate != SAMPLE_RATE
                   else f"{self.file.channels} channels, expected mono" if self.file.channels != 1
                   else f"{self.file.frames} samples is too short (at least {MIN_SAMPLES} needed)" if self.file.frames < MIN_SAMPLES
                   else None)
        if problem:
            self.file.close()
            raise AudioError(f"{self.path}: {problem}")

    def __len__(self) -> int:
        return self.file.frames

    def __getitem__(self, span: slice) -> np.ndarray:
        first, end, _ = span.indices(len(self))
        try:
            self.file.seek(first)
            data = self.file.read(end - first, dtype="float32", always_2d=True)
        except Exception as error:
            raise AudioError(f"{self.path}: cannot read samples {first} to {end} ({error})") from error
        if len(data) != end - first:
            raise AudioError(f"{self.path}: read {len(data)} samples at {first}, expected {end - first} (truncated file?)")
        if not all_finite(data):
            raise AudioError(f"{self.path}: {NON_FINITE}")
        return data[:, 0]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> AudioFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def audio_files(folders: Sequence[str | Path], limit: int | None = None) -> list[Path]:
    """Sorted audio files under `folders`; with `limit`, that many spread evenly over the sorted list."""
    files = sorted(p for folder in folders for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no .flac or .wav files under {[str(f) for f in folders]}")
    if limit and limit < len(files):
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return files

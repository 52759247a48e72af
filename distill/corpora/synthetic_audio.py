"""Building blocks of the synthetic corpora: speakers, clips synthesised with espeak-ng and sox, noise recordings,
two-speaker mixtures, 16-bit audio files, and the `Plan` a part's planner returns.

A speaker is an espeak-ng English voice + variant (e.g. `en-gb-scotland+f2`) with its own pitch and speaking rate;
every clip gets a little pitch/rate jitter, random level and a noise floor. Everything random is drawn from the
generator a planner passes in, or from a clip's own seed, so the same seed gives byte-identical files.
"""
from __future__ import annotations

import itertools
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from distill.corpora.system_tools import require_tool
from distill.io.audio import SAMPLE_RATE


class CorpusError(RuntimeError):
    """A missing tool or a folder the corpus builder refuses to touch."""


# espeak-ng English voices and variants that exist in espeak-ng 1.51 (`espeak-ng --voices=en`,
# `--voices=variant`); a speaker is one (voice, variant) pair plus its own pitch and rate.
_VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")
_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
             "klatt3", "croak", "Andy", "Annie", "Alex", "aunty", "belinda", "benjamin", "edward", "iven",
             "john", "linda", "max", "michel", "paul", "quincy", "robert", "steph", "travis", "victor", "zac")


@dataclass(frozen=True)
class Speaker:
    voice: str  # espeak-ng voice with variant, e.g. "en-gb-scotland+f2"
    pitch: int  # espeak-ng -p, 0..99
    rate: int  # espeak-ng -s, words per minute

    def say(self, rng: np.random.Generator, path: Path, text: str, **kwargs) -> "Utterance":
        """One utterance by this speaker, with a little pitch/rate jitter and random level and noise."""
        return Utterance(
            path=path,
            text=text,
            voice=self.voice,
            pitch=int(np.clip(self.pitch + rng.integers(-4, 5), 0, 99)),
            rate=int(self.rate * rng.uniform(0.92, 1.08)),
            peak=float(rng.uniform(0.3, 0.9)),
            snr_db=float(rng.uniform(25.0, 45.0)),
            seed=int(rng.integers(2**31)),
            **kwargs,
        )


def draw_speakers(rng: np.random.Generator, n: int) -> list[Speaker]:
    """n speakers, distinct (voice, variant) pairs first, with their own pitch (25..75) and rate (135..195)."""
    pairs = list(itertools.product(_VOICES, _VARIANTS))
    order = rng.permutation(len(pairs))
    speakers = []
    for i in range(n):
        voice, variant = pairs[order[i % len(pairs)]]
        speakers.append(Speaker(f"{voice}+{variant}", int(rng.integers(25, 76)), int(rng.integers(135, 196))))
    return speakers


@dataclass(frozen=True)
class Utterance:
    """A clip to synthesise: espeak-ng at 22.05 kHz -> sox (effects, 16 kHz) -> trim, level, noise, 16-bit."""

    path: Path
    text: str  # what espeak-ng says
    voice: str
    pitch: int
    rate: int
    peak: float  # peak level of the speech, full scale = 1
    snr_db: float  # white-noise floor relative to the speech RMS
    seed: int  # for the noise and the placement
    effects: tuple[str, ...] = ()  # sox effects applied before resampling (a "channel")
    length: int | None = None  # fixed length in samples (speech placed at a random offset); None: natural
    pad: tuple[float, float] = (0.05, 0.3)  # silence added on each side (seconds, uniform) when length is None
    word_gap: int = 0  # espeak-ng -g: extra pause between words, in units of 10 ms

    def render(self) -> np.ndarray:
        speech = _trim(_synthesize(self.text, self.voice, self.pitch, self.rate, self.effects, self.word_gap))
        if speech.size == 0:
            raise CorpusError(f"espeak-ng produced silence for {self.text!r} with voice {self.voice}")
        rng = np.random.default_rng(self.seed)
        speech = speech * (self.peak / np.abs(speech).max())
        if self.length is None:
            before, after = (int(rng.uniform(*self.pad) * SAMPLE_RATE) for _ in range(2))
            wav = np.concatenate([np.zeros(before, np.float32), speech, np.zeros(after, np.float32)])
        else:
            wav = np.zeros(self.length, np.float32)
            if speech.size >= self.length:
                start = (speech.size - self.length) // 2
                wav[:] = speech[start:start + self.length]
            else:
                offset = int(rng.integers(0, self.length - speech.size + 1))
                wav[offset:offset + speech.size] = speech
        rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)))
        noise = rng.standard_normal(wav.size) * rms * 10 ** (-self.snr_db / 20)
        return (wav + noise).astype(np.float32)


def _synthesize(text: str, voice: str, pitch: int, rate: int, effects: Sequence[str] = (), word_gap: int = 0) -> np.ndarray:
    """espeak-ng -> sox -> float32 mono 16 kHz. sox runs with -D (no dither), so the result is repeatable."""
    gap = ["-g", str(word_gap)] if word_gap else []
    espeak = subprocess.run([require_tool("espeak-ng", "espeak-ng", CorpusError), "-v", voice, "-p", str(pitch), "-s", str(rate),
                             *gap, "--stdout", text], capture_output=True)
    if espeak.returncode != 0 or len(espeak.stdout) <= 44:
        raise CorpusError(f"espeak-ng failed for voice {voice!r} and text {text!r}: "
                          f"{espeak.stderr.decode(errors='replace').strip() or 'no audio'}")
    headroom = ("gain", "-n", "-10") if effects else ()  # so that boosting filters cannot clip
    sox = subprocess.run([require_tool("sox", "sox", CorpusError), "-D", "-V1", "-t", "wav", "-", "-t", "raw", "-e",
                          "floating-point", "-b", "32", "-c", "1", "-r", str(SAMPLE_RATE), "-", *headroom, *effects,
                          "rate", str(SAMPLE_RATE)],
                         input=espeak.stdout, capture_output=True)
    if sox.returncode != 0:
        raise CorpusError(f"sox failed ({' '.join(effects) or 'no effects'}): {sox.stderr.decode(errors='replace')}")
    return np.frombuffer(sox.stdout, dtype="<f4").copy()


def _trim(wav: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Cut leading and trailing silence (samples below threshold * peak)."""
    if wav.size == 0:
        return wav
    loud = np.flatnonzero(np.abs(wav) > threshold * np.abs(wav).max())
    return wav[loud[0]:loud[-1] + 1] if loud.size else wav[:0]


@dataclass(frozen=True)
class Noise:
    """A seeded background noise recording: white, pink, brown, hum (mains + harmonics) or tap (modulated band)."""

    path: Path
    kind: str
    seconds: float
    level: float  # RMS, full scale = 1
    seed: int

    def render(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        n = int(self.seconds * SAMPLE_RATE)
        white = rng.standard_normal(n)
        freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        if self.kind == "white":
            wav = white
        elif self.kind in ("pink", "brown"):
            power = 0.5 if self.kind == "pink" else 1.0
            wav = np.fft.irfft(np.fft.rfft(white) / np.maximum(freqs, 20.0) ** power, n)
        elif self.kind == "hum":
            t = np.arange(n) / SAMPLE_RATE
            f0 = rng.choice([50.0, 60.0])
            wav = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
            wav = wav + 0.3 * white
        elif self.kind == "tap":
            band = (freqs > 800) & (freqs < 4000)
            wav = np.fft.irfft(np.fft.rfft(white) * band, n)
            t = np.arange(n) / SAMPLE_RATE
            wav = wav * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
        else:
            raise ValueError(f"unknown noise kind {self.kind!r}; expected white, pink, brown, hum or tap")
        wav = wav * (self.level / (np.sqrt(np.mean(wav**2)) + 1e-12))
        return wav.astype(np.float32)


NOISE_KINDS = ("white", "pink", "brown", "hum", "tap")


def write_audio(path: Path, wav: np.ndarray) -> int:
    """16-bit PCM, FLAC or WAV by suffix; returns the number of samples."""
    import soundfile

    pcm = np.clip(np.round(wav * 32767.0), -32768, 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    soundfile.write(str(path), pcm, SAMPLE_RATE, format=fmt, subtype="PCM_16")
    return int(pcm.size)


@dataclass(frozen=True)
class Mixture:
    """Two speakers' utterances summed with an overlap (LibriMix-style): rendered parts placed at their offsets."""

    path: Path
    parts: tuple[tuple[Utterance, float], ...]  # (utterance, start in seconds)
    seconds: float

    def render(self) -> np.ndarray:
        wav = np.zeros(int(self.seconds * SAMPLE_RATE), np.float32)
        for utterance, start in self.parts:
            speech = utterance.render()
            begin = int(start * SAMPLE_RATE)
            wav[begin:begin + speech.size] += speech[: wav.size - begin]
        return wav


@dataclass
class Plan:
    """What a part's planner returns: the audio to render, the text files to write and an optional finishing step."""

    audio: list[Utterance | Noise | Mixture] = field(default_factory=list)
    files: dict[Path, str] = field(default_factory=dict)  # text files, written before the audio
    finish: Callable[[dict[Path, int]], dict[Path, str]] | None = None  # sample counts -> more text files

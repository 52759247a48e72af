"""Long recordings in windows: the one rule every inference path uses (`Student.infer`, `distill.deploy.runtime.OnnxStudent`,
`gendistiller embed`, the s3prl upstream when its config asks).

A recording of F frames (the CNN's count: receptive field 400 samples, hop 320 for the wav2vec 2.0 CNN) is cut into
cores of at most W seconds of frames, of equal size but the last; each core is run with up to C seconds of frames on either side
(its window), and only the core's frames are kept. Cuts fall on the frame grid: a window of frames [a, b) is run on
samples [a * hop, (b - 1) * hop + receptive field) (the last window to the recording's end), which gives exactly
b - a frames with the same samples under each frame as in the whole recording, so the stitched output has the whole recording's frame count. The boundary between
two cores is the middle of their windows' overlap, so each frame comes from the window where it has the most context.
A recording that fits in one window (F <= W + 2C seconds of frames) is run whole, as without chunking.

A CNN whose first layer normalises each channel over the whole recording (the wav2vec 2.0 CNN's GroupNorm over
time, `RecordingNorm`) gets the whole recording's statistics: a first pass runs that layer's convolution piece by
piece and pools its per-channel mean and variance (`recording_moments`), and every window normalises with them. What
chunking then changes is only what a frame's context is cut to (attention, the positional convolution); README and
BENCHMARKS.md ("Long recordings") has the measured fidelity. (Geometries with `normalize`, a waveform standardised per utterance,
still standardise each window on its own; their CNNs, the Large models', have no GroupNorm over time.)
Numpy only, like `distill.deploy.runtime`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol, Sequence, TypeVar

import numpy as np

from distill.io.audio import SAMPLE_RATE

State = TypeVar("State")  # a (frames, dim) array or tensor: anything sliced on its first axis
Moments = tuple[np.ndarray, np.ndarray]  # per-channel mean and variance, (channels,) each


class Samples(Protocol):
    """A recording's samples, read by spans: an array, a tensor or a distill.io.audio.AudioFile (read lazily)."""

    def __len__(self) -> int: ...

    def __getitem__(self, span: slice) -> np.ndarray: ...


@dataclass(frozen=True)
class FrameGrid:
    """Where a CNN's frames lie: frame t covers samples [t * hop, t * hop + receptive_field)."""

    receptive_field: int = 400  # the wav2vec 2.0 CNN: 25 ms
    hop: int = 320  # 20 ms

    @classmethod
    def of(cls, conv_layers: Sequence[tuple[int, int, int]]) -> FrameGrid:
        """The grid of a stack of unpadded convolutions given as (channels, kernel, stride)."""
        receptive_field, hop = 1, 1
        for _, kernel, stride in conv_layers:
            receptive_field += (kernel - 1) * hop
            hop *= stride
        return cls(receptive_field, hop)

    def frames(self, samples: int) -> int:
        """Frames of a recording: the same count as the cascade of convolutions (floor division at each)."""
        return 0 if samples < self.receptive_field else (samples - self.receptive_field) // self.hop + 1

    def samples(self, start: int, stop: int) -> tuple[int, int]:
        """The samples [first, end) under frames [start, stop)."""
        return start * self.hop, (stop - 1) * self.hop + self.receptive_field

    def frames_in(self, seconds: float) -> int:
        return round(seconds * SAMPLE_RATE / self.hop)


@dataclass(frozen=True)
class Chunking:
    """Windows of `window_seconds` of kept frames, each run with `context_seconds` more on each side."""

    window_seconds: float = 20.0
    # 2 s: every student measured keeps mean cosine >= 0.995 and 1st percentile >= 0.98 per state on audio of its own
    # domain (BENCHMARKS.md, "Long recordings")
    context_seconds: float = 2.0

    def __post_init__(self) -> None:
        if not self.window_seconds > 0 or not self.context_seconds >= 0:
            raise ValueError(f"chunking needs window_seconds > 0 and context_seconds >= 0, got {self.window_seconds} "
                             f"and {self.context_seconds}")

    def longest_frames(self, grid: FrameGrid) -> int:
        """The most frames one window runs: a recording up to this long is run whole."""
        return grid.frames_in(self.window_seconds) + 2 * grid.frames_in(self.context_seconds)


@dataclass(frozen=True)
class Window:
    start: int  # frames [start, stop) of the recording are run ...
    stop: int
    keep_start: int  # ... and frames [keep_start, keep_stop) of the recording are kept from it
    keep_stop: int


def runs_whole(num_samples: int, chunking: Optional[Chunking], grid: FrameGrid = FrameGrid()) -> bool:
    """Whether a recording of `num_samples` is run as one window: without `chunking`, or when it fits in one."""
    return chunking is None or grid.frames(num_samples) <= chunking.longest_frames(grid)


def windows(num_samples: int, chunking: Optional[Chunking], grid: FrameGrid = FrameGrid()) -> list[Window]:
    """The windows of a recording of `num_samples` (one, the whole recording, when it `runs_whole`)."""
    total = grid.frames(num_samples)
    if total == 0:
        raise ValueError(f"{num_samples} samples give no frame: at least {grid.receptive_field} are needed")
    if runs_whole(num_samples, chunking, grid):
        return [Window(0, total, 0, total)]
    context = grid.frames_in(chunking.context_seconds)
    count = math.ceil(total / max(1, grid.frames_in(chunking.window_seconds)))
    core = math.ceil(total / count)  # equal cores but the last: the windows between have one shape
    cuts = [i * core for i in range(count)] + [total]  # (count - 1) * core < total: no empty core
    return [Window(max(0, first - context), min(total, last + context), first, last)
            for first, last in zip(cuts, cuts[1:])]


@dataclass(frozen=True)
class RecordingNorm:
    """A CNN's first layer that normalises each channel over the whole recording: its frame grid, and `moments(first,
    end)` -> the per-channel mean and variance of its convolution's output on samples [first, end) of the recording."""

    grid: FrameGrid
    moments: Callable[[int, int], Moments]


def recording_moments(norm: RecordingNorm, num_samples: int, piece_frames: int) -> Moments:
    """The per-channel mean and variance over every frame of the layer (as over the whole recording), from pieces of
    `piece_frames` frames that cover each frame once, pooled in float64 (Chan et al.: the variance of the whole is the
    count-weighted mean of each piece's variance plus its mean's squared distance to the whole's)."""
    total = norm.grid.frames(num_samples)
    counts, means, variances = [], [], []
    for start in range(0, total, piece_frames):
        stop = min(total, start + piece_frames)
        mean, variance = norm.moments(*norm.grid.samples(start, stop))
        counts.append(stop - start)
        means.append(np.asarray(mean, np.float64))
        variances.append(np.asarray(variance, np.float64))
    weights = np.array(counts, np.float64)[:, None] / total
    mean = (weights * means).sum(0)
    variance = (weights * (np.array(variances) + (np.array(means) - mean) ** 2)).sum(0)
    return mean.astype(np.float32), variance.astype(np.float32)


def run_in_windows(run: Callable[[int, int, Optional[Moments]], Sequence[State]], num_samples: int,
                   chunking: Optional[Chunking], grid: FrameGrid = FrameGrid(), norm: Optional[RecordingNorm] = None
                   ) -> Iterator[tuple[Window, list[State]]]:
    """Calls `run(first_sample, end_sample, moments)` -> states, each (frames, ...), once per window, in order, and
    yields the window with the kept frames of each state. `moments`: with a `norm` and more than one window, the
    whole recording's (computed first, a window's length at a time), for the window to normalise with; else None."""
    plan = windows(num_samples, chunking, grid)
    moments = None
    if norm is not None and chunking is not None and len(plan) > 1:
        moments = recording_moments(norm, num_samples, norm.grid.frames_in(chunking.window_seconds))
    for window in plan:
        first, end = grid.samples(window.start, window.stop)
        # The last window runs to the recording's end, as the whole recording does: the samples past the last frame
        # (fewer than a hop) make no frame, but the CNN's first layer sees them.
        states = run(first, num_samples if window is plan[-1] else end, moments)
        frames = window.stop - window.start
        if any(len(state) != frames for state in states):
            raise RuntimeError(f"the model returned {[len(state) for state in states]} frames for a window of {frames}: "
                               f"its frame grid is not {grid}")
        keep = slice(window.keep_start - window.start, window.keep_stop - window.start)
        yield window, [state[keep] for state in states]


class NpyWriter:
    """A .npy file of states (`shape` (states, frames, dim), or (frames, dim) for one) written span by span as windows
    are produced: positioned writes into the file, nothing mapped, so memory holds one window whatever the length.
    It is written as NAME.partial and renamed when complete (`close`); `discard` removes it."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype | type = np.float32):
        self.path, self.partial = Path(path), Path(str(path) + ".partial")
        self.frames, self.dim = shape[-2:]
        self.dtype = np.dtype(dtype)
        self.file = open(self.partial, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_1_0(self.file, header)
        self.offset = self.file.tell()
        self.file.truncate(self.offset + math.prod(shape) * self.dtype.itemsize)

    def write(self, first_frame: int, states: Sequence[np.ndarray]) -> None:
        """Frames [first_frame, first_frame + len) of each state, in the order of the file's first axis."""
        for index, state in enumerate(states):
            self.file.seek(self.offset + (index * self.frames + first_frame) * self.dim * self.dtype.itemsize)
            self.file.write(np.ascontiguousarray(state, self.dtype).tobytes())

    def close(self) -> Path:
        self.file.close()
        self.partial.replace(self.path)
        return self.path

    def discard(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)

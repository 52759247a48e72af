"""Discrete units for HuBERT-style pretraining, first iteration: k-means clusters of MFCC frames.

As in HuBERT (fairseq `examples/hubert/simple_kmeans`): 13 MFCCs (Kaldi's definition, through torchaudio) plus
deltas and delta-deltas, 39 values per frame, clustered by scikit-learn's `MiniBatchKMeans`. Unlike fairseq's
100 Hz labels, the MFCC window and hop here are the encoder CNN's own (400 and 320 samples for the wav2vec 2.0
front-end), so frame t of the MFCCs covers exactly the samples of the model's frame t and the counts agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torchaudio
from torch import Tensor

from distill.io.audio import SAMPLE_RATE
from distill.nn.components import ConvSpec


def frame_geometry(conv_layers: ConvSpec) -> tuple[int, int]:
    """(window, hop) in samples of a conv stack: its receptive field and the product of its strides."""
    window, hop = 1, 1
    for _, kernel, stride in conv_layers:
        window += (kernel - 1) * hop
        hop *= stride
    return window, hop


def mfcc_features(waveform: Tensor, window: int, hop: int) -> Tensor:
    """One unpadded 1-D waveform -> (frames, 39): MFCC + deltas + delta-deltas, frames = 1 + (samples - window) // hop."""
    mfcc = torchaudio.compliance.kaldi.mfcc(waveform.float().cpu()[None], sample_frequency=SAMPLE_RATE,
                                            frame_length=1000 * window / SAMPLE_RATE, frame_shift=1000 * hop / SAMPLE_RATE,
                                            use_energy=False, dither=0.0, snip_edges=True)
    deltas = torchaudio.functional.compute_deltas(mfcc.T)
    return torch.cat([mfcc.T, deltas, torchaudio.functional.compute_deltas(deltas)]).T


@dataclass
class UnitCodebook:
    """k-means centroids over standardised MFCC frames; `assign` gives each frame its nearest centroid."""

    mean: Tensor  # (39,) per-dimension mean of the frames k-means was fitted on
    std: Tensor  # (39,)
    centroids: Tensor  # (num_units, 39), in standardised space
    window: int
    hop: int
    chance_accuracy: float  # share of the most frequent unit among the fitted frames: accuracy of always guessing it

    @property
    def num_units(self) -> int:
        return self.centroids.shape[0]

    def assign(self, waveform: Tensor) -> Tensor:
        """Unit id of every frame of one unpadded waveform (what MiniBatchKMeans.predict gives)."""
        features = (mfcc_features(waveform, self.window, self.hop) - self.mean) / self.std
        return torch.cdist(features[None].double(), self.centroids[None].double())[0].argmin(-1)

    def assign_batch(self, waveforms: Tensor, lengths: Tensor, frames: int, ignore_index: int = -100) -> Tensor:
        """(B, samples) padded waveforms -> (B, frames) unit ids, `ignore_index` past each utterance's frames."""
        labels = torch.full((len(waveforms), frames), ignore_index, dtype=torch.long)
        for i, (waveform, length) in enumerate(zip(waveforms, lengths.tolist())):
            units = self.assign(waveform[:length])[:frames]
            labels[i, : len(units)] = units
        return labels.to(waveforms.device)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "centroids": self.centroids, "window": self.window, "hop": self.hop,
                "chance_accuracy": self.chance_accuracy}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "UnitCodebook":
        return cls(**state)


def fit_codebook(waveforms: Iterable[Tensor], num_units: int, window: int, hop: int, max_frames: int = 200_000,
                 seed: int = 0) -> UnitCodebook:
    """Fits `num_units` k-means clusters on the MFCC frames of `waveforms` (at most `max_frames`, sampled evenly)."""
    from sklearn.cluster import MiniBatchKMeans

    frames = torch.cat([mfcc_features(waveform, window, hop) for waveform in waveforms]).double()
    if len(frames) < num_units:
        raise ValueError(f"{len(frames)} MFCC frames is fewer than the {num_units} clusters asked for; "
                         "give more audio or set units.num_clusters lower")
    rng = np.random.default_rng(seed)
    if len(frames) > max_frames:
        frames = frames[np.sort(rng.choice(len(frames), max_frames, replace=False))]
    mean, std = frames.mean(0), frames.std(0).clamp(min=1e-5)
    kmeans = MiniBatchKMeans(n_clusters=num_units, batch_size=10_000, n_init=3, max_iter=100, random_state=seed)
    kmeans.fit(((frames - mean) / std).numpy())
    chance = float(np.bincount(kmeans.labels_, minlength=num_units).max() / len(frames))
    return UnitCodebook(mean, std, torch.from_numpy(kmeans.cluster_centers_).double(), window, hop, chance)

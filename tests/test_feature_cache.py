"""The frozen upstream's feature cache (gendistiller_upstream.feature_cache): hits, bounds, and when it stays off."""
from __future__ import annotations

import torch
from torch import nn

from gendistiller_upstream.feature_cache import FeatureCache

RATE = 160


class CountingUpstream(nn.Module):
    """An s3prl-like upstream: frames = samples // RATE, each frame a function of its own samples, padded frames zero;
    `hidden_state_N` is the same tensor as `hidden_states[N]`, as s3prl's UpstreamBase returns them. Counts utterances."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
        self.computed = 0

    def get_downsample_rates(self, key: str) -> int:
        return RATE

    def forward(self, wavs):
        self.computed += len(wavs)
        frames = max(len(w) for w in wavs) // RATE
        batch = torch.zeros(len(wavs), frames, 3)
        for row, wav in enumerate(wavs):
            n = len(wav) // RATE
            batch[row, :n] = wav[: n * RATE].view(n, RATE).mean(dim=1, keepdim=True) * self.scale
        layers = (batch, 2 * batch)
        return {"_hidden_states_info": ("layer0", "layer1"), "hidden_states": layers, "hidden_state_0": layers[0],
                "hidden_state_1": layers[1], "last_hidden_state": layers[1]}


def _wavs(*lengths: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(length, generator=generator) for length in lengths]


def _frozen(upstream: nn.Module, max_bytes: int = 2**20) -> FeatureCache:
    return FeatureCache(upstream, max_bytes).eval()


def _same_kept_frames(a: dict, b: dict, wavs: list[torch.Tensor]) -> bool:
    """Every tensor entry equal on the frames s3prl's Featurizer keeps of each utterance."""
    for name, value in a.items():
        if name == "_hidden_states_info":
            if value != b[name]:
                return False
            continue
        pairs = zip(value, b[name]) if isinstance(value, tuple) else [(value, b[name])]
        for x, y in pairs:
            for row, wav in enumerate(wavs):
                n = round(len(wav) / RATE)
                if not torch.equal(x[row, :n], y[row, :n]):
                    return False
    return True


def test_an_utterance_seen_again_is_not_computed_again_and_gives_the_same_features():
    upstream = CountingUpstream().eval()
    cache = _frozen(upstream)
    first, second, third = _wavs(1600, 3200, 800)
    with torch.no_grad():
        direct = upstream([first, second])
        out = cache([first, second])
        assert upstream.computed == 2 + 2 and _same_kept_frames(out, direct, [first, second])
        again = cache([second, third, first])  # another batch: only `third` is new
        assert upstream.computed == 4 + 1 and (cache.hits, cache.misses) == (2, 3)
        assert _same_kept_frames(again, upstream([second, third, first]), [second, third, first])
    assert again["hidden_state_1"] is again["hidden_states"][1] is again["last_hidden_state"]  # one tensor, as s3prl's
    assert again["_hidden_states_info"] == ("layer0", "layer1") and isinstance(again["hidden_states"], tuple)


def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    upstream = CountingUpstream()
    one_utterance = 2 * 10 * 3 * 4  # two distinct tensors of 10 frames x 3 floats (hidden_state_N shares them)
    cache = _frozen(upstream, max_bytes=2 * one_utterance)
    a, b, c = _wavs(1600, 1600, 1600)
    with torch.no_grad():
        for wav in (a, b, a, c):  # c pushes out b, the least recently used
            cache([wav])
        assert cache.bytes == 2 * one_utterance and upstream.computed == 3
        cache([a])
        cache([c])
        assert upstream.computed == 3
        cache([b])
        assert upstream.computed == 4
        cache([a, b, c])  # a batch larger than the bound is still served whole
        assert cache.bytes <= 3 * one_utterance


def test_off_with_gradients_or_in_training_mode():
    upstream = CountingUpstream()
    cache = _frozen(upstream)
    wav = _wavs(1600)
    with torch.no_grad():
        cache(wav)
        cache(wav)
    assert upstream.computed == 1 and cache.bytes > 0
    out = cache(wav)  # gradients on (a fine-tuned upstream): computed, and what was kept is dropped
    assert out["hidden_states"][0].requires_grad and upstream.computed == 2 and cache.bytes == 0
    cache.train()
    with torch.no_grad():
        cache(wav)
        cache(wav)
    assert upstream.computed == 4 and cache.bytes == 0
    off = FeatureCache(CountingUpstream(), max_bytes=0).eval()
    with torch.no_grad():
        off(wav)
        off(wav)
    assert off.upstream.computed == 2


def test_results_it_cannot_split_per_utterance_turn_it_off():
    class Pooled(CountingUpstream):
        def forward(self, wavs):
            self.computed += len(wavs)
            return {"pooled": torch.stack([w.mean() for w in wavs])}  # (B,): no frames to keep per utterance

    upstream = Pooled()
    cache = _frozen(upstream)
    wav = _wavs(1600)
    with torch.no_grad():
        first, second = cache(wav), cache(wav)
    assert torch.equal(first["pooled"], second["pooled"]) and upstream.computed == 2 and cache.max_bytes == 0


def test_the_launcher_wraps_only_a_frozen_upstream(monkeypatch):
    import argparse

    import pytest
    from s3prl.downstream.runner import Runner

    from distill.commands.superb import LauncherError, _feature_cache_bytes, _frozen_upstream_cached

    class Entry:
        def __init__(self) -> None:
            self.model = CountingUpstream()

    monkeypatch.setattr(Runner, "_get_upstream", lambda runner: Entry())
    frozen, fine_tuned = (argparse.Namespace(args=argparse.Namespace(upstream_trainable=t)) for t in (False, True))
    with _frozen_upstream_cached(2**20):
        assert isinstance(Runner._get_upstream(frozen).model, FeatureCache)
        assert isinstance(Runner._get_upstream(fine_tuned).model, CountingUpstream)
    with _frozen_upstream_cached(0):
        assert isinstance(Runner._get_upstream(frozen).model, CountingUpstream)
    assert isinstance(Runner._get_upstream(frozen).model, CountingUpstream)  # the runner's own method is back
    assert _feature_cache_bytes({}) == 512 * 2**20 and _feature_cache_bytes({"GENDISTILLER_FEATURE_CACHE_MB": "0"}) == 0
    with pytest.raises(LauncherError, match="megabytes"):
        _feature_cache_bytes({"GENDISTILLER_FEATURE_CACHE_MB": "lots"})


def test_the_launcher_reads_audio_files_with_soundfile_and_the_same_samples(tmp_path, monkeypatch):
    import numpy as np
    import soundfile
    import torchaudio

    from distill.commands.superb import _audio_files_read_with_soundfile

    wav = tmp_path / "a.wav"
    soundfile.write(wav, (np.sin(np.arange(8000) / 7) * 20000).astype(np.int16), 16000, subtype="PCM_16")
    expected, rate = torchaudio.load(str(wav), backend="ffmpeg")
    original = torchaudio.load
    with _audio_files_read_with_soundfile():
        samples, same_rate = torchaudio.load(str(wav))
        assert torchaudio.load is not original
    assert torch.equal(samples, expected) and same_rate == rate == 16000
    assert torchaudio.load is original

    calls = []

    def load(uri, *args, backend=None, **kwargs):  # a file soundfile cannot read goes to torchaudio's own choice
        calls.append(backend)
        if backend == "soundfile":
            raise RuntimeError("Error opening 'x.mp4': Format not recognised.")
        return "decoded"

    monkeypatch.setattr(torchaudio, "load", load)
    with _audio_files_read_with_soundfile():
        assert torchaudio.load("x.mp4") == "decoded" and torchaudio.load("y.mp4", backend="ffmpeg") == "decoded"
    assert calls == ["soundfile", None, "ffmpeg"]

"""Features of a frozen s3prl upstream, computed once per waveform for a run.

SUPERB trains a downstream on a frozen upstream for many epochs of the same corpus, and s3prl's runner recomputes
the upstream's features at every step. `FeatureCache` wraps any s3prl upstream (ours, WavLM, ...): each utterance's
features are kept under a hash of its waveform's bytes, so an utterance seen again (a later epoch, the same dev/test
item at the next evaluation) is not run through the upstream again; only the batch's new utterances are. Kept: what
s3prl's `Featurizer` uses of each utterance, its first round(samples / downsample rate) frames (it drops the rest),
zero-padded again to a batch. Random crops (SID's training crops, KS's silence clips) are new waveforms: computed.

It caches only while the upstream cannot change: calls in eval mode under no_grad (how s3prl's runner calls a frozen
upstream). A call with gradients or in training mode (a fine-tuned upstream, `-f`) empties it and is passed through,
so weights that an optimizer may have changed are never read from it. Bounded: least recently used utterances are
dropped beyond `max_bytes`.

    upstream = FeatureCache(s3prl_upstream, max_bytes=512 * 2**20)  # `gendistiller superb` wraps frozen upstreams
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

Utterance = dict[str, Any]  # a result key -> its (frames, ...) tensor, or a list of them (hidden_states)


def waveform_key(wav: Tensor) -> str:
    """The waveform's content: a hash of its samples' bytes, with its dtype and length."""
    samples = wav.detach().to("cpu").contiguous()
    return f"{samples.dtype}:{samples.numel()}:" + hashlib.blake2b(samples.numpy().tobytes(), digest_size=16).hexdigest()


def _is_batch(value: Any, batch: int) -> bool:
    return isinstance(value, Tensor) and value.dim() == 3 and value.size(0) == batch  # (B, T, D) per frame


def _is_layers(value: Any, batch: int) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(_is_batch(v, batch) for v in value)


def _pad(rows: Sequence[Tensor]) -> Tensor:
    return pad_sequence(list(rows), batch_first=True)


class FeatureCache(nn.Module):
    """A frozen s3prl upstream whose per-utterance features are kept for the run (see the module docstring)."""

    def __init__(self, upstream: nn.Module, max_bytes: int):
        super().__init__()
        self.upstream = upstream
        self.max_bytes = max_bytes
        self._kept: OrderedDict[str, Utterance] = OrderedDict()
        self._constants: dict[str, Any] = {}  # result entries that are no batch tensors (s3prl's _hidden_states_info)
        self._sizes: dict[str, int] = {}
        self.bytes = 0
        self.hits = self.misses = 0

    def get_downsample_rates(self, key: str) -> int:
        return self.upstream.get_downsample_rates(key)

    def clear(self) -> None:
        self._kept.clear()
        self._sizes.clear()
        self.bytes = 0

    def forward(self, wavs: Sequence[Tensor]) -> dict[str, Any]:
        if torch.is_grad_enabled() or self.training or self.max_bytes <= 0:
            self.clear()  # the weights may change from here on
            return self.upstream(wavs)
        keys = [waveform_key(wav) for wav in wavs]
        new = [keys.index(key) for key in dict.fromkeys(keys) if key not in self._kept]
        if new:
            computed = self.upstream([wavs[i] for i in new])
            utterances = self._split(computed, [wavs[i] for i in new])
            if utterances is None:  # a result this cache cannot split per utterance: never cached
                self.max_bytes = 0
                return self.upstream(wavs) if len(new) < len(wavs) else computed
            for i, utterance in zip(new, utterances):
                self._keep(keys[i], utterance)
        self.hits += len(wavs) - len(new)
        self.misses += len(new)
        found = [self._kept[key] for key in keys]
        for key in keys:
            self._kept.move_to_end(key)
        self._evict(protect=set(keys))
        return {**self._constants, **self._batch(found)}

    @staticmethod
    def _batch(found: Sequence[Utterance]) -> dict[str, Any]:
        """The utterances' entries zero-padded to a batch; entries that were one tensor in the result (s3prl's
        hidden_state_N and hidden_states[N]) are one padded tensor again."""
        padded: dict[int, Tensor] = {}  # id of the first utterance's row -> its padded batch

        def pad(rows: list[Tensor]) -> Tensor:
            if id(rows[0]) not in padded:
                padded[id(rows[0])] = _pad(rows)
            return padded[id(rows[0])]

        first = found[0]
        return {name: pad([u[name] for u in found]) if isinstance(first[name], Tensor)
                else type(first[name])(pad([u[name][layer] for u in found]) for layer in range(len(first[name])))
                for name in first}

    def _split(self, result: dict[str, Any], wavs: Sequence[Tensor]) -> Optional[list[Utterance]]:
        """Each utterance's entries of `result`, cut to the frames s3prl's Featurizer keeps of it."""
        if not isinstance(result, dict) or not any(_is_batch(v, len(wavs)) for v in result.values()):
            return None
        utterances: list[Utterance] = [{} for _ in wavs]
        cut: dict[int, list[Tensor]] = {}  # id of a result tensor -> its rows (one copy of a tensor under two names)

        def rows(name: str, value: Tensor) -> list[Tensor]:
            if id(value) not in cut:
                rate = self.upstream.get_downsample_rates(name)
                cut[id(value)] = [row[:round(len(wav) / rate)].clone() for row, wav in zip(value, wavs)]
            return cut[id(value)]

        for name, value in result.items():
            if _is_batch(value, len(wavs)):
                for utterance, row in zip(utterances, rows(name, value)):
                    utterance[name] = row
            elif _is_layers(value, len(wavs)):
                per_layer = [rows(name, layer) for layer in value]
                for number, utterance in enumerate(utterances):
                    utterance[name] = type(value)(layer[number] for layer in per_layer)
            elif isinstance(value, Tensor):  # a tensor not per utterance: not cacheable
                return None
            else:
                self._constants[name] = value
        return utterances

    def _keep(self, key: str, utterance: Utterance) -> None:
        tensors = {id(v): v for value in utterance.values() for v in ([value] if isinstance(value, Tensor) else value)}
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        self._kept[key] = utterance
        self._sizes[key] = size
        self.bytes += size

    def _evict(self, protect: set[str]) -> None:
        """Drops the least recently used utterances while over `max_bytes` (never those of the current batch)."""
        while self.bytes > self.max_bytes:
            key = next(iter(self._kept))
            if key in protect:
                break
            del self._kept[key]
            self.bytes -= self._sizes.pop(key)

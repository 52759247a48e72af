"""Any s3prl upstream as a teacher (`s3prl:NAME` or `s3prl:NAME:CKPT`), through its `hidden_states`.

s3prl's upstreams see a padded batch as a whole; WavLM/HuBERT Base normalise over padding in their first
CNN layer, so targets from these teachers can depend on the batch. Prefer a checkpoint teacher where one fits.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from distill.audio import unpad
from distill.components import valid_mask
from distill.teachers.base import Teacher, TeacherOutput

DOWNSAMPLE_RATE = 320


class S3PRLTeacher(Teacher):
    def __init__(self, spec: str, name: str, ckpt: Optional[str] = None):
        super().__init__(spec)
        try:
            import s3prl.hub as hub
        except ImportError as error:
            raise ImportError("an s3prl teacher needs s3prl: pip install s3prl==0.4.18") from error
        if not hasattr(hub, name):
            raise ValueError(f"{spec}: s3prl has no upstream named {name!r} (see s3prl.hub.options())")
        kwargs = {"ckpt": ckpt} if ckpt else {}
        self.upstream = getattr(hub, name)(**kwargs)
        self.family = f"s3prl:{name}"
        probe = self._hidden_states([torch.zeros(16000)])
        self.num_layers = len(probe) - 1
        self.dim = probe[0].shape[-1]
        self.freeze()

    def _hidden_states(self, wavs: list[Tensor]) -> list[Tensor]:
        with torch.no_grad():
            return list(self.upstream(wavs)["hidden_states"])

    def forward_padded(self, waveforms: Tensor, lengths: Tensor, num_layers: Optional[int] = None) -> TeacherOutput:
        hidden_states = self._hidden_states(unpad(waveforms, lengths))
        if num_layers is not None:
            hidden_states = hidden_states[: num_layers + 1]
        frames = hidden_states[0].shape[1]
        frame_lengths = torch.div(lengths + DOWNSAMPLE_RATE // 2, DOWNSAMPLE_RATE, rounding_mode="floor").clamp(max=frames)
        # Zero what lies beyond each utterance's frames so padded positions never look like targets.
        mask = valid_mask(frame_lengths, frames)[..., None]
        return TeacherOutput([h * mask.to(h.dtype) for h in hidden_states], frame_lengths)

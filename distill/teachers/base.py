"""The teacher contract: unpadded 16 kHz waveforms in, every hidden state plus valid frame counts out."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from distill.audio import SAMPLE_RATE, pad_waveforms


@dataclass
class TeacherOutput:
    hidden_states: list[Tensor]  # layer 0 (input of the first transformer layer) .. last layer, each (B, T, D)
    lengths: Tensor  # (B,) valid frames per utterance


class Teacher(nn.Module):
    """A frozen, eval-mode teacher. Subclasses implement `forward_padded`."""

    family: str
    num_layers: int
    dim: int

    def __init__(self, spec: str):
        super().__init__()
        self.spec = spec

    def freeze(self) -> "Teacher":
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # a teacher never leaves eval mode (no dropout, no layerdrop)

    @torch.no_grad()
    def forward(self, wavs: Sequence[Tensor], sample_rate: int = SAMPLE_RATE, num_layers: Optional[int] = None) -> TeacherOutput:
        waveforms, lengths = pad_waveforms(wavs, sample_rate)
        return self.forward_padded(waveforms, lengths, num_layers)

    def forward_padded(self, waveforms: Tensor, lengths: Tensor, num_layers: Optional[int] = None) -> TeacherOutput:
        raise NotImplementedError

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def identity(self) -> dict[str, Any]:
        """What a student checkpoint records about the teacher it was distilled from."""
        return {"spec": self.spec, "family": self.family, "num_layers": self.num_layers, "dim": self.dim,
                "num_parameters": self.num_parameters()}

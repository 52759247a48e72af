"""The teacher contract: unpadded 16 kHz waveforms in, every hidden state plus each utterance's valid frame count out.

Frames of teacher and student are aligned by one rule (`align_to_student`): both run at the same hop (checked before
training, `check_hop`); the teacher's states are cut or zero-padded to the student's frame axis; an utterance counts
min(student frames, teacher frames) valid frames, and the two counts may differ by at most `MAX_FRAME_DIFFERENCE`
(encoders at one hop pad differently: the wav2vec 2.0 CNN gives 1 + (samples - 400) // 320 frames, s3prl's
featurizer assumes round(samples / 320)).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.io.audio import SAMPLE_RATE, pad_waveforms
from distill.nn.components import valid_mask

MAX_FRAME_DIFFERENCE = 2


class FrameAlignmentError(ValueError):
    """Teacher and student frames that cannot be paired: other hops, or counts that differ by more than a padding."""


@dataclass
class TeacherOutput:
    hidden_states: list[Tensor]  # layer 0 (input of the first transformer layer) .. last layer, each (B, T, D)
    lengths: Tensor  # (B,) valid frames per utterance


class Teacher(nn.Module):
    """A frozen, eval-mode teacher. Subclasses implement `forward_padded` and set the attributes below."""

    family: str
    num_layers: int
    dim: int
    downsample_rate: int  # samples per frame (320 for the wav2vec 2.0 / HuBERT / WavLM CNN)
    # Whether every hidden state leaves a LayerNorm (post-LN encoders: wav2vec 2.0 / HuBERT / WavLM Base), which a
    # student's per-step LayerNorm reproduces as it is; pre-LN residual streams (Large models, Whisper) and teachers of
    # unknown structure do not. Decides student.target_standardization=auto.
    layers_end_in_layer_norm: bool = False
    # The longest recording (samples) run at once; longer ones run as consecutive windows of this length, each without
    # context from the others (Whisper's 30 s). None: every recording whole, however long.
    window_samples: Optional[int] = None

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


def check_hop(teacher: Teacher, student_hop: int) -> None:
    if teacher.downsample_rate != student_hop:
        raise FrameAlignmentError(
            f"the teacher {teacher.spec} gives a frame every {teacher.downsample_rate} samples, the student every "
            f"{student_hop}; distillation pairs frames one to one, so both need the same hop: give the student CNN "
            f"strides whose product is {teacher.downsample_rate} (student.geometry.conv_layers) or use a teacher at "
            f"{student_hop} samples per frame")


def align_to_student(teacher_out: TeacherOutput, student_lengths: Tensor, student_frames: int) -> TeacherOutput:
    """The teacher's states on the student's frame axis (cut or zero-padded to `student_frames`), with valid lengths
    min(student, teacher) per utterance. Raises FrameAlignmentError if the counts differ by more than
    MAX_FRAME_DIFFERENCE."""
    teacher_lengths = teacher_out.lengths.to(student_lengths.device)
    difference = (teacher_lengths - student_lengths).abs()
    if bool((difference > MAX_FRAME_DIFFERENCE).any()):
        raise FrameAlignmentError(
            f"teacher frames {teacher_lengths.tolist()} differ from student frames {student_lengths.tolist()} by more "
            f"than {MAX_FRAME_DIFFERENCE}; the teacher's hop or padding does not match the student's CNN "
            "(student.geometry.conv_layers)")
    lengths = torch.minimum(teacher_lengths, student_lengths)
    mask = valid_mask(lengths, student_frames)[..., None]
    states = []
    for state in teacher_out.hidden_states:
        state = state[:, :student_frames]
        if state.shape[1] < student_frames:
            state = F.pad(state, (0, 0, 0, student_frames - state.shape[1]))
        states.append(state * mask.to(state.dtype))
    return TeacherOutput(states, lengths)

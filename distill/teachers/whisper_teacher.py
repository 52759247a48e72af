"""`WhisperTeacher`: our Whisper encoder (`distill/nn/whisper_encoder.py`, the decoder dropped) with a teacher's
weights, whichever format they came from (openai-whisper .pt, HuggingFace folder, CTranslate2 model.bin).

Two modes, named by the spec prefix: `whisper:` runs each utterance alone, the log-mel of the utterance
and the encoder over its own frames, padding-invariant in a batch (the default: a student sees unpadded utterances);
`whisper-30s:` computes exactly what Whisper does (each input zero-padded to 30 s, 1,500 frames encoded), cut to the
utterance's frames. hidden_states = [conv stem + positions] + each layer's output, the last after the final LayerNorm
(transformers' `output_hidden_states`); one frame per 320 samples, (samples // 160 + 1) // 2 frames per utterance;
recordings longer than 30 s run as consecutive 30 s windows whose frames are concatenated.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from torch import Tensor

from distill.io.checkpoint_files import CheckpointError
from distill.nn.whisper_encoder import DOWNSAMPLE_RATE, WhisperEncoderConfig, WhisperEncoderModel
from distill.teachers.base import Teacher, TeacherOutput

FAMILY = "whisper"


class WhisperTeacher(Teacher):
    """Our `WhisperEncoderModel` with imported weights. `pad_to_30s`: run as Whisper does, every input padded to 30 s
    (spec prefix `whisper-30s:`); else per utterance (`whisper:`)."""

    family = FAMILY
    downsample_rate = DOWNSAMPLE_RATE

    def __init__(self, spec: str, model: WhisperEncoderModel, pad_to_30s: bool = False,
                 source_parameters: Optional[int] = None):
        super().__init__(spec)
        self.model = model
        self.pad_to_30s = pad_to_30s
        self.window_samples = model.window_samples
        self.num_layers = model.config.num_layers
        self.dim = model.config.dim
        self.source_parameters = source_parameters  # tensors in the file, decoder included
        self.freeze()

    def forward_padded(self, waveforms: Tensor, lengths: Tensor, num_layers: Optional[int] = None) -> TeacherOutput:
        hidden_states, frame_lengths = self.model(waveforms, lengths, num_layers, pad_to_30s=self.pad_to_30s)
        return TeacherOutput(hidden_states, frame_lengths)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "pad_to_30s": self.pad_to_30s, "whisper_config": self.model.config.to_dict()}


def whisper_teacher(path: str, model: WhisperEncoderModel, pad_to_30s: bool, source_parameters: int) -> WhisperTeacher:
    """The teacher of the Whisper model read from `path`, its spec naming the mode (`whisper:` or `whisper-30s:`)."""
    prefix = "whisper-30s" if pad_to_30s else "whisper"
    return WhisperTeacher(f"{prefix}:{path}", model, pad_to_30s, source_parameters)


def build_whisper_encoder(config: WhisperEncoderConfig, weights: Mapping[str, Tensor], source: str) -> WhisperEncoderModel:
    """Our encoder for `config` with `weights` (already in our names, any float dtype); every weight must fit."""
    model = WhisperEncoderModel(config)
    weights = {name: value.float() for name, value in weights.items()}
    try:
        result = model.encoder.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # a shape that does not fit the config
        raise CheckpointError(f"{source}: weights do not fit the Whisper encoder {config.to_dict()}: "
                              f"{str(error).strip().splitlines()[-1].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{source}: weights do not fit the Whisper encoder: missing {result.missing_keys[:8]}, "
                              f"unexpected {result.unexpected_keys[:8]}")
    return model

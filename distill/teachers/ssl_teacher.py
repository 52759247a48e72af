"""`CheckpointTeacher`: our wav2vec 2.0 / HuBERT / WavLM encoder (`distill/nn/ssl_encoder.py`) with a teacher's weights,
and `build_and_load`, the last step of every importer into that encoder (official WavLM and fairseq checkpoints,
HuggingFace folders)."""
from __future__ import annotations

import math
from typing import Mapping, Optional

from torch import Tensor

from distill.io.checkpoint_files import CheckpointError
from distill.io.weight_names import Rules, map_state_dict
from distill.nn.ssl_encoder import SSLModel, SSLModelConfig
from distill.teachers.base import Teacher, TeacherOutput


class CheckpointTeacher(Teacher):
    """Our `SSLModel` with weights imported from a teacher checkpoint."""

    def __init__(self, spec: str, model: SSLModel, source_parameters: int):
        super().__init__(spec)
        self.model = model
        self.family = model.config.family
        self.num_layers = model.config.num_layers
        self.dim = model.config.dim
        self.downsample_rate = math.prod(stride for _, _, stride in model.config.conv_layers)
        self.layers_end_in_layer_norm = not model.config.layer_norm_first
        self.source_parameters = source_parameters  # parameters as the original class counts them (incl. pre-training-only ones)
        self.freeze()

    def forward_padded(self, waveforms: Tensor, lengths: Tensor, num_layers: Optional[int] = None) -> TeacherOutput:
        hidden_states, frame_lengths = self.model(waveforms, lengths, num_layers)
        return TeacherOutput(hidden_states, frame_lengths)


def build_and_load(config: SSLModelConfig, foreign: Mapping[str, Tensor], source: str, rules: Rules) -> SSLModel:
    """Our model for `config` with the foreign weights renamed by `rules`; every weight of the model must be given."""
    model = SSLModel(config)
    result = model.load_state_dict(map_state_dict(foreign, source, rules), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{source}: weights do not fit the model: missing {result.missing_keys[:8]}, "
                              f"unexpected {result.unexpected_keys[:8]}")
    return model

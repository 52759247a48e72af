"""A GenDistiller exported for transformers (`gendistiller export --to hf`: config.json of model_type "gendistiller",
the model's code beside its weights) -> a teacher, spec `hf:DIR` or a bare `DIR`.

transformers reads the folder with the code that travels with it (`trust_remote_code=True`: a teacher folder is a
trusted user file, as checkpoints are), so the student runs exactly as exported, free running and padding-invariant.
Its hidden states are h0 then the generated layers: the teacher's "layers" 1..K are the student's K generated layers.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor, nn

from distill.io.checkpoint_files import CheckpointError
from distill.teachers.base import Teacher, TeacherOutput

FAMILY = "gendistiller"


class GenDistillerTeacher(Teacher):
    """The exported `GenDistillerModel` of a folder, as a teacher."""

    family = FAMILY

    def __init__(self, spec: str, model: nn.Module):
        super().__init__(spec)
        self.model = model
        config = model.config
        self.num_layers = len(config.target_layers)
        self.dim = config.hidden_size
        self.downsample_rate = math.prod(stride for _, _, stride in config.conv_layers)
        # h0 leaves the encoder LayerNorm (post-LN layers) and each generated layer its step's LayerNorm (output_norm),
        # unless standardised targets are undone after it.
        self.layers_end_in_layer_norm = (not config.layer_norm_first and config.output_norm
                                         and not config.target_standardization)
        self.freeze()

    def forward_padded(self, waveforms: Tensor, lengths: Tensor, num_layers: Optional[int] = None) -> TeacherOutput:
        mask = torch.arange(waveforms.shape[1], device=waveforms.device)[None, :] < lengths[:, None]
        out = self.model(waveforms, attention_mask=mask.long(), output_hidden_states=True)
        hidden_states = list(out.hidden_states)
        if num_layers is not None:
            hidden_states = hidden_states[: num_layers + 1]
        return TeacherOutput(hidden_states, self.model._get_feat_extract_output_lengths(lengths))

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "target_layers": list(self.model.config.target_layers)}


def load_gendistiller_folder(folder: str) -> GenDistillerTeacher:
    """The teacher of an exported GenDistiller folder."""
    try:
        from transformers import AutoModel
    except ImportError as error:
        raise ImportError("an exported GenDistiller teacher needs transformers: "
                          "pip install 'transformers<5'") from error
    try:
        model = AutoModel.from_pretrained(folder, trust_remote_code=True, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder}: cannot read the exported GenDistiller ({error})") from error
    return GenDistillerTeacher(f"hf:{folder}", model.eval())

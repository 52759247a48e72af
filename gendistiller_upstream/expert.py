"""s3prl upstream expert over a student checkpoint written by `gendistiller distill`.

The contract is s3prl's (`s3prl/upstream/interfaces.py`, `UpstreamBase`): `forward(wavs)` takes a list of
unpadded 16 kHz 1-D waveforms and returns a dict whose `"hidden_states"` is a list of (B, T, D) tensors of
equal shape; `get_downsample_rates(key)` gives the hop in samples (320 for the wav2vec 2.0 front-end).

Exposed features, by student kind:
- gendistiller: `hidden_states` = [front-end output h0, generated layer 1, ..., K]
  (`last_hidden_state` = generated layer K);
- distilhubert (the baseline): `hidden_states` = [projected front-end, transformer layer 1..n, head 1..K],
  exactly as s3prl's `distiller` expert, plus `"paper"` = the last transformer layer (SUPERB's `-s paper`).
Padded frames are zeroed; s3prl's `Featurizer` trims each utterance to round(samples / 320) frames.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from torch import Tensor

from s3prl.upstream.interfaces import UpstreamBase

from distill.audio import pad_waveforms
from distill.models import DistilHuBERT
from distill.models.checkpoint import load_student


class UpstreamExpert(UpstreamBase):
    """A GenDistiller or DistilHuBERT student as an s3prl upstream.

    Args:
        ckpt: path of a student checkpoint (`runs/.../checkpoints/step_*.pt`). Anything else (a teacher
            checkpoint, an s3prl `distiller` file, a random pickle) raises `CheckpointError` naming what it found.
        model_config: s3prl's `-g` option; the architecture always comes from the checkpoint, so it must be None.
        **kwargs: passed to `UpstreamBase` (s3prl's runner also passes `refresh`, which is ignored).
    """

    def __init__(self, ckpt: str, model_config: Optional[str] = None, **kwargs: Any):
        super().__init__(**kwargs)
        if model_config is not None:
            raise ValueError(f"gendistiller upstream: model_config (-g) must not be set, got {model_config!r}; "
                             "the architecture is read from the student checkpoint")
        self.model, checkpoint = load_student(ckpt)
        self.kind: str = self.model.config.kind
        self.step: int = int(checkpoint.get("step", 0))
        self.downsample_rate = math.prod(stride for _, _, stride in self.model.geometry.conv_layers)

    def get_downsample_rates(self, key: str) -> int:
        return self.downsample_rate

    def forward(self, wavs: Sequence[Tensor]) -> dict[str, Any]:
        # Called under no_grad by s3prl unless the upstream is fine-tuned (-f), so no no_grad here.
        waveforms, lengths = pad_waveforms(wavs)
        out = self.model(waveforms, lengths)
        states: dict[str, Any] = {"hidden_states": out.hidden_states, "last_hidden_state": out.hidden_states[-1]}
        if isinstance(self.model, DistilHuBERT):
            states["paper"] = out.hidden_states[self.model.config.encoder_layers]  # DistilHuBERT's SUPERB feature
        return states

"""s3prl upstream expert over a student checkpoint written by `gendistiller distill`.

The contract is s3prl's (`s3prl/upstream/interfaces.py`, `UpstreamBase`): `forward(wavs)` takes a list of
unpadded 16 kHz 1-D waveforms and returns a dict whose `"hidden_states"` is a list of (B, T, D) tensors of
equal shape; `get_downsample_rates(key)` gives the hop in samples (320 for the wav2vec 2.0 front-end).

Exposed features, by student kind:
- gendistiller: `hidden_states` = [projected front-end (with `front_end_state`), front-end output h0, generated layer
  1, ..., K, each after its step's update (with `generator_states`, on by default)]
  (`last_hidden_state` = generated layer K), as the student's config says;
- distilhubert (the baseline): `hidden_states` = [projected front-end, transformer layer 1..n, head 1..K],
  exactly as s3prl's `distiller` expert, plus `"paper"` = the last transformer layer (SUPERB's `-s paper`).
Padded frames are zeroed; s3prl's `Featurizer` trims each utterance to round(samples / 320) frames.

Utterances are run whole, as SUPERB does. For long recordings, s3prl's `-g` may name a YAML file with
`chunk_window_seconds` and `chunk_context_seconds` (distill.nn.chunking's windows) and `layers` (hidden states 0..k only:
GenDistiller stops generating there); for a GenDistiller, also `front_end_state`, `states_in_teacher_units` and
`generator_states`, which replace the checkpoint's choice of exposed states (distill.models.student_config).
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from s3prl.upstream.interfaces import UpstreamBase
from torch import Tensor

from distill.models import DistilHuBERT, GenDistiller
from distill.models.student_checkpoint import load_student
from distill.models.student_config import EXPOSURE_OPTIONS
from distill.nn.chunking import Chunking


class UpstreamExpert(UpstreamBase):
    """A GenDistiller or DistilHuBERT student as an s3prl upstream.

    Args:
        ckpt: path of a student checkpoint (`runs/.../checkpoints/step_*.pt`). Anything else (a teacher
            checkpoint, an s3prl `distiller` file, a random pickle) raises `CheckpointError` naming what it found.
        model_config: s3prl's `-g` option: None, or a YAML file of inference options (`chunk_window_seconds`,
            `chunk_context_seconds`, `layers`, and for a GenDistiller the exposed states: `front_end_state`,
            `states_in_teacher_units`, `generator_states`); the architecture always comes from the checkpoint.
        **kwargs: passed to `UpstreamBase` (s3prl's runner also passes `refresh`, which is ignored).
    """

    def __init__(self, ckpt: str, model_config: Optional[str] = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.chunking, self.layers, exposed = _inference_options(model_config)
        self.model, checkpoint = load_student(ckpt)
        if exposed:
            if not isinstance(self.model, GenDistiller):
                raise ValueError(f"gendistiller upstream: -g {model_config} sets {sorted(exposed)}, options of a "
                                 f"GenDistiller student; {ckpt} holds a {self.model.config.kind}")
            self.model.config = replace(self.model.config, **exposed)
        self.kind: str = self.model.config.kind
        self.step: int = int(checkpoint.get("step", 0))
        self.downsample_rate = math.prod(stride for _, _, stride in self.model.geometry.conv_layers)

    def get_downsample_rates(self, key: str) -> int:
        return self.downsample_rate

    def forward(self, wavs: Sequence[Tensor]) -> dict[str, Any]:
        # Called under no_grad by s3prl unless the upstream is fine-tuned (-f), so no no_grad here.
        out = self.model.run(wavs, self.chunking, self.layers)
        states: dict[str, Any] = {"hidden_states": out.hidden_states, "last_hidden_state": out.hidden_states[-1]}
        if isinstance(self.model, DistilHuBERT):
            states["paper"] = out.hidden_states[self.model.config.encoder_layers]  # DistilHuBERT's SUPERB feature
        return states


def _inference_options(model_config: Optional[str]) -> tuple[Optional[Chunking], Optional[int], dict[str, bool]]:
    """s3prl's -g: None (whole utterances, every hidden state) or a YAML file of the options the module docstring names."""
    if model_config is None:
        return None, None, {}
    if not Path(model_config).is_file():
        raise ValueError(f"gendistiller upstream: model_config (-g) {model_config!r} is not a file; it names a YAML file "
                         "of inference options (the architecture is read from the student checkpoint)")
    options = yaml.safe_load(Path(model_config).read_text()) or {}
    known = {"chunk_window_seconds", "chunk_context_seconds", "layers", *EXPOSURE_OPTIONS}
    if not isinstance(options, dict) or set(options) - known:
        raise ValueError(f"gendistiller upstream: -g {model_config} may set {sorted(known)} only (the architecture is "
                         f"read from the student checkpoint); got {options!r}")
    default = Chunking()
    chunking = Chunking(float(options.get("chunk_window_seconds", default.window_seconds)),
                        float(options.get("chunk_context_seconds", default.context_seconds)))
    use_chunks = "chunk_window_seconds" in options or "chunk_context_seconds" in options
    exposed = {name: options[name] for name in EXPOSURE_OPTIONS if name in options}  # the config checks the values
    return chunking if use_chunks else None, options.get("layers"), exposed

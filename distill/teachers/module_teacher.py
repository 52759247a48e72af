"""A teacher from any `nn.Module` that maps waveforms to hidden states: s3prl upstreams (`s3prl:NAME[:CKPT]`), a user's
own model (`module:package.module:factory`, or `ModuleTeacher(model)` from Python).

The module's contract is s3prl's upstream contract: `module(wavs)` takes a list of unpadded 16 kHz 1-D tensors and
returns the hidden states as a list of (B, T, D) tensors (layer 0 first), or a dict with them under "hidden_states".
Its hop comes from `get_downsample_rates("hidden_states")` (s3prl) or a `downsample_rate` attribute, else 320. The
module sees the padded batch as a whole, so its valid frames are taken as round(samples / hop) per utterance (s3prl's
featurizer rule), at most the frames it returned; what lies beyond them is zeroed.
"""
from __future__ import annotations

import importlib
from typing import Any, Optional

import torch
from torch import Tensor, nn

from distill.io.audio import unpad
from distill.nn.components import valid_mask
from distill.teachers.base import Teacher, TeacherOutput

DEFAULT_DOWNSAMPLE_RATE = 320


class ModuleTeacher(Teacher):
    def __init__(self, module: nn.Module, spec: Optional[str] = None, family: Optional[str] = None,
                 downsample_rate: Optional[int] = None):
        super().__init__(spec or f"module:{type(module).__module__}.{type(module).__qualname__}")
        self.module = module
        self.family = family or type(module).__name__
        self.downsample_rate = int(downsample_rate or _downsample_rate(module))
        probe = self._hidden_states([torch.zeros(16000)])
        self.num_layers = len(probe) - 1
        self.dim = probe[0].shape[-1]
        self.freeze()

    def _hidden_states(self, wavs: list[Tensor]) -> list[Tensor]:
        with torch.no_grad():
            out = self.module(wavs)
        states = out["hidden_states"] if isinstance(out, dict) else out
        if not isinstance(states, (list, tuple)) or not states or not all(isinstance(s, Tensor) and s.ndim == 3 for s in states):
            raise ValueError(f"teacher {self.spec}: expected a list of (batch, frames, dim) hidden states (or a dict with "
                            f"'hidden_states'), got {type(states).__name__}")
        return list(states)

    def forward_padded(self, waveforms: Tensor, lengths: Tensor, num_layers: Optional[int] = None) -> TeacherOutput:
        hidden_states = self._hidden_states(unpad(waveforms, lengths))
        if num_layers is not None:
            hidden_states = hidden_states[: num_layers + 1]
        frames = hidden_states[0].shape[1]
        frame_lengths = torch.round(lengths.double() / self.downsample_rate).long().clamp(max=frames)
        mask = valid_mask(frame_lengths.to(hidden_states[0].device), frames)[..., None]
        return TeacherOutput([h * mask.to(h.dtype) for h in hidden_states], frame_lengths)


def _downsample_rate(module: nn.Module) -> int:
    if hasattr(module, "get_downsample_rates"):
        return int(module.get_downsample_rates("hidden_states"))
    return int(getattr(module, "downsample_rate", DEFAULT_DOWNSAMPLE_RATE))


def load_s3prl(rest: str) -> ModuleTeacher:
    """The teacher of a spec `s3prl:NAME` or `s3prl:NAME:CKPT`, given what follows `s3prl:`."""
    name, _, ckpt = rest.partition(":")
    if not name:
        raise ValueError("s3prl teacher spec needs an upstream name: 's3prl:NAME' or 's3prl:NAME:CKPT'")
    return s3prl_teacher(name, ckpt or None)


def s3prl_teacher(name: str, ckpt: Optional[str] = None) -> ModuleTeacher:
    """Any s3prl upstream, through its `hidden_states` (`s3prl:NAME` or `s3prl:NAME:CKPT`)."""
    try:
        import s3prl.hub as hub
    except ImportError as error:
        raise ImportError("an s3prl teacher needs s3prl: pip install s3prl==0.4.18") from error
    if not hasattr(hub, name):
        raise ValueError(f"s3prl has no upstream named {name!r} (see s3prl.hub.options())")
    upstream = getattr(hub, name)(**({"ckpt": ckpt} if ckpt else {}))
    spec = f"s3prl:{name}" + (f":{ckpt}" if ckpt else "")
    return ModuleTeacher(upstream, spec, family=f"s3prl:{name}")


def load_module(target: str) -> ModuleTeacher:
    """The teacher of a spec `module:package.module:factory`, given what follows `module:`: imports the module and
    calls factory() for the teacher's nn.Module."""
    module_name, sep, factory_name = target.partition(":")
    if not sep or not module_name or not factory_name:
        raise ValueError(f"module teacher {target!r} must look like 'package.module:factory'")
    try:
        factory: Any = getattr(importlib.import_module(module_name), factory_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"module teacher {target!r}: cannot import {factory_name} from {module_name} ({error})") from error
    model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"module teacher {target!r}: {factory_name}() returned a {type(model).__name__}, expected an nn.Module")
    return ModuleTeacher(model, f"module:{target}")

"""Run an exported student without PyTorch: numpy and onnxruntime only.

    from distill.deploy import OnnxStudent
    student = OnnxStudent("student.onnx")                 # written by `gendistiller export --to onnx`
    out = student([wav1, wav2])                           # 1-D float arrays, 16 kHz mono, any lengths
    out.hidden_states[k][i, : out.lengths[i]]             # (frames, dim) of hidden state k for utterance i

The waveforms are zero-padded into one batch; the graph is padding-invariant, so each utterance gets what it gets
alone, with padded frames zero. `out.hidden_states` follows the s3prl expert (GenDistiller: front-end output, then
the generated layers; DistilHuBERT: projected front-end, its layers, its heads; `paper` is its SUPERB feature);
`student.names` says which is which.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from distill.audio import check_waveforms

ONNX_FORMAT = "gendistiller-onnx-1"  # the same tag distill.onnx_export writes (that module needs torch)
METADATA_KEYS = ("format", "kind", "hidden_state_names", "downsample_rate", "sample_rate", "dim", "paper_hidden_state",
                 "quantization")


class DeployError(ValueError):
    """A file that is not an exported student."""


@dataclass
class OnnxOutput:
    hidden_states: list[np.ndarray]  # each (batch, frames, dim), zero past each utterance's frames
    lengths: np.ndarray  # (batch,) valid frames
    paper: Optional[int]  # index in hidden_states of DistilHuBERT's SUPERB feature (None for GenDistiller)


class OnnxStudent:
    """An exported student in an onnxruntime CPU session; `threads`: intra-op threads (default: onnxruntime's)."""

    def __init__(self, path: str | Path, threads: Optional[int] = None):
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise DeployError(f"{path}: file not found")
        options = onnxruntime.SessionOptions()
        _share_memory_arena(onnxruntime, options)
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for files it cannot parse
            raise DeployError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from error
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in METADATA_KEYS if key not in self.metadata]
        if self.metadata.get("format") != ONNX_FORMAT or missing:
            raise DeployError(f"{path}: not a student exported by `gendistiller export --to onnx` (expected metadata "
                              f"format={ONNX_FORMAT!r} and {list(METADATA_KEYS[1:])}; found {sorted(self.metadata) or 'none'})")
        self.kind: str = self.metadata["kind"]
        self.names: list[str] = json.loads(self.metadata["hidden_state_names"])
        self.downsample_rate = int(self.metadata["downsample_rate"])
        paper = self.metadata["paper_hidden_state"]
        self.paper = int(paper) if paper else None

    def __call__(self, wavs: Sequence[np.ndarray]) -> OnnxOutput:
        waveforms, lengths = pad(wavs)
        *states, frames = self.session.run(None, {"waveforms": waveforms, "lengths": lengths})
        return OnnxOutput(list(states), frames, self.paper)


_arena_registered = False


def _share_memory_arena(onnxruntime, options) -> None:  # noqa: ANN001 - the onnxruntime module and its SessionOptions
    """Every OnnxStudent in the process allocates from one CPU arena (onnxruntime's environment allocator). A session's
    own arena keeps the peak of its largest call, several GB for 8 x 10 s at Base geometry, so students held side by
    side would each keep theirs. One shared arena serves them all at the same speed."""
    global _arena_registered
    if not _arena_registered:
        memory = onnxruntime.OrtMemoryInfo("Cpu", onnxruntime.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                           onnxruntime.OrtMemType.DEFAULT)
        onnxruntime.create_and_register_allocator(memory, None)
        _arena_registered = True
    options.add_session_config_entry("session.use_env_allocators", "1")


def pad(wavs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Checked 1-D float waveforms -> zero-padded (batch, samples) float32 and (batch,) int64 lengths."""
    check_waveforms(wavs)  # 16 kHz is the caller's promise; the exported graph has no resampler
    lengths = np.array([len(wav) for wav in wavs], dtype=np.int64)
    waveforms = np.zeros((len(wavs), int(lengths.max())), dtype=np.float32)
    for row, wav in zip(waveforms, wavs):
        row[: len(wav)] = wav
    return waveforms, lengths

"""Run an exported student without PyTorch: numpy and onnxruntime only.

    from distill.deploy import OnnxStudent
    student = OnnxStudent("student.onnx")                 # written by `gendistiller export --to onnx`
    out = student([wav1, wav2])                           # 1-D float arrays, 16 kHz mono, any lengths
    out.hidden_states[k][i, : out.lengths[i]]             # (frames, dim) of layer k for utterance i

The waveforms are zero-padded into one batch; the graph is padding-invariant, so each utterance gets what it gets
alone, with padded frames zero. `out.hidden_states` follows the s3prl expert (GenDistiller: front-end output, then
the generated layers; DistilHuBERT: projected front-end, its layers, its heads; `paper` is its SUPERB feature).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

ONNX_FORMAT = "gendistiller-onnx-1"  # the same tag distill.onnx_export writes (that module needs torch)
SAMPLE_RATE = 16000
MIN_SAMPLES = 400  # one frame of the CNN


class DeployError(ValueError):
    """A file that is not an exported student, or audio it cannot take."""


@dataclass
class OnnxOutput:
    hidden_states: list[np.ndarray]  # each (batch, frames, dim), zero past each utterance's frames
    lengths: np.ndarray  # (batch,) valid frames
    paper: Optional[int]  # index in hidden_states of DistilHuBERT's SUPERB feature (None for GenDistiller)


class OnnxStudent:
    def __init__(self, path: str | Path, threads: Optional[int] = None):
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise DeployError(f"{path}: file not found")
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for files it cannot parse
            raise DeployError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from error
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        if self.metadata.get("format") != ONNX_FORMAT:
            raise DeployError(f"{path}: not a student exported by `gendistiller export --to onnx` (no {ONNX_FORMAT!r} "
                              f"metadata; found {sorted(self.metadata) or 'none'})")
        self.kind = self.metadata["kind"]
        self.downsample_rate = int(self.metadata["downsample_rate"])
        paper = self.metadata.get("paper_hidden_state", "")
        self.paper = int(paper) if paper else None

    def __call__(self, wavs: Sequence[np.ndarray]) -> OnnxOutput:
        waveforms, lengths = pad(wavs)
        *states, frames = self.session.run(None, {"waveforms": waveforms, "lengths": lengths})
        return OnnxOutput(list(states), frames, self.paper)


def pad(wavs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Checked 1-D waveforms -> zero-padded (batch, samples) float32 and (batch,) int64 lengths."""
    if len(wavs) == 0:
        raise DeployError("expected a non-empty list of waveforms")
    for i, wav in enumerate(wavs):
        if np.ndim(wav) != 1:
            raise DeployError(f"waveform {i}: expected a 1-D mono waveform, got shape {np.shape(wav)}; mix it down first")
        if len(wav) < MIN_SAMPLES:
            raise DeployError(f"waveform {i}: {len(wav)} samples is too short; at least {MIN_SAMPLES} are needed")
    lengths = np.array([len(wav) for wav in wavs], dtype=np.int64)
    waveforms = np.zeros((len(wavs), int(lengths.max())), dtype=np.float32)
    for row, wav in zip(waveforms, wavs):
        row[: len(wav)] = wav
    return waveforms, lengths

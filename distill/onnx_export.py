"""A trained student as an ONNX graph: `gendistiller export --to onnx CKPT OUT.onnx [--quantize int8]`.

The graph takes a zero-padded waveform batch `waveforms` (batch, samples; float32, 16 kHz) and `lengths` (batch;
int64 samples per utterance) and returns every hidden state the s3prl expert exposes (`hidden_state_0` ... each
(batch, frames, dim), padded frames zero) and `frame_lengths` (batch). Batch and time are dynamic axes, and a padded
batch gives each utterance what it gets alone: the exported graph records the loop-free forms of the per-utterance
normalisations (`torch.onnx.is_in_onnx_export()` in components.py). torch's TorchScript-based exporter writes it;
`onnx.checker` checks it. The model's metadata (`metadata_props`) says what it is, for `distill.deploy.OnnxStudent`.

`--quantize` (onnxruntime.quantization): `int8` = dynamic int8 for MatMul/Gemm (the transformer layers and heads;
the CNN stays fp32); `int8-cnn` = that plus static QDQ int8 for the CNN's convolutions, with activation ranges
calibrated on audio you give (`calibration`). The CNN is most of a CPU forward, so int8-cnn is faster, but the wav2vec
2.0 CNN has no normalisation after its first layer and uint8 activations lose its quiet frames: measured in
BENCHMARKS.md §3, int8 keeps every layer within cosine 0.999 of fp32, int8-cnn does not reach 0.99.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from distill.deploy import ONNX_FORMAT
from distill.models import DistilHuBERT, Student
from distill.models.checkpoint import load_student

OPSET = 17
QUANTIZATIONS = ("int8", "int8-cnn")


class _Graph(nn.Module):
    """The student as the exported function: (waveforms, lengths) -> (*hidden_states, frame_lengths)."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        out = self.student(waveforms, lengths)
        return (*out.hidden_states, out.lengths)


def _metadata(student: Student, num_states: int, quantized: Optional[str]) -> dict[str, str]:
    geometry = student.geometry
    paper = student.config.encoder_layers if isinstance(student, DistilHuBERT) else None
    return {"format": ONNX_FORMAT, "kind": student.config.kind, "num_hidden_states": str(num_states),
            "target_layers": json.dumps(list(student.config.target_layers)), "sample_rate": "16000",
            "downsample_rate": str(math.prod(stride for _, _, stride in student.config.front_end_conv_layers())),
            "dim": str(geometry.dim), "paper_hidden_state": "" if paper is None else str(paper),
            "quantization": quantized or "none"}


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory; give a file name such as {path / 'student.onnx'}")
    if not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from error


def export_onnx(checkpoint: str | Path, output: str | Path, quantize: Optional[str] = None,
                calibration: Sequence[np.ndarray] = ()) -> Path:
    """Writes the student of `checkpoint` to `output` (fp32, or quantized: see QUANTIZATIONS; `calibration`: a few
    waveforms for the CNN's activation ranges, needed by int8-cnn)."""
    output = Path(output)
    _check_writable(output)
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantize!r}; expected one of {QUANTIZATIONS}")
    if quantize == "int8-cnn" and not calibration:
        raise ValueError("int8-cnn quantization needs calibration audio (a few held-out recordings) for the CNN")
    return export_student(load_student(checkpoint)[0], output, quantize, calibration)


def export_student(student: Student, output: Path, quantize: Optional[str] = None,
                   calibration: Sequence[np.ndarray] = ()) -> Path:
    """`export_onnx` for a student in memory."""
    import onnx

    graph = _Graph(student).eval()  # eval before export: the exporter restores the mode it found afterwards
    example = torch.zeros(2, 32000)
    example[0].normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    example[1, :20000].normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([32000, 20000])
    with torch.no_grad():
        num_states = len(graph(example, lengths)) - 1
    outputs = [f"hidden_state_{i}" for i in range(num_states)] + ["frame_lengths"]
    axes = {"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "frame_lengths": {0: "batch"}}
    axes.update({name: {0: "batch", 1: "frames"} for name in outputs[:-1]})
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        torch.onnx.export(graph, (example, lengths), str(fp32), input_names=["waveforms", "lengths"],
                          output_names=outputs, dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        model_path = fp32 if quantize is None else _quantize(fp32, Path(scratch), quantize == "int8-cnn", calibration)
        model = onnx.load(str(model_path))
        onnx.helper.set_model_props(model, _metadata(student, num_states, quantize))
        onnx.checker.check_model(model)
        onnx.save(model, str(output))
    return output


def _quantize(fp32: Path, scratch: Path, cnn: bool, calibration: Sequence[np.ndarray]) -> Path:
    """Dynamic int8 for MatMul/Gemm; with `cnn`, first static QDQ int8 for the convolutions (ranges from `calibration`)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    final = scratch / "int8.onnx"
    if not cnn:
        quantize_dynamic(str(fp32), str(final), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
        return final

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"waveforms": wav[None].astype(np.float32), "lengths": np.array([len(wav)], np.int64)}
                               for wav in calibration])

        def get_next(self):  # noqa: ANN201 - onnxruntime's interface
            return next(self.items, None)

    prepared, convs = scratch / "prepared.onnx", scratch / "conv_int8.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(convs), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    quantize_dynamic(str(convs), str(final), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
    return final

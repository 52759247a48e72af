"""A trained student as an ONNX graph: `gendistiller export --to onnx CKPT OUT.onnx [--quantize int8]`.

The graph takes a zero-padded waveform batch `waveforms` (batch, samples; float32, 16 kHz) and `lengths` (batch;
int64 samples per utterance) and returns every hidden state the s3prl expert exposes (`hidden_state_0` ... each
(batch, frames, dim), padded frames zero) and `frame_lengths` (batch). Batch and time are dynamic axes, and a padded
batch gives each utterance what it gets alone: the exported graph records the loop-free forms of the per-utterance
normalisations (`torch.onnx.is_in_onnx_export()` in components.py). torch's TorchScript-based exporter writes it;
`onnx.checker` checks it. The model's metadata (`metadata_props`) says what it is, for `distill.deploy.runtime.OnnxStudent`.

A student whose CNN's first layer normalises each channel over the whole recording (GroupNorm over time) has two more
inputs, `first_layer_mean` and `first_layer_variance` (batch or 1, channels), whose defaults (NaN) mean "each
utterance's own", and its metadata carries a second small graph, `first_layer_moments` (base64 ONNX: waveforms ->
that layer's per-channel mean and variance), so that the runtime can give every window of a long recording the
whole recording's statistics (distill.nn.chunking).

`--quantize` (onnxruntime.quantization, after its pre-processing; QUANTIZATIONS): `int8-linear` = dynamic int8 for
every weight MatMul/Gemm (projections, transformer layers, heads), convolutions fp32. The CNN is most of a CPU forward,
and two ways quantise it too: `int8` (the default) = int8-linear plus the CNN's convolutions after the first as integer
products with one activation scale per output frame (distill.deploy.onnx_int8_conv); `int8-cnn` = int8-linear plus static QDQ
int8 for those convolutions, with activation ranges calibrated on audio you give (`calibration`): the fastest, but one
static uint8 range per tensor cannot keep quiet frames, whose features lose most of their precision, which the
per-frame LayerNorm after GenDistiller's CNN then magnifies (BENCHMARKS.md, "Deployment: ONNX and int8", has all three measured: int8 and
int8-linear stay at cosine ≥ 0.99 to fp32 on every hidden state, int8-cnn does not).
"""
from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from distill.deploy.runtime import MOMENT_INPUTS, ONNX_FORMAT
from distill.models import DistilHuBERT, Student
from distill.models.student_checkpoint import load_student
from distill.nn.components import ChannelMoments, FeatureExtractor

OPSET = 17
# --quantize choice -> what it does (printed by the export command).
QUANTIZATIONS: dict[str, str] = {
    "int8": "int8-linear, plus int8 CNN convolutions after the first with an activation scale per frame",
    "int8-linear": "dynamic int8 for every weight MatMul/Gemm (projections, transformer layers, heads); convolutions fp32",
    "int8-cnn": "int8-linear, plus static int8 (QDQ, calibrated ranges) for the CNN's convolutions after the first: "
                "fastest, loses quiet frames",
}


class _Graph(nn.Module):
    """The student as the exported function: (waveforms, lengths) -> (*hidden_states, frame_lengths)."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, waveforms: Tensor, lengths: Tensor, *moments: Tensor) -> tuple[Tensor, ...]:
        out = self.student(waveforms, lengths, moments=ChannelMoments(*moments) if moments else None)
        return (*out.hidden_states, out.lengths)


class _FirstLayerMoments(nn.Module):
    """The second graph: unpadded waveforms (batch, samples) -> the CNN's first-layer per-channel mean and variance."""

    def __init__(self, feature_extractor: FeatureExtractor):
        super().__init__()
        self.feature_extractor = feature_extractor

    def forward(self, waveforms: Tensor) -> tuple[Tensor, Tensor]:
        return tuple(self.feature_extractor.first_layer_moments(waveforms))


def state_names(student: Student) -> list[str]:
    """What each exposed hidden state is (`Student.state_names`)."""
    return student.state_names()


def _metadata(student: Student, quantized: Optional[str], source: str, step: int) -> dict[str, str]:
    paper = student.config.encoder_layers if isinstance(student, DistilHuBERT) else None
    return {"format": ONNX_FORMAT, "kind": student.config.kind, "hidden_state_names": json.dumps(state_names(student)),
            "target_layers": json.dumps(list(student.config.target_layers)), "sample_rate": "16000",
            "downsample_rate": str(student.frame_grid.hop), "receptive_field": str(student.frame_grid.receptive_field),
            "dim": str(student.geometry.dim), "paper_hidden_state": "" if paper is None else str(paper),
            "quantization": quantized or "none", "source": source, "step": str(step)}


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
        raise ValueError(f"unknown quantization {quantize!r}; expected one of {sorted(QUANTIZATIONS)}")
    if quantize == "int8-cnn" and not calibration:
        raise ValueError("int8-cnn quantization needs calibration audio (a few held-out recordings) for the CNN")
    student, saved = load_student(checkpoint)
    return export_student(student, output, quantize, calibration, str(checkpoint), int(saved.get("step", 0)))


def export_student(student: Student, output: Path, quantize: Optional[str] = None, calibration: Sequence[np.ndarray] = (),
                   source: str = "", step: int = 0) -> Path:
    """`export_onnx` for a student in memory (`source`, `step`: provenance kept in the metadata)."""
    import onnx

    graph = _Graph(student).eval()  # eval before export: the exporter restores the mode it found afterwards
    example = torch.zeros(2, 32000)
    example[0].normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    example[1, :20000].normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([32000, 20000])
    num_states = len(state_names(student))
    outputs = [f"hidden_state_{i}" for i in range(num_states)] + ["frame_lengths"]
    # NaN: each utterance's own statistics (the defaults of the moment inputs, kept in the graph as initializers)
    defaults = {name: np.full((1, student.feature_extractor.conv_layers[0].conv.out_channels), np.nan, np.float32)
                for name in (MOMENT_INPUTS if student.feature_extractor.normalizes_over_time else ())}
    axes = {"waveforms": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "frame_lengths": {0: "batch"}}
    axes.update({name: {0: "batch", 1: "frames"} for name in outputs[:-1]})
    axes.update({name: {0: "moments_batch"} for name in defaults})
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = Path(scratch) / "fp32.onnx"
        torch.onnx.export(graph, (example, lengths, *map(torch.from_numpy, defaults.values())), str(fp32),
                          input_names=["waveforms", "lengths", *defaults], output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)
        if defaults:  # before quantisation, whose calibration feeds waveforms and lengths only
            exported = onnx.load(str(fp32))
            exported.graph.initializer.extend(onnx.numpy_helper.from_array(value, name) for name, value in defaults.items())
            onnx.save(exported, str(fp32))
        model_path = fp32 if quantize is None else _quantize(fp32, Path(scratch), quantize, calibration)
        model = onnx.load(str(model_path))
        if len(model.graph.output) != num_states + 1:  # the names must describe what the student returns
            raise RuntimeError(f"{student.config.kind} returned {len(model.graph.output) - 1} hidden states, "
                               f"its names say {num_states}")
        metadata = _metadata(student, quantize, source, step)
        if defaults:
            metadata.update(_first_layer_moments(student.feature_extractor, Path(scratch) / "moments.onnx"))
        onnx.helper.set_model_props(model, metadata)
        onnx.checker.check_model(model)
        partial = output.with_name(output.name + ".partial")  # an interrupted export leaves no half-written model
        onnx.save(model, str(partial))
        partial.replace(output)
    return output


def _first_layer_moments(feature_extractor: FeatureExtractor, path: Path) -> dict[str, str]:
    """Metadata with the second graph (`_FirstLayerMoments`, fp32, base64) and its layer's frame grid."""
    torch.onnx.export(_FirstLayerMoments(feature_extractor).eval(), (torch.zeros(1, 16000),), str(path),
                      input_names=["waveforms"], output_names=["mean", "variance"],
                      dynamic_axes={"waveforms": {0: "batch", 1: "samples"}}, opset_version=OPSET, dynamo=False)
    block = feature_extractor.conv_layers[0]
    return {"first_layer_moments": base64.b64encode(path.read_bytes()).decode("ascii"),
            "first_layer_grid": json.dumps([block.kernel, block.stride])}


def _quantize(fp32: Path, scratch: Path, quantize: str, calibration: Sequence[np.ndarray]) -> Path:
    """QUANTIZATIONS[quantize]: dynamic int8 for MatMul/Gemm (onnxruntime.quantization); int8-cnn first static QDQ int8
    for the CNN's convolutions after the first (activation ranges from `calibration`), int8 then per-frame int8 for
    them (distill.deploy.onnx_int8_conv)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from distill.deploy.onnx_int8_conv import quantize_convolutions

    # onnxruntime's pre-processing also removes the Identity nodes the exporter puts on weights used more than once
    # (GenDistiller's shared generator); quantize_dynamic would leave those MatMuls in fp32.
    prepared = scratch / "prepared.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    if quantize == "int8-cnn":
        convs = scratch / "conv_int8.onnx"
        quantize_static(str(prepared), str(convs), _calibration_reader(calibration), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], nodes_to_quantize=_cnn_convs(prepared),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        prepared = convs
    final = scratch / "int8.onnx"
    quantize_dynamic(str(prepared), str(final), op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)
    if quantize == "int8":
        model = onnx.load(str(final))
        quantize_convolutions(model, _cnn_convs(prepared))
        onnx.save(model, str(final))
    return final


def _cnn_convs(model_path: Path) -> list[str]:
    """The CNN's Conv nodes after its first: the first feeds the per-utterance normalisation, and int8 there cost
    speed and fidelity (BENCHMARKS.md, "Deployment: ONNX and int8"); the positional convolution stays fp32 too."""
    import onnx

    names = [node.name for node in onnx.load(str(model_path)).graph.node
             if node.op_type == "Conv" and "/feature_extractor/conv_layers." in node.name
             and "/conv_layers.0/" not in node.name]
    if not names:
        raise RuntimeError(f"{model_path}: found no CNN convolutions to quantize (node names changed?)")
    return names


def _calibration_reader(calibration: Sequence[np.ndarray]):  # noqa: ANN202 - an onnxruntime CalibrationDataReader
    """Feeds each calibration waveform alone, as the graph's inputs."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"waveforms": np.asarray(wav, np.float32)[None], "lengths": np.array([len(wav)], np.int64)}
                               for wav in calibration])

        def get_next(self) -> Optional[dict[str, np.ndarray]]:
            return next(self.items, None)

    return Reader()

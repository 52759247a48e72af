"""Per-frame int8 convolutions (distill.deploy.onnx_int8_conv) on a small exported CNN: the documented arithmetic exactly, a
scale per frame (a quiet frame keeps its precision, padding changes no utterance), the layout between convolutions."""
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from distill.deploy.onnx_int8_conv import LEVELS, quantize_convolutions, quantized_weight

LAYERS = ((3, 2), (2, 2))  # (kernel, stride): the WavLM CNN's kinds of layer after the first
CHANNELS = 8


class _Cnn(nn.Module):
    """Height-1 2-D convolutions + GELU on (B, C, 1, T), as the export writes the CNN; the second has a bias."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.convs = nn.ModuleList(nn.Conv2d(CHANNELS, CHANNELS, (1, k), stride=(1, s), bias=i == 1)
                                   for i, (k, s) in enumerate(LAYERS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.gelu(conv(x))
        return x


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[_Cnn, onnxruntime.InferenceSession, onnxruntime.InferenceSession, onnx.ModelProto]:
    """The CNN, sessions of its fp32 graph and of its per-frame int8 graph, and the int8 graph."""
    folder = tmp_path_factory.mktemp("int8_conv")
    cnn = _Cnn().eval()
    torch.onnx.export(cnn, (torch.randn(2, CHANNELS, 1, 40),), str(folder / "fp32.onnx"), input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "batch", 3: "time"}, "y": {0: "batch", 3: "time"}},
                      opset_version=17, dynamo=False)
    model = onnx.load(str(folder / "fp32.onnx"))
    quantize_convolutions(model, [node.name for node in model.graph.node if node.op_type == "Conv"])
    onnx.checker.check_model(model)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    sessions = [onnxruntime.InferenceSession(content, options, providers=["CPUExecutionProvider"])
                for content in ((folder / "fp32.onnx").read_bytes(), model.SerializeToString())]
    return cnn, *sessions, model


def reference(cnn: _Cnn, x: np.ndarray) -> np.ndarray:
    """The module docstring's arithmetic in numpy: x (B, C, 1, T) -> (B, C, 1, T')."""
    frames = x[:, :, 0, :].transpose(0, 2, 1)  # (B, T, C)
    for conv, (kernel, stride) in zip(cnn.convs, LAYERS):
        w_q, w_scale = quantized_weight(conv.weight.detach().numpy())
        count = (frames.shape[1] - kernel) // stride + 1
        rows = np.stack([frames[:, stride * t: stride * t + kernel].reshape(len(frames), -1) for t in range(count)], 1)
        scale = np.maximum(np.abs(rows).max(-1, keepdims=True), 1e-20 * LEVELS) / LEVELS
        q = np.clip(np.round(rows / scale), -LEVELS, LEVELS)  # (q + 128) - 128: the zero point cancels
        y = (q @ w_q.astype(np.float64)) * w_scale / (1 / scale)
        if conv.bias is not None:
            y = y + conv.bias.detach().numpy()
        frames = F.gelu(torch.from_numpy(y.astype(np.float32))).numpy()
    return frames.transpose(0, 2, 1)[:, :, None, :]


@pytest.mark.parametrize("frames", [41, 40])  # odd and even: the last frame starts no row, or two do not
def test_int8_graph_computes_the_documented_arithmetic(models, frames):
    cnn, _, int8, _ = models
    x = np.random.default_rng(frames).standard_normal((2, CHANNELS, 1, frames)).astype(np.float32)
    (y,) = int8.run(None, {"x": x})
    expected = reference(cnn, x)
    assert y.shape == expected.shape == (2, CHANNELS, 1, ((frames - 3) // 2 + 1 - 2) // 2 + 1)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-6)


def test_quiet_frames_and_padding_keep_their_precision(models):
    """Frames 1000x quieter than the rest come out as close to fp32 as loud ones (per-tensor int8 would give them
    a few steps of the loud frames' range), and an utterance in a zero-padded batch gets what it gets alone."""
    _, fp32, int8, _ = models
    x = np.random.default_rng(1).standard_normal((2, CHANNELS, 1, 64)).astype(np.float32)
    x[0, :, :, :32] *= 1e-3
    x[1, :, :, 40:] = 0.0  # the second utterance is 40 frames long
    (reference,), (y,) = fp32.run(None, {"x": x}), int8.run(None, {"x": x})
    relative = np.abs(y - reference).max(axis=1)[:, 0] / np.abs(reference).max(axis=1)[:, 0]  # (B, T') per frame
    assert relative[0, :5].max() < 0.05 and relative[0, 9:].max() < 0.05  # quiet frames, then loud ones
    (alone,) = int8.run(None, {"x": x[1:, :, :, :40]})
    np.testing.assert_array_equal(y[1:, :, :, : alone.shape[-1]], alone)


def test_layout_stays_time_major_between_convolutions(models):
    """One transpose into (B, T, C) before the first convolution and one back after the last; the GELU in between
    runs on the time-major tensor."""
    graph = models[3].graph
    assert sum(node.op_type == "Transpose" and node.name.endswith("/time_major/Transpose") for node in graph.node) == 1
    assert sum(node.op_type == "Transpose" and node.output[0].endswith("/bct") and "/int8/" not in node.name
               for node in graph.node) == 1
    assert all(node.input[0].endswith("/time_major") for node in graph.node if node.op_type == "Erf")

"""Int8 CNN convolutions that keep quiet frames: each convolution as one integer matrix product over time frames, with
an activation scale per output frame (`--quantize int8`, distill.deploy.onnx_export).

One int8 range per tensor (static calibration, or onnxruntime's per-call dynamic range) is set by loud speech, so a
quiet frame (silence before speech, a soft consonant) keeps a few quantisation steps, and the per-frame LayerNorm
after the CNN magnifies what is lost. Here each output frame t of a convolution (kernel k, stride s) has its own
scale, the largest |input| over its window (frames s*t ... s*t+k-1, every channel) / 127, so a quiet frame keeps 8
bits like a loud one; weights are int8 per output channel:

    rows[t] = frames s*t ... s*t+k-1 side by side (k*C values)     scale[t] = max |rows[t]| / 127
    y[t] = ((round(rows[t] / scale[t]) + 128) - 128) @ w_q * scale[t] * w_scale       (uint8 x int8 -> int32)

onnxruntime runs the product as MatMulInteger (its u8 x s8 GEMM: VNNI where the CPU has it). The rows are built in
uint8, not float: the first s frames of each row are consecutive, so every frame is quantised once, with the scale of
the row it starts (frame f: scale[f // s]), and only the k - s frames a row shares with the next are quantised again,
with this row's scale. Between convolutions the activations stay time-major (B, T, C): the elementwise nodes in
between (the GELU) run on that layout, and the graph's channel-major (B, C, 1, T) tensors are made back only where
something else reads them. Rows are frames of one utterance, so padding never changes another utterance's numbers.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ZERO_POINT = 128  # uint8 activations, symmetric around 128
LEVELS = 127.0  # largest |quantised value| on either side of the zero point
SMALLEST_SCALE = 1e-20  # an all-zero window (padding) still needs a positive scale
# Nodes that act on each value alone (or on two same-shaped tensors), so they run unchanged on the time-major layout.
ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Erf", "Gelu", "Relu", "Tanh", "Sigmoid", "Neg", "Sqrt", "Pow"}


def quantize_convolutions(model: onnx.ModelProto, conv_names: list[str]) -> None:
    """Replaces each named Conv node of `model` (a height-1 2-D convolution on (B, C, 1, T), kernel >= stride, no
    padding, groups or dilation, weight an initializer) by its per-frame int8 form, in place."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    constants = {name: tensor.dims for name, tensor in initializers.items()}
    constants.update({node.output[0]: attribute.t.dims for node in graph.node if node.op_type == "Constant"
                      for attribute in node.attribute if attribute.name == "value"})
    scalars = {name for name, dims in constants.items() if len(dims) <= 1 and int(np.prod(dims)) == 1}
    wanted = set(conv_names)
    time_major: dict[str, str] = {}  # channel-major tensor -> its time-major (B, T, C) twin
    produced = {name for name in initializers} | {tensor.name for tensor in graph.input}  # channel-major tensors made
    nodes: list[onnx.NodeProto] = []

    def channel_major(name: str) -> str:
        """`name` as the graph had it: made from its time-major twin if nothing has made it yet."""
        if name in time_major and name not in produced:
            nodes.extend(_to_channel_major(time_major[name], name))
            produced.add(name)
        return name

    for node in graph.node:
        if node.name in wanted:
            wanted.discard(node.name)
            source = node.input[0]
            if source not in time_major:
                time_major[source] = source + "/time_major"
                nodes.extend(_to_time_major(channel_major(source), time_major[source]))
            weight = numpy_helper.to_array(initializers[node.input[1]])
            bias = numpy_helper.to_array(initializers[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
            conv_nodes, tensors = _per_frame_conv(node, weight, bias, time_major[source], node.output[0] + "/time_major")
            nodes.extend(conv_nodes)
            graph.initializer.extend(tensors)
            time_major[node.output[0]] = node.output[0] + "/time_major"
        elif _runs_time_major(node, time_major, scalars):
            twin = onnx.NodeProto()
            twin.CopyFrom(node)
            twin.name = node.name + "/time_major"
            twin.input[:] = [time_major.get(name, name) for name in node.input]
            twin.output[:] = [name + "/time_major" for name in node.output]
            time_major.update({name: name + "/time_major" for name in node.output})
            nodes.append(twin)
        else:
            node.input[:] = [channel_major(name) if name else name for name in node.input]
            produced.update(node.output)
            nodes.append(node)
    if wanted:
        raise ValueError(f"no Conv nodes named {sorted(wanted)} in the graph")
    for output in graph.output:
        channel_major(output.name)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph)


def _runs_time_major(node: onnx.NodeProto, time_major: dict[str, str], scalars: set[str]) -> bool:
    """Whether `node` reads a time-major tensor and can run on that layout: elementwise, every other input a scalar."""
    if node.op_type not in ELEMENTWISE or not any(name in time_major for name in node.input):
        return False
    return all(name in time_major or name in scalars for name in node.input)


def _to_time_major(source: str, target: str) -> list[onnx.NodeProto]:
    """(B, C, 1, T) -> (B, T, C)."""
    return [helper.make_node("Transpose", [source], [target + "/bt1c"], name=target + "/Transpose", perm=[0, 2, 3, 1]),
            helper.make_node("Squeeze", [target + "/bt1c", _AXIS1], [target], name=target + "/Squeeze")]


def _to_channel_major(source: str, target: str) -> list[onnx.NodeProto]:
    """(B, T, C) -> (B, C, 1, T)."""
    return [helper.make_node("Transpose", [source], [target + "/bct"], name=target + "/Transpose", perm=[0, 2, 1]),
            helper.make_node("Unsqueeze", [target + "/bct", _AXIS2], [target], name=target + "/Unsqueeze")]


_AXIS1, _AXIS2 = "int8_conv/axis1", "int8_conv/axis2"  # shared int64 initializers (added by _per_frame_conv)


def _conv_geometry(node: onnx.NodeProto, weight: np.ndarray) -> tuple[int, int]:
    """(kernel, stride) of a height-1 Conv node; raises for anything else."""
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    kernel = weight.shape[-1]
    strides = list(attributes.get("strides", [1, 1]))
    plain = (weight.ndim == 4 and weight.shape[2] == 1 and attributes.get("group", 1) == 1 and len(strides) == 2
             and not any(attributes.get("pads", [0])) and set(attributes.get("dilations", [1])) == {1}
             and strides[0] == 1 and kernel >= strides[1])
    if not plain:
        raise ValueError(f"{node.name}: expected a height-1 convolution with kernel >= stride and no padding, groups "
                         f"or dilation, got weight {weight.shape} and {attributes}")
    return kernel, strides[1]


def quantized_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight (C_out, C, 1, k) -> int8 matrix (k*C, C_out), row j*C + c for input channel c of frame j of a
    window, and its scale per output channel."""
    out_channels, in_channels, _, kernel = weight.shape
    matrix = weight[:, :, 0, :].transpose(2, 1, 0).reshape(kernel * in_channels, out_channels)
    scale = np.maximum(np.abs(matrix).max(axis=0), SMALLEST_SCALE) / LEVELS
    return np.clip(np.round(matrix / scale), -LEVELS, LEVELS).astype(np.int8), scale.astype(np.float32)


def _per_frame_conv(node: onnx.NodeProto, weight: np.ndarray, bias: np.ndarray | None, frames: str, output: str
                    ) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    """Nodes and initializers computing `node`'s convolution from time-major `frames` (B, T, C) into time-major
    `output` (B, T', C_out), T' = (T - k) // s + 1."""
    kernel, stride = _conv_geometry(node, weight)
    in_channels = weight.shape[1]
    prefix = node.name + "/int8"
    nodes: list[onnx.NodeProto] = []
    tensors: list[TensorProto] = []

    def constant(name: str, value: np.ndarray) -> str:
        tensors.append(numpy_helper.from_array(value, f"{prefix}/{name}"))
        return f"{prefix}/{name}"

    def add(op: str, inputs: list[str], name: str, **attributes: object) -> str:
        out = f"{prefix}/{name}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attributes))
        return out

    def ints(*values: int) -> np.ndarray:
        return np.array(values, np.int64)

    w_q, w_scale = quantized_weight(weight)
    tensors += [numpy_helper.from_array(ints(1), _AXIS1), numpy_helper.from_array(ints(2), _AXIS2)]
    zero_point = constant("zero_point", np.array(ZERO_POINT, np.uint8))
    zero_point_1d = constant("zero_point_1d", np.array([ZERO_POINT], np.uint8))

    # scale of every row, and of the partial rows past the last (so that each frame has the scale of the row it starts)
    frame_max = add("ReduceMax", [add("Abs", [frames], "abs")], "frame_max", keepdims=1, axes=[2])  # (B, T, 1)
    windows_max = add("MaxPool", [add("Transpose", [frame_max], "frame_max_bct", perm=[0, 2, 1])], "windows_max",
                      kernel_shape=[kernel], strides=[stride], pads=[0, kernel - 1])  # (B, 1, ceil(T / s))
    positive = add("Max", [windows_max, constant("smallest_max", np.array(SMALLEST_SCALE * LEVELS, np.float32))], "positive")
    row_scale = add("Div", [add("Squeeze", [positive, _AXIS1], "windows_max_bt"), constant("levels", np.array(LEVELS, np.float32))],
                    "row_scale")  # (B, ceil(T / s))
    # T' = (T - k) // s + 1 rows; their first s frames are the first s*T' frames
    length = add("Shape", [frames], "length", start=1, end=2)
    rows = add("Add", [add("Div", [add("Sub", [length, constant("kernel", ints(kernel))], "less_kernel"),
                                   constant("stride", ints(stride))], "steps"), constant("one", ints(1))], "rows")
    head_end = add("Mul", [rows, constant("stride_again", ints(stride))], "head_end")

    def quantize(values: str, scale: str, name: str) -> str:
        """(B, n, C) float with one scale per (B, n) -> uint8 (B, n, C)."""
        flat_scale = add("Reshape", [scale, constant(f"{name}_flat", ints(-1))], f"{name}_scale")
        zero_points = add("Expand", [zero_point_1d, add("Shape", [flat_scale], f"{name}_count")], f"{name}_zero_points")
        flat = add("Reshape", [values, constant(f"{name}_rows", ints(-1, in_channels))], f"{name}_values")
        q = add("QuantizeLinear", [flat, flat_scale, zero_points], f"{name}_q", axis=0)
        return add("Reshape", [q, add("Shape", [values], f"{name}_shape")], f"{name}_q3")

    # every frame with the scale of the row it starts: row scales repeated s times, cut to T frames
    repeated = add("Expand", [add("Unsqueeze", [row_scale, _AXIS2], "row_scale_col"), constant("repeat", ints(1, 1, stride))],
                   "repeated")
    frame_scale = add("Slice", [add("Reshape", [repeated, constant("batch_frames", ints(0, -1))], "repeated_flat"),
                                constant("zero", ints(0)), length, _AXIS1], "frame_scale")
    frames_q = quantize(frames, frame_scale, "frames")
    head = add("Slice", [frames_q, constant("zero_again", ints(0)), head_end, _AXIS1], "head")
    pieces = [add("Reshape", [head, constant("head_shape", ints(0, -1, stride * in_channels))], "head_rows")]
    scale = add("Slice", [row_scale, constant("zero_rows", ints(0)), rows, _AXIS1], "scale")  # (B, T')
    for j in range(stride, kernel):  # the frames a row shares with the next, quantised with this row's scale
        start = constant(f"start{j}", ints(j))
        shared = add("Slice", [frames, start, add("Add", [head_end, constant(f"past{j}", ints(j - stride + 1))], f"end{j}"),
                               _AXIS1, constant(f"step{j}", ints(stride))], f"shared{j}")
        pieces.append(quantize(shared, scale, f"shared{j}"))
    rows_q = add("Concat", pieces, "rows_q", axis=2) if len(pieces) > 1 else pieces[0]  # (B, T', k*C)
    product = add("MatMulInteger", [rows_q, constant("weight", w_q), zero_point], "product")  # (B, T', C_out) int32
    # y = product * w_scale * scale[t]; the row scale as a division by its inverse so that the node before the GELU
    # is no Mul (onnxruntime's GELU fusion takes a Mul there for part of the GELU and leaves it unfused)
    channels = add("Mul", [add("Cast", [product], "product_float", to=TensorProto.FLOAT), constant("weight_scale", w_scale)],
                   "channels_scaled")
    inverse = add("Reciprocal", [add("Unsqueeze", [scale, _AXIS2], "scale_col")], "inverse_scale_col")
    if bias is None:
        nodes.append(helper.make_node("Div", [channels, inverse], [output], name=output))
    else:
        unbiased = add("Div", [channels, inverse], "unbiased")
        nodes.append(helper.make_node("Add", [unbiased, constant("bias", bias.astype(np.float32))], [output], name=output))
    return nodes, _unique(tensors)


def _unique(tensors: list[TensorProto]) -> list[TensorProto]:
    """The shared axis initializers once per graph: later convolutions add them again."""
    seen: dict[str, TensorProto] = {}
    for tensor in tensors:
        seen.setdefault(tensor.name, tensor)
    return list(seen.values())


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    """The fp32 weights the int8 ones replaced, and the shared axis initializers added more than once."""
    used = {name for node in graph.node for name in node.input}
    used |= {name for node in graph.node for attribute in node.attribute if attribute.type == onnx.AttributeProto.GRAPH
             for inner in attribute.g.node for name in inner.input}
    seen: set[str] = set()
    kept = []
    for tensor in graph.initializer:
        if tensor.name in used and tensor.name not in seen:
            kept.append(tensor)
            seen.add(tensor.name)
    del graph.initializer[:]
    graph.initializer.extend(kept)

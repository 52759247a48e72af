"""Run an exported student without PyTorch: numpy and onnxruntime only.

    from distill.deploy.runtime import OnnxStudent
    student = OnnxStudent("student.onnx")                 # written by `gendistiller export --to onnx`
    out = student([wav1, wav2])                           # 1-D float arrays, 16 kHz mono, any lengths
    out.hidden_states[k][i, : out.lengths[i]]             # (frames, dim) of hidden state k for utterance i

The waveforms are zero-padded into one batch; the graph is padding-invariant, so each utterance gets what it gets
alone, with padded frames zero. `out.hidden_states` follows the s3prl expert (GenDistiller: front-end output, then
the generated layers; DistilHuBERT: projected front-end, its layers, its heads; `paper` is its SUPERB feature);
`student.names` says which is which.

Long recordings are run in windows (`chunking`, distill.nn.chunking: the rule Student.infer follows; a CNN that normalises
over time gets the whole recording's first-layer statistics from the model's second graph, `first_layer_moments`), and
`OnnxStudent(path, layers=k)` computes hidden states 0..k only: the graph is pruned to those outputs at load time, so
GenDistiller stops generating after step k (and DistilHuBERT after transformer layer k, if k is one of its layers).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from distill.io.audio import check_waveforms
from distill.nn.chunking import Chunking, FrameGrid, Moments, RecordingNorm, Samples, Window, run_in_windows, runs_whole

ONNX_FORMAT = "gendistiller-onnx-1"  # the same tag distill.deploy.onnx_export writes (that module needs torch)
METADATA_KEYS = ("format", "kind", "hidden_state_names", "downsample_rate", "sample_rate", "dim", "paper_hidden_state",
                 "quantization")
MOMENT_INPUTS = ("first_layer_mean", "first_layer_variance")  # inputs of a CNN that normalises over time (NaN: own)


class DeployError(ValueError):
    """A file that is not an exported student."""


@dataclass
class OnnxOutput:
    hidden_states: list[np.ndarray]  # each (batch, frames, dim), zero past each utterance's frames
    lengths: np.ndarray  # (batch,) valid frames
    paper: Optional[int]  # index in hidden_states of DistilHuBERT's SUPERB feature (None for GenDistiller)


class OnnxStudent:
    """An exported student in an onnxruntime CPU session; `threads`: intra-op threads (default: onnxruntime's);
    `layers`: compute hidden states 0..layers only; `chunking`: windows for long recordings (None: run them whole)."""

    def __init__(self, path: str | Path, threads: Optional[int] = None, layers: Optional[int] = None,
                 chunking: Optional[Chunking] = Chunking()):
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise DeployError(f"{path}: file not found")
        options = onnxruntime.SessionOptions()
        _share_memory_arena(onnxruntime, options)
        # onnxruntime's memory patterns keep a planned block per input shape: every recording length (and the first,
        # middle and last windows of a long one) added its own to the peak (benchmarks/long_recordings.py memory)
        options.enable_mem_pattern = False
        options.log_severity_level = 3  # errors only: the moment inputs' defaults draw a warning at every load
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            model = str(path) if layers is None else _pruned(path, layers)
            self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except DeployError:
            raise
        except Exception as error:  # onnxruntime raises its own exception types for files it cannot parse
            raise DeployError(f"{path}: not a readable ONNX model ({type(error).__name__}: {error})") from error
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        missing = [key for key in METADATA_KEYS if key not in self.metadata]
        if self.metadata.get("format") != ONNX_FORMAT or missing:
            raise DeployError(f"{path}: not a student exported by `gendistiller export --to onnx` (expected metadata "
                              f"format={ONNX_FORMAT!r} and {list(METADATA_KEYS[1:])}; found {sorted(self.metadata) or 'none'})")
        self.kind: str = self.metadata["kind"]
        self.names: list[str] = json.loads(self.metadata["hidden_state_names"])[: None if layers is None else layers + 1]
        self.downsample_rate = int(self.metadata["downsample_rate"])
        paper = self.metadata["paper_hidden_state"]
        self.paper = int(paper) if paper and int(paper) < len(self.names) else None
        self.chunking = chunking
        self.grid = FrameGrid(int(self.metadata.get("receptive_field", FrameGrid().receptive_field)), self.downsample_rate)
        moments = self.metadata.get("first_layer_moments")  # the small second graph of a CNN that normalises over time
        self.moments_graph = None if moments is None else onnxruntime.InferenceSession(
            base64.b64decode(moments), options, providers=["CPUExecutionProvider"])

    def __call__(self, wavs: Sequence[np.ndarray]) -> OnnxOutput:
        check_waveforms(wavs)
        if all(runs_whole(len(wav), self.chunking, self.grid) for wav in wavs):
            return self._run(wavs)
        stitched = [[np.concatenate(parts) for parts in zip(*(states for _, states in self.windows(wav)))]
                    for wav in (np.asarray(wav, np.float32) for wav in wavs)]
        lengths = np.array([len(states[0]) for states in stitched], np.int64)
        batch = [np.zeros((len(wavs), int(lengths.max()), state.shape[-1]), np.float32) for state in stitched[0]]
        for i, states in enumerate(stitched):
            for padded, state in zip(batch, states):
                padded[i, : len(state)] = state
        return OnnxOutput(batch, lengths, self.paper)

    def windows(self, samples: Samples) -> Iterator[tuple[Window, list[np.ndarray]]]:
        """One recording, window by window: `samples` is an array or a distill.io.audio.AudioFile (read lazily), and each
        window comes with the kept frames of every hidden state ((frames, dim) each), so a long recording need never
        sit in memory whole (`gendistiller embed` reads and writes it this way)."""
        def run(first: int, end: int, moments: Optional[Moments]) -> list[np.ndarray]:
            return [state[0] for state in self._run([samples[first:end]], moments).hidden_states]

        def first_layer_moments(first: int, end: int) -> Moments:
            mean, variance = self.moments_graph.run(None, {"waveforms": np.asarray(samples[first:end], np.float32)[None]})
            return mean[0], variance[0]

        norm = None if self.moments_graph is None else RecordingNorm(FrameGrid(*json.loads(self.metadata["first_layer_grid"])),
                                                               first_layer_moments)
        return run_in_windows(run, len(samples), self.chunking, self.grid, norm)

    def _run(self, wavs: Sequence[np.ndarray], moments: Optional[Moments] = None) -> OnnxOutput:
        """`moments`: the first-layer statistics every utterance normalises with (default: each its own)."""
        waveforms, lengths = pad(wavs)
        inputs = {"waveforms": waveforms, "lengths": lengths}
        if moments is not None:
            inputs.update((name, value[None]) for name, value in zip(MOMENT_INPUTS, moments))
        *states, frames = self.session.run(None, inputs)
        return OnnxOutput(list(states), frames, self.paper)


def _pruned(path: Path, layers: int) -> bytes:
    """The exported graph with only the nodes that hidden states 0..layers and the frame lengths need (onnxruntime
    runs every node of a graph, whichever outputs are asked for)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    names = [output.name for output in graph.output]
    if not 0 <= layers < len(names) - 1:
        raise DeployError(f"layers={layers}: {path} has hidden states 0 to {len(names) - 2}")
    wanted = {f"hidden_state_{i}" for i in range(layers + 1)} | {"frame_lengths"}
    needed, kept = set(wanted), []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
            needed.update(_outer_inputs(node))
    del graph.node[:]
    graph.node.extend(reversed(kept))
    for field in (graph.output, graph.initializer):
        items = [item for item in field if item.name in needed]
        del field[:]
        field.extend(items)
    return model.SerializeToString()


def _outer_inputs(node) -> set[str]:  # noqa: ANN001 - an onnx NodeProto
    """Names a node's subgraphs (If / Loop bodies) read from the enclosing graph."""
    import onnx

    names: set[str] = set()
    for attribute in node.attribute:
        for subgraph in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
            for inner in subgraph.node:
                names.update(inner.input)
                names.update(_outer_inputs(inner))
    return names


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

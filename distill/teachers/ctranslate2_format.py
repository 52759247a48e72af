"""CTranslate2 Whisper models (faster-whisper's `model.bin`, or a folder holding one) -> `WhisperTeacher`, through our
own reader of the file, with no dependency on ctranslate2. float16, bfloat16, int8 and int16 weights are turned into
float32; `_CT2_RULES` maps the WhisperSpec's variable names onto our encoder (`distill/nn/whisper_encoder.py`),
raising on any name it does not know; the decoder and the vocabulary are never read.

Layout (ctranslate2 `specs/model_spec.py: ModelSpec._serialize`, read back by `src/models/model.cc`), little-endian:
uint32 binary version; string spec name; uint32 spec revision; uint32 variable count; per variable: string name,
uint8 rank, rank x uint32 dims, uint8 dtype id, uint32 byte count, raw data; then uint32 alias count and
(alias, variable name) string pairs. A string is a uint16 length, then that many bytes, the last one NUL.
Binary versions 4 to 6 share this layout (4 added the dtype id, 5 rounding in quantisation, 6 a separate
config.json); older ones store an item size instead of a dtype and predate Whisper.

The converter aliases a variable whose values equal an earlier one (alphabetical order), so a name may be an alias,
possibly of a decoder variable; `CTranslate2File.tensor` resolves it. Quantised weights are stored as
`<name>/weight` plus `<name>/weight_scale`: int8 with a scale per output row, 127 / max|row| (a conv weight's row is
its (in, kernel) slice), int16 with one scale for the tensor; `dequantized` divides by it.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor

from distill.io.checkpoint_files import CheckpointError
from distill.io.weight_names import rename
from distill.nn.whisper_encoder import WhisperEncoderConfig, WhisperEncoderModel
from distill.teachers.whisper_teacher import WhisperTeacher, build_whisper_encoder, whisper_teacher

SUPPORTED_BINARY_VERSIONS = (4, 5, 6)
# The dtype ids of ctranslate2's DataType enum (include/ctranslate2/types.h).
DTYPES: dict[int, torch.dtype] = {0: torch.float32, 1: torch.int8, 2: torch.int16, 3: torch.int32, 4: torch.float16,
                                  5: torch.bfloat16}

# CTranslate2 WhisperSpec variable names -> ours. `linear_0` of self-attention is q, k, v fused along the output rows
# (the converter's `fuse_linear`, with zeros for the key's missing bias): split after renaming (`_split_qkv`).
_CT2_RULES: tuple[tuple[str, str | None], ...] = (
    (r"encoder/(conv1|conv2)/(weight|bias)", r"\1.\2"),
    (r"encoder/position_encodings/encodings", "positions"),
    (r"encoder/layer_(\d+)/self_attention/layer_norm/gamma", r"layers.\1.self_attn_layer_norm.weight"),
    (r"encoder/layer_(\d+)/self_attention/layer_norm/beta", r"layers.\1.self_attn_layer_norm.bias"),
    (r"encoder/layer_(\d+)/self_attention/linear_0/(weight|bias)", r"layers.\1.self_attn.qkv.\2"),
    (r"encoder/layer_(\d+)/self_attention/linear_1/(weight|bias)", r"layers.\1.self_attn.out_proj.\2"),
    (r"encoder/layer_(\d+)/ffn/layer_norm/gamma", r"layers.\1.final_layer_norm.weight"),
    (r"encoder/layer_(\d+)/ffn/layer_norm/beta", r"layers.\1.final_layer_norm.bias"),
    (r"encoder/layer_(\d+)/ffn/linear_0/(weight|bias)", r"layers.\1.fc1.\2"),
    (r"encoder/layer_(\d+)/ffn/linear_1/(weight|bias)", r"layers.\1.fc2.\2"),
    (r"encoder/layer_norm/gamma", "layer_norm.weight"),
    (r"encoder/layer_norm/beta", "layer_norm.bias"),
    (r"encoder/.+/weight_scale", None),  # int8/int16 scales: read with their weight (`dequantized`)
    (r"encoder/num_heads", None),  # a scalar, read into the config
    (r"decoder/.*", None),
)


@dataclass(frozen=True)
class _Entry:
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int  # of the raw data in the file
    num_bytes: int


class _Cursor:
    """Reads the header fields of an open model.bin, raising CheckpointError on a truncated or malformed file."""

    def __init__(self, handle: BinaryIO, path: Path, size: int):
        self.handle, self.path, self.size = handle, path, size

    def need(self, count: int) -> None:
        position = self.handle.tell()
        if position + count > self.size:
            raise CheckpointError(f"{self.path}: truncated CTranslate2 file ({count} bytes needed at offset {position}, "
                                  f"the file has {self.size})")

    def skip(self, count: int) -> None:
        self.need(count)
        self.handle.seek(count, 1)

    def integer(self, fmt: str) -> int:
        size = struct.calcsize("<" + fmt)
        self.need(size)
        return struct.unpack("<" + fmt, self.handle.read(size))[0]

    def string(self) -> str:
        length = self.integer("H")
        if length == 0:
            raise CheckpointError(f"{self.path}: invalid string length 0 at offset {self.handle.tell() - 2}")
        self.need(length)
        raw = self.handle.read(length)
        if raw[-1] != 0:
            raise CheckpointError(f"{self.path}: string at offset {self.handle.tell() - length} is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as error:
            raise CheckpointError(f"{self.path}: not a CTranslate2 model file (bad string: {error})") from None


class CTranslate2File:
    """The index of a `model.bin`: spec name and revision, each variable's shape/dtype/place, and the aliases. Data is
    read on demand (`tensor`), so a decoder or vocabulary one does not need is never loaded."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: CTranslate2 model file not found")
        self.size = self.path.stat().st_size
        with open(self.path, "rb") as handle:
            cursor = _Cursor(handle, self.path, self.size)
            self.binary_version = cursor.integer("I")
            if self.binary_version not in SUPPORTED_BINARY_VERSIONS:
                raise CheckpointError(f"{self.path}: CTranslate2 binary version {self.binary_version} is not supported "
                                      f"(this reader knows versions {SUPPORTED_BINARY_VERSIONS[0]} to "
                                      f"{SUPPORTED_BINARY_VERSIONS[-1]})")
            self.spec = cursor.string()
            self.revision = cursor.integer("I")
            self.entries: dict[str, _Entry] = {}
            for _ in range(cursor.integer("I")):
                name = cursor.string()
                shape = tuple(cursor.integer("I") for _ in range(cursor.integer("B")))
                type_id = cursor.integer("B")
                if type_id not in DTYPES:
                    raise CheckpointError(f"{self.path}: variable {name!r} has unknown dtype id {type_id}")
                dtype, num_bytes = DTYPES[type_id], cursor.integer("I")
                expected = dtype.itemsize * math.prod(shape)
                if num_bytes != expected:
                    raise CheckpointError(f"{self.path}: variable {name!r} of shape {shape} ({dtype}) has {num_bytes} "
                                          f"bytes, expected {expected}")
                self.entries[name] = _Entry(shape, dtype, handle.tell(), num_bytes)
                cursor.skip(num_bytes)
            self.aliases: dict[str, str] = {}
            for _ in range(cursor.integer("I")):
                alias = cursor.string()
                self.aliases[alias] = cursor.string()

    # -- variables -------------------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every variable name, aliases included."""
        return [*self.entries, *self.aliases]

    def resolve(self, name: str) -> str:
        seen = {name}
        while name in self.aliases:
            name = self.aliases[name]
            if name in seen:
                raise CheckpointError(f"{self.path}: alias cycle through {name!r}")
            seen.add(name)
        if name not in self.entries:
            raise CheckpointError(f"{self.path}: variable {name!r} not found")
        return name

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except CheckpointError:
            return False
        return True

    def tensor(self, name: str) -> Tensor:
        """The stored tensor (its own dtype) of a variable or alias."""
        entry = self.entries[self.resolve(name)]
        with open(self.path, "rb") as handle:
            handle.seek(entry.offset)
            data = bytearray(handle.read(entry.num_bytes))
        if len(data) != entry.num_bytes:
            raise CheckpointError(f"{self.path}: truncated CTranslate2 file while reading {name!r}")
        if entry.num_bytes == 0:
            return torch.empty(entry.shape, dtype=entry.dtype)
        return torch.frombuffer(data, dtype=entry.dtype).reshape(entry.shape)

    def dequantized(self, name: str) -> Tensor:
        """A float32 tensor: `name` divided by `name + "_scale"` if the file quantised it (int8 / int16 weights)."""
        name = self.resolve(name)  # an alias shares its target's scale
        value = self.tensor(name)
        scale_name = f"{name}_scale"
        if scale_name not in self:
            if not value.is_floating_point():
                raise CheckpointError(f"{self.path}: {name!r} is stored as {value.dtype} without {scale_name!r}")
            return value.float()
        scale = self.tensor(scale_name).float()
        return value.float() / scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))

    def scalar(self, name: str) -> int | float:
        value = self.tensor(name)
        if value.numel() != 1:
            raise CheckpointError(f"{self.path}: {name!r} should be a scalar, has shape {tuple(value.shape)}")
        return value.item()


def is_ctranslate2_file(path: str | Path) -> bool:
    """Whether `path` starts like a CTranslate2 model.bin: a uint32 binary version (any: an unknown one is reported by
    `CTranslate2File`), then a NUL-terminated spec name such as "WhisperSpec"."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        head = handle.read(6 + 256)
    if len(head) < 7:
        return False
    version, length = struct.unpack("<IH", head[:6])
    name = head[6: 6 + length]
    return version > 0 and 2 <= length <= 256 and len(name) == length and name[-1] == 0 and name[:-1].isascii() \
        and name[:-1].decode("ascii").isidentifier()


# ---- the Whisper teacher -----------------------------------------------------------------------------------------

def load_ctranslate2_whisper(path: str, pad_to_30s: bool) -> WhisperTeacher:
    """The teacher of a CTranslate2 Whisper `model.bin` at `path`, or in the folder `path`."""
    model_file = Path(path) / "model.bin" if Path(path).is_dir() else Path(path)
    model, source_parameters = import_ctranslate2_whisper(model_file)
    return whisper_teacher(path, model, pad_to_30s, source_parameters)


def import_ctranslate2_whisper(path: str | Path) -> tuple[WhisperEncoderModel, int]:
    """A CTranslate2 WhisperSpec `model.bin` -> (our model, elements of the file's variables, decoder included)."""
    model_file = CTranslate2File(path)
    source = str(model_file.path)
    if model_file.spec != "WhisperSpec":
        raise CheckpointError(f"{source}: a CTranslate2 {model_file.spec} model, not a Whisper model (WhisperSpec)")
    if not 1 <= model_file.revision <= 3:
        raise CheckpointError(f"{source}: WhisperSpec revision {model_file.revision} is not supported "
                              "(this reader knows 1 to 3)")
    weights = {}
    for name in model_file.names():  # renamed first, so that only what the encoder uses is read
        target = rename(name, source, _CT2_RULES)
        if target is not None:
            weights[target] = model_file.dequantized(name)
    weights = _split_qkv(weights, source)
    if "encoder/num_heads" not in model_file or "conv1.weight" not in weights:
        raise CheckpointError(f"{source}: WhisperSpec model without encoder/num_heads or encoder/conv1/weight")
    conv1, positions = weights["conv1.weight"], weights.get("positions")
    if positions is None:
        raise CheckpointError(f"{source}: WhisperSpec model without encoder/position_encodings/encodings")
    num_layers = len({name.split(".")[1] for name in weights if name.startswith("layers.")})
    config = WhisperEncoderConfig(n_mels=conv1.shape[1], n_ctx=positions.shape[0], dim=conv1.shape[0],
                                  num_heads=int(model_file.scalar("encoder/num_heads")), num_layers=num_layers,
                                  ffn_dim=weights["layers.0.fc1.weight"].shape[0] if num_layers else 4 * conv1.shape[0])
    source_elements = sum(entry.num_bytes // entry.dtype.itemsize for name, entry in model_file.entries.items()
                          if entry.shape and not name.endswith("_scale"))
    return build_whisper_encoder(config, weights, source), source_elements


def _split_qkv(weights: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """`layers.N.self_attn.qkv.{weight,bias}` (rows q, k, v) -> q_proj, k_proj (weight only: the converter stores zeros
    for the key's bias, and a key bias would not change attention anyway), v_proj."""
    out = {}
    for name, value in weights.items():
        prefix, _, kind = name.rpartition(".")
        if not prefix.endswith(".qkv"):
            out[name] = value
            continue
        if value.shape[0] % 3:
            raise CheckpointError(f"{source}: fused q/k/v {kind} of shape {tuple(value.shape)} does not split in three")
        query, key, value_part = value.chunk(3)
        base = prefix[: -len("qkv")]
        out[f"{base}q_proj.{kind}"] = query
        out[f"{base}v_proj.{kind}"] = value_part
        if kind == "weight":
            out[f"{base}k_proj.weight"] = key
    return out

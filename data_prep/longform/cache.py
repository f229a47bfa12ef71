"""Alignments kept under the output folder: a rerun (after a kill too) does not align a recording again.

One JSON file per recording, ``cache/align/<k[:2]>/<k>.json``, written atomically;
``k`` hashes the recording file's identity (resolved path, size, mtime), its
transcript and the aligner's identity, so a changed file, text or model aligns anew.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from data_prep.longform.aligner import AlignedWord
from data_prep.outputs import atomic_write_text

#: Bump when what an alignment holds changes.
ALIGN_VERSION = "align-v1"
ALIGN_DIR = "align"


def alignment_key(audio: str, text: str, aligner_identity: str) -> str:
    st = os.stat(audio)
    blob = json.dumps([ALIGN_VERSION, aligner_identity, os.path.realpath(audio), st.st_size, st.st_mtime_ns, text])
    return hashlib.sha1(blob.encode()).hexdigest()


def _path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / ALIGN_DIR / key[:2] / f"{key}.json"


def load_alignment(cache_dir: Path, key: str) -> list[AlignedWord] | None:
    """The cached alignment of ``key``, or None (not cached, or not readable as one)."""
    try:
        rows = json.loads(_path(cache_dir, key).read_text(encoding="utf-8"))
        return [AlignedWord(start=r[0], end=r[1], logp=r[2], frames=r[3], dropped=r[4]) for r in rows]
    except (OSError, ValueError, TypeError, IndexError):
        return None


def save_alignment(cache_dir: Path, key: str, words: list[AlignedWord]) -> None:
    path = _path(cache_dir, key)
    rows = [[w.start, w.end, w.logp, w.frames, w.dropped] for w in words]
    atomic_write_text(path, json.dumps(rows, ensure_ascii=False) + "\n")

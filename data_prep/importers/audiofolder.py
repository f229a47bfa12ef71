"""Hugging Face "audiofolder": audio files plus ``metadata.csv`` or ``metadata.jsonl``.

Input rows are the data lines of the metadata files. ``file_name`` (the audio
path relative to the metadata file) is required; the transcript is the first
of the columns ``transcription``, ``sentence``, ``text``, ``transcript``; the
speaker the first of ``speaker_id``, ``speaker``, ``client_id``. Corpora with
split folders (``train/``, ``validation/`` or ``dev/``, ``test/``, each with its
own metadata file) keep those splits; otherwise the metadata file sits at the
root and the rows have no split.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from data_prep.importers.base import (
    CorpusError,
    RawRow,
    Row,
    malformed,
    not_utf8,
    read_lines,
    resolve,
    stem_id,
)
from data_prep.manifest import Source

TEXT_COLUMNS = ("transcription", "sentence", "text", "transcript")
SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
SPLIT_DIRS = (("train", "train"), ("validation", "dev"), ("dev", "dev"), ("test", "test"))
METADATA = ("metadata.jsonl", "metadata.csv")


def _metadata(folder: Path) -> Path | None:
    for name in METADATA:
        if (folder / name).is_file():
            return folder / name
    return None


def metadata_files(root: Path) -> list[tuple[Path, str]]:
    """Metadata files with the split they define ("" at the root)."""
    found = [(m, split) for d, split in SPLIT_DIRS if (m := _metadata(root / d))]
    if found:
        return found
    m = _metadata(root)
    if m is None:
        raise CorpusError(f"{root}: no metadata.csv or metadata.jsonl (not an audiofolder)")
    return [(m, "")]


def _first(rec: dict, names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in rec and rec[n] is not None:
            return str(rec[n])
    return None


def _records(path: Path, root: Path) -> Iterator[tuple[Source, dict | None, Row | None]]:
    """(source, record) for each data line, or (source, None, reject) for a bad one."""
    lines = read_lines(path, root)
    if path.suffix == ".jsonl":
        for src, line, raw in lines:
            if line is None:
                yield src, None, not_utf8(src, raw)
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                yield src, None, malformed(src, f"not a JSON object: {e}")
                continue
            if not isinstance(rec, dict):
                yield src, None, malformed(src, "not a JSON object")
                continue
            yield src, rec, None
        return
    header: list[str] | None = None
    for src, line, raw in lines:
        if line is None:
            if header is None:
                raise CorpusError(f"{path}:{src.line}: header is not valid UTF-8")
            yield src, None, not_utf8(src, raw)
            continue
        try:
            cols = next(csv.reader([line]))
        except csv.Error as e:
            yield src, None, malformed(src, f"CSV error: {e}")
            continue
        if header is None:
            header = cols
            continue
        if len(cols) != len(header):
            yield src, None, malformed(src, f"{len(cols)} CSV columns, header has {len(header)}")
            continue
        yield src, dict(zip(header, cols)), None


def import_audiofolder(root: str | Path) -> Iterator[Row]:
    """Yield one row per data line of the metadata files."""
    root = Path(root)
    for meta, split in metadata_files(root):
        for src, rec, bad in _records(meta, root):
            if rec is None:
                yield bad
                continue
            name = rec.get("file_name")
            text = _first(rec, TEXT_COLUMNS)
            if not isinstance(name, str) or not name.strip():
                yield malformed(src, "missing 'file_name'", text_raw=text or "")
                continue
            if text is None:
                yield malformed(src, f"no transcript column (one of {', '.join(TEXT_COLUMNS)})")
                continue
            # ids come from the path below the corpus root, so split folders cannot collide
            relpath = Path(name).name if Path(name).is_absolute() else (meta.parent / name).relative_to(root).as_posix()
            yield RawRow(
                id=stem_id(relpath),
                audio=resolve(meta.parent, name),
                text_raw=text,
                source=src,
                speaker=(_first(rec, SPEAKER_COLUMNS) or "").strip(),
                split=split,
            )

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
    is_utf8,
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


def _first_column(rec: dict, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if rec.get(n) is not None), None)


def _first(rec: dict, names: tuple[str, ...]) -> str | None:
    n = _first_column(rec, names)
    return None if n is None else str(rec[n])


def _json_records(lines: Iterator[tuple[Source, str | None, bytes]]
                  ) -> Iterator[tuple[Source, dict | None, Row | None]]:
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
        # a \ud800-style escape decodes to a lone surrogate, which no UTF-8 manifest can hold
        if "\\ud" in line.lower() and not is_utf8(json.dumps(rec, ensure_ascii=False)):
            yield src, None, malformed(src, "a JSON \\u escape is a lone surrogate, not a character")
            continue
        yield src, rec, None


def _csv_lines(lines: Iterator[tuple[Source, str | None, bytes]], taken: list) -> Iterator[str]:
    """The lines for :mod:`csv`, noting in ``taken`` the (source, line, raw) of each it reads,
    and None when it asks past the last one (a record still open at the end of the file)."""
    for item in lines:
        taken.append(item)
        _, line, raw = item
        yield (raw.decode("utf-8", "replace") if line is None else line) + "\n"
    taken.append(None)


def _csv_records(path: Path, lines: Iterator[tuple[Source, str | None, bytes]]
                 ) -> Iterator[tuple[Source, dict | None, Row | None]]:
    # one csv.reader over the whole file: a quoted field may hold a newline (valid CSV, as
    # Hugging Face reads it), so one record can span lines; it is named by its first line
    taken: list[tuple[Source, str | None, bytes]] = []
    reader = csv.reader(_csv_lines(lines, taken))
    header: list[str] | None = None
    while True:
        taken.clear()
        try:
            cols = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            cols = e
        unclosed = taken[-1:] == [None]  # csv gives the partial field at the end of the file
        if unclosed:
            taken.pop()
        if not taken:
            return
        src = taken[0][0]
        span = f" (a quoted field runs to line {taken[-1][0].line})" if len(taken) > 1 else ""
        bad = next((raw for _, line, raw in taken if line is None), None)
        if header is None:
            if bad is not None:
                raise CorpusError(f"{path}:{src.line}: header is not valid UTF-8")
            if isinstance(cols, csv.Error) or unclosed:
                why = "a quoted field is never closed" if unclosed else cols
                raise CorpusError(f"{path}:{src.line}: header is not valid CSV: {why}")
            header = cols
            continue
        if bad is not None:
            yield src, None, not_utf8(src, bad)
        elif unclosed:
            yield src, None, malformed(src, f"a quoted field is not closed before the end of the file{span}")
        elif isinstance(cols, csv.Error):
            yield src, None, malformed(src, f"CSV error: {cols}{span}")
        elif len(cols) != len(header):
            yield src, None, malformed(src, f"{len(cols)} CSV columns, header has {len(header)}{span}")
        else:
            yield src, dict(zip(header, cols)), None


def _records(path: Path, root: Path) -> Iterator[tuple[Source, dict | None, Row | None]]:
    """(source, record) for each data record, or (source, None, reject) for a bad one."""
    lines = read_lines(path, root)
    return _json_records(lines) if path.suffix == ".jsonl" else _csv_records(path, lines)


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
            column = _first_column(rec, TEXT_COLUMNS)
            if not isinstance(rec[column], str):  # a JSON number or list: str() would make up a transcript
                yield malformed(src, f"{column!r} is {json.dumps(rec[column], ensure_ascii=False)[:80]}, not a string")
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

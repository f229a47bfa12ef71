"""Common Voice layout: ``{train,dev,test}.tsv`` (or ``validated.tsv``) and ``clips/``.

Input rows are the data lines of the split files, read in the order train, dev,
test. Each TSV's header names the columns; ``path`` and ``sentence`` are
required, ``client_id`` is the speaker. Common Voice does not quote fields, so
lines are split on tabs, never parsed as CSV.
"""

from __future__ import annotations

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

SPLIT_FILES = (("train.tsv", "train"), ("dev.tsv", "dev"), ("test.tsv", "test"))
FALLBACK_FILE = "validated.tsv"
REQUIRED = ("path", "sentence")


def split_files(root: Path) -> list[tuple[Path, str]]:
    """The TSV files to read with their split names; ``validated.tsv`` (no split) as a fallback."""
    found = [(root / name, split) for name, split in SPLIT_FILES if (root / name).is_file()]
    if found:
        return found
    if (root / FALLBACK_FILE).is_file():
        return [(root / FALLBACK_FILE, "")]
    raise CorpusError(f"{root}: no Common Voice split files (train.tsv, dev.tsv, test.tsv or validated.tsv)")


def import_common_voice(root: str | Path) -> Iterator[Row]:
    """Yield one row per data line of the corpus's TSV files."""
    root = Path(root)
    for path, split in split_files(root):
        header: list[str] | None = None
        for src, line, raw in read_lines(path, root):
            if header is None:
                if line is None:
                    raise CorpusError(f"{path}:{src.line}: header is not valid UTF-8")
                header = line.split("\t")
                missing = [c for c in REQUIRED if c not in header]
                if missing:
                    raise CorpusError(f"{path}:{src.line}: header lacks columns {missing}")
                continue
            if line is None:
                yield not_utf8(src, raw)
                continue
            cols = line.split("\t")
            if len(cols) != len(header):
                yield malformed(src, f"{len(cols)} tab-separated columns, header has {len(header)}")
                continue
            rec = dict(zip(header, cols))
            clip = rec["path"].strip()
            if not clip:
                yield malformed(src, "empty 'path' column", text_raw=rec["sentence"])
                continue
            yield RawRow(
                id=stem_id(clip),
                audio=resolve(root / "clips", clip),
                text_raw=rec["sentence"],
                source=src,
                speaker=rec.get("client_id", "").strip(),
                split=split,
            )

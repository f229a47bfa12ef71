"""Corpus importers: one module per on-disk format, all yielding :class:`RawRow` or ``Reject``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from data_prep.importers.audiofolder import import_audiofolder
from data_prep.importers.base import CorpusError, RawRow, Row
from data_prep.importers.common_voice import import_common_voice
from data_prep.importers.folder import import_folder
from data_prep.importers.hf import HFColumns, import_hf
from data_prep.importers.kaldi import import_kaldi


def import_longform(root: Path) -> Iterator[Row]:
    """Long recordings with their transcripts: a folder corpus (``name.wav`` + ``name.txt``) whose
    transcripts keep their lines; ``prepare`` cuts each recording by forced alignment
    (:mod:`data_prep.longform`)."""
    return import_folder(root, keep_lines=True)


#: --format name -> importer
IMPORTERS: dict[str, Callable[[Path], Iterator[Row]]] = {
    "cv": import_common_voice,
    "kaldi": import_kaldi,
    "audiofolder": import_audiofolder,
    "folder": import_folder,
    "hf": import_hf,
    "longform": import_longform,
}


def import_corpus(fmt: str, root: str | Path, columns: HFColumns | None = None) -> list[Row]:
    """All input rows of a corpus, in source order; ``columns``: which of a Hugging Face dataset's."""
    if fmt not in IMPORTERS:
        raise CorpusError(f"unknown corpus format {fmt!r}; known: {', '.join(IMPORTERS)}")
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus folder not found")
    if columns is not None and fmt != "hf":
        raise CorpusError(f"--audio-column, --text-column, --speaker-column and --split are for --format hf, not {fmt}")
    if fmt == "hf":
        return list(import_hf(root, columns or HFColumns()))
    return list(IMPORTERS[fmt](root))


__all__ = ["IMPORTERS", "CorpusError", "HFColumns", "RawRow", "Row", "import_corpus"]

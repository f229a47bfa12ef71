"""Corpus importers: one module per on-disk format, all yielding :class:`RawRow` or ``Reject``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from data_prep.importers.audiofolder import import_audiofolder
from data_prep.importers.base import CorpusError, RawRow, Row
from data_prep.importers.common_voice import import_common_voice
from data_prep.importers.folder import import_folder
from data_prep.importers.kaldi import import_kaldi

#: --format name -> importer
IMPORTERS: dict[str, Callable[[Path], Iterator[Row]]] = {
    "cv": import_common_voice,
    "kaldi": import_kaldi,
    "audiofolder": import_audiofolder,
    "folder": import_folder,
}


def import_corpus(fmt: str, root: str | Path) -> list[Row]:
    """All input rows of a corpus, in source order."""
    if fmt not in IMPORTERS:
        raise CorpusError(f"unknown corpus format {fmt!r}; known: {', '.join(IMPORTERS)}")
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus folder not found")
    return list(IMPORTERS[fmt](root))


__all__ = ["IMPORTERS", "CorpusError", "RawRow", "Row", "import_corpus"]

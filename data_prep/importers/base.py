"""What every importer yields, and the line reading they share.

An importer turns a corpus on disk into a stream of *input rows*: one
:class:`RawRow` per utterance it found, or one :class:`~data_prep.manifest.Reject`
per line it could not parse. The stream's order is the corpus's own order
(files in a fixed order, lines top to bottom), which is the order of every
output. Importers do not decode audio; they parse text files (or a dataset's
Arrow columns).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_prep.manifest import Reject, Source

#: Audio file extensions the folder and audiofolder importers look for.
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm")


@dataclass(frozen=True)
class EmbeddedAudio:
    """Audio stored inside a data file (a Hugging Face dataset's Parquet or Arrow file): the bytes
    in row ``index`` (from 0) of its column ``column``."""

    column: str
    index: int


@dataclass(frozen=True)
class RawRow:
    """One utterance as the corpus describes it, before any audio or text work.

    ``audio`` is an absolute path (resolved against the corpus root, not yet
    checked to lie inside it), or for a Kaldi pipe the command line ending in
    ``|`` (``is_pipe``). ``duration`` None means "to the end of the file".
    ``split`` is the corpus's own split ("" if it has none). ``embedded``: the audio is not the
    file ``audio`` itself but bytes stored in it (``audio`` is then the data file).
    """

    id: str
    audio: str
    text_raw: str
    source: Source
    speaker: str = ""
    offset: float = 0.0
    duration: float | None = None
    split: str = ""
    is_pipe: bool = False
    embedded: EmbeddedAudio | None = None


Row = RawRow | Reject


class CorpusError(ValueError):
    """A corpus whose layout cannot be imported at all; the message names the path."""


def _plain(path: str) -> bool:
    """Whether ``path`` is absolute and spelled as pathlib would write it (no ``//``, ``.`` parts or trailing ``/``)."""
    return (path.startswith("/") and "//" not in path and "/./" not in path
            and not path.endswith(("/", "/.")))


def rel(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` when inside it (for readable sources), else as given."""
    if os.sep == "/" and isinstance(path, str) and isinstance(root, str):
        # what Path(path).relative_to(root).as_posix() gives, by string when both are plainly
        # spelled (every row's audio path is): pathlib costs ~10x more per row
        n = len(root)
        if path.startswith(root) and path[n : n + 1] == "/" and _plain(path) and _plain(root):
            return path[n + 1 :]
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def resolve(root: Path, audio: str) -> str:
    """An audio path from a corpus file, made absolute against the corpus root (not normalized)."""
    p = Path(audio)
    return str(p if p.is_absolute() else root / p)


def read_lines(path: Path, root: Path) -> Iterator[tuple[Source, str | None, bytes]]:
    """Yield (source, decoded line or None if not UTF-8, raw bytes) for each non-blank line.

    Lines are split on ``\\n`` only (a stray ``\\r`` is stripped), so line numbers
    match what an editor shows. A UTF-8 byte order mark on line 1 is ignored.
    """
    name = rel(path, root)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            yield Source(name, lineno), text, raw


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: a file name that is not UTF-8 decodes to lone
    surrogates (and so does a JSON ``\\udXXX`` escape), which would stop the manifest writer."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escaped(text: str) -> str:
    """``text`` with what UTF-8 cannot hold shown as backslash escapes (for rejects and messages):
    a file name's undecodable bytes as the bytes (``\\xff``), a JSON lone surrogate as itself."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def not_utf8(src: Source, raw: bytes, id: str = "") -> Reject:
    """The reject for a line that is not valid UTF-8 (its bytes shown escaped)."""
    return Reject("not_utf8", f"line is not valid UTF-8: {raw[:80]!r}", src, id=id)


def malformed(src: Source, detail: str, id: str = "", text_raw: str = "") -> Reject:
    """The reject for a line that cannot be parsed."""
    return Reject("malformed_line", detail, src, id=id, text_raw=text_raw)


def stem_id(relpath: str) -> str:
    """An utterance id from a relative audio path: extension dropped, folders joined by '-'."""
    p = Path(relpath)
    return "-".join(p.with_suffix("").parts)

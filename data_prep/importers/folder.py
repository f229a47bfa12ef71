"""A plain folder: audio files with same-named ``.txt`` transcripts next to them.

Input rows: one per audio file (any of :data:`AUDIO_EXTENSIONS`, searched
recursively, in sorted path order), then one per ``.txt`` file that has no
audio (rejected ``missing_audio``). An audio file without a transcript is
rejected ``missing_text``. The speaker is the first folder below the root
(``spk1/utt.wav`` -> ``spk1``), or unknown ("") for files at the root. A
transcript spanning several lines is joined with spaces. Hidden files and
folders are skipped. Extensions match in any case (``A.WAV``, ``A.TXT``). A
file whose name is not valid UTF-8 is rejected ``not_utf8`` (its transcript
with it), since no manifest could hold its path.

Symlinks are followed, to files and to folders alike, and the rows keep the
path as written below the root (so :func:`data_prep.validate.inside` takes
them as the corpus's own, wherever the link points: whoever built the folder
put the link there). What a link cannot give is a row with a reason, in path
order: a link to nothing, or a folder that cannot be listed, is
``missing_audio``; a link to a folder it lies in (which would list the same
files forever) is ``symlink_loop``, and is not followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from data_prep.importers.base import (
    AUDIO_EXTENSIONS,
    CorpusError,
    RawRow,
    Row,
    escaped,
    is_utf8,
    not_utf8,
    stem_id,
)
from data_prep.manifest import Reject, Source


def _bad_name(relpath: str) -> Reject:
    shown = escaped(relpath)
    return Reject("not_utf8", f"file name is not valid UTF-8: {shown}", Source(shown))


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def _link_reject(path: Path, root: Path, reason: str, why: str) -> Reject:
    relpath = escaped(path.relative_to(root).as_posix())
    return Reject(reason, f"{relpath}: {why}", Source(relpath), id=stem_id(relpath) if _is_audio(path) else "",
                  audio=escaped(str(path)))


def _link_target(path: Path) -> str:
    try:
        return escaped(os.readlink(path))
    except OSError:
        return "?"


def _walk(root: Path) -> tuple[list[Path], dict[Path, Reject]]:
    """(every visible file below ``root``, symlinks followed; a reject for each path that could not be
    followed or listed), paths as written below ``root``.

    A folder is entered once per path that leads to it, except from inside itself:
    ``(st_dev, st_ino)`` of the folders above tells a loop. A link to nothing counts
    if it might have been a clip or a folder of them (an audio name, or no extension);
    one named ``.txt`` is listed as a file, whose reading then says what is wrong.
    """
    files: list[Path] = []
    broken: dict[Path, Reject] = {}

    def visit(folder: Path, above: frozenset[tuple[int, int]]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if folder == root:
                raise CorpusError(f"{root}: cannot list the corpus folder: {e.strerror or e}") from e
            broken[folder] = _link_reject(folder, root, "missing_audio",
                                          f"cannot list the folder ({e.strerror or e}): its clips cannot be read")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            if entry.is_dir():  # through a link too
                st = entry.stat()
                if (st.st_dev, st.st_ino) in above:
                    broken[path] = _link_reject(path, root, "symlink_loop", f"a symlink to {_link_target(path)}, "
                                                "a folder it lies in: not followed (its files are read where they lie)")
                else:
                    visit(path, above | {(st.st_dev, st.st_ino)})
            elif entry.is_file() or (entry.is_symlink() and path.suffix.lower() == ".txt"):
                files.append(path)
            elif entry.is_symlink() and (_is_audio(path) or not path.suffix):
                broken[path] = _link_reject(path, root, "missing_audio",
                                            f"a symlink to {_link_target(path)}, which does not exist")

    st = os.stat(root)
    visit(root, frozenset({(st.st_dev, st.st_ino)}))
    return sorted(files), broken


def _read_transcript(txt: Path) -> bytes | str:
    """A transcript's bytes, or why they cannot be read."""
    try:
        return txt.read_bytes()
    except OSError as e:
        link = f" (a symlink to {_link_target(txt)})" if txt.is_symlink() else ""
        return f"cannot read {escaped(txt.name)}{link}: {e.strerror or e}"


def import_folder(root: str | Path, *, keep_lines: bool = False) -> Iterator[Row]:
    """Yield one row per audio file (or path a link could not give), then one per orphan transcript.

    ``keep_lines``: a transcript's lines stay lines (joined by ``\\n``, blank ones kept so that line
    numbers hold), for long recordings whose transcripts are written a sentence a line.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: not a folder")
    files, broken = _walk(root)
    audio = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    texts = {p.with_suffix(""): p for p in files if p.suffix.lower() == ".txt"}
    used: set[Path] = set()
    for path in sorted([*audio, *broken]):
        if path in broken:
            if _is_audio(path):  # its transcript goes with it
                used.add(texts.get(path.with_suffix(""), path))
            yield broken[path]
            continue
        relpath = path.relative_to(root)
        if not is_utf8(relpath.as_posix()):
            used.add(texts.get(path.with_suffix(""), path))
            yield _bad_name(relpath.as_posix())
            continue
        utt = stem_id(relpath.as_posix())
        speaker = relpath.parts[0] if len(relpath.parts) > 1 else ""
        txt = texts.get(path.with_suffix(""))
        if txt is None:
            yield Reject("missing_text", f"no {path.with_suffix('.txt').name} next to the audio",
                         Source(relpath.as_posix()), id=utt, audio=str(path))
            continue
        used.add(txt)
        src = Source(txt.relative_to(root).as_posix(), 1)
        raw = _read_transcript(txt)
        if isinstance(raw, str):
            yield Reject("missing_text", raw, src, id=utt, audio=str(path))
            continue
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            yield not_utf8(src, raw, id=utt)
            continue
        text_raw = "\n".join(" ".join(line.split()) for line in text.split("\n")) if keep_lines else " ".join(text.split())
        yield RawRow(id=utt, audio=str(path), text_raw=text_raw, source=src, speaker=speaker)
    for txt in sorted(set(texts.values()) - used):
        rel = txt.relative_to(root).as_posix()
        if not is_utf8(rel):
            yield _bad_name(rel)
            continue
        yield Reject("missing_audio", "transcript without an audio file of the same name", Source(rel, 1),
                     id=stem_id(rel))

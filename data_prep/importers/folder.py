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
"""

from __future__ import annotations

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


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _bad_name(relpath: str) -> Reject:
    shown = escaped(relpath)
    return Reject("not_utf8", f"file name is not valid UTF-8: {shown}", Source(shown))


def import_folder(root: str | Path) -> Iterator[Row]:
    """Yield one row per audio file, then one per orphan transcript."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and _visible(p, root))
    audio = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    texts = {p.with_suffix(""): p for p in files if p.suffix.lower() == ".txt"}
    used: set[Path] = set()
    for path in audio:
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
        raw = txt.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            yield not_utf8(src, raw, id=utt)
            continue
        yield RawRow(id=utt, audio=str(path), text_raw=" ".join(text.split()), source=src, speaker=speaker)
    for txt in sorted(set(texts.values()) - used):
        rel = txt.relative_to(root).as_posix()
        if not is_utf8(rel):
            yield _bad_name(rel)
            continue
        yield Reject("missing_audio", "transcript without an audio file of the same name", Source(rel, 1),
                     id=stem_id(rel))

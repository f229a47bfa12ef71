"""Kaldi data directory: ``wav.scp``, ``text``, ``utt2spk`` and optional ``segments``.

The data directory is ``--src`` itself when it holds ``wav.scp``, else the one
directory below it that does. Relative audio paths are resolved against
``--src`` (the corpus root), as in the Punjabi digits corpus.

Input rows: one per line of ``segments`` when it exists (each line cuts one
utterance out of a recording), else one per line of ``wav.scp``. Lines of the
other files that cannot be used become rows of their own, rejected: a
transcript without audio (``missing_audio``), an utterance that an existing
``utt2spk`` does not list, or lists on a malformed line only (``missing_speaker``: Kaldi's validate_data_dir.sh
refuses such a directory, and a speaker-disjoint split cannot place it), a repeated key
(``duplicate_id``), a malformed or non-UTF-8 line (a malformed ``segments`` or
``wav.scp`` line of an utterance is its one reject, with its transcript). A ``wav.scp`` value ending
in ``|`` is a command pipe; the importer only marks it (``is_pipe``), the
security decision is made in :mod:`data_prep.validate`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from data_prep.importers.base import CorpusError, RawRow, Row, malformed, not_utf8, read_lines, resolve
from data_prep.manifest import Reject, Source


def find_data_dir(root: Path) -> Path:
    """The Kaldi data directory at or below ``root`` (exactly one must hold wav.scp)."""
    if (root / "wav.scp").is_file():
        return root
    found = sorted(p.parent for p in root.rglob("wav.scp"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise CorpusError(f"{root}: no wav.scp found (not a Kaldi data directory)")
    listed = ", ".join(str(p.relative_to(root)) for p in found)
    raise CorpusError(f"{root}: several Kaldi data directories ({listed}); pass one of them as --src")


@dataclass
class _Table:
    """A Kaldi key-value file: first occurrence of each key wins, later ones are rejected rows."""

    values: dict[str, tuple[str, Source]]
    rejects: list[Reject]


def _read_table(path: Path, root: Path, min_fields: int, what: str) -> _Table:
    values: dict[str, tuple[str, Source]] = {}
    rejects: list[Reject] = []
    if not path.is_file():
        return _Table(values, rejects)
    for src, line, raw in read_lines(path, root):
        if line is None:
            rejects.append(not_utf8(src, raw))
            continue
        parts = line.strip().split(maxsplit=1)
        key, value = parts[0], (parts[1] if len(parts) > 1 else "")
        if len(value.split()) < min_fields - 1:
            rejects.append(malformed(src, f"{what} line needs {min_fields} fields", id=key))
        elif key in values:
            first = values[key][1]
            rejects.append(Reject("duplicate_id", f"key {key!r} already defined at line {first.line}", src, id=key))
        else:
            values[key] = (value, src)
    return _Table(values, rejects)


def _audio(root: Path, value: str) -> tuple[str, bool]:
    value = value.strip()
    if value.endswith("|"):
        return value, True
    return resolve(root, value), False


def _parse_segment(value: str) -> tuple[str, float, float | None]:
    rec, start, end = value.split()[:3]
    t0, t1 = float(start), float(end)
    # float() also takes "nan" and "inf" (and 1e400): no window of a recording, and they break the decoder
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 < 0 or (t1 >= 0 and t1 <= t0):
        raise ValueError(f"bad segment times {start} {end}")
    return rec, t0, (None if t1 < 0 else t1 - t0)


def import_kaldi(root: str | Path) -> Iterator[Row]:
    """Yield one row per utterance (see the module docstring), then the unusable lines."""
    root = Path(root)
    data = find_data_dir(root)
    wav = _read_table(data / "wav.scp", root, 2, "wav.scp")
    text = _read_table(data / "text", root, 1, "text")
    spk = _read_table(data / "utt2spk", root, 2, "utt2spk")
    has_utt2spk = (data / "utt2spk").is_file()  # without one, every utterance is its own pseudo-speaker
    if not (data / "text").is_file():
        raise CorpusError(f"{data}: Kaldi data directory has no 'text' file")
    seg_path = data / "segments"
    used: set[str] = set()

    def row(utt: str, src: Source, audio_value: str, offset: float, duration: float | None) -> Row:
        used.add(utt)
        audio, is_pipe = _audio(root, audio_value)  # also in the rejects: the clip a user fixes the lines of
        if utt not in text.values:
            return Reject("missing_text", f"utterance {utt!r} has no line in text", src, id=utt, audio=audio)
        if has_utt2spk and utt not in spk.values:
            return Reject("missing_speaker", f"utterance {utt!r} has no usable line in utt2spk", src, id=utt,
                          audio=audio, text_raw=text.values[utt][0])
        return RawRow(
            id=utt,
            audio=audio,
            text_raw=text.values[utt][0],
            source=src,
            speaker=spk.values.get(utt, ("", src))[0].strip(),
            offset=offset,
            duration=duration,
            is_pipe=is_pipe,
        )

    if seg_path.is_file():
        segs = _read_table(seg_path, root, 4, "segments")
        for utt, (value, src) in segs.values.items():
            try:
                rec, offset, duration = _parse_segment(value)
            except ValueError as e:
                used.add(utt)
                yield malformed(src, f"segments: {e}", id=utt)
                continue
            if rec not in wav.values:
                used.add(utt)
                yield Reject("missing_audio", f"recording {rec!r} is not in wav.scp", src, id=utt)
                continue
            yield row(utt, src, wav.values[rec][0], offset, duration)
        extra = segs.rejects + wav.rejects
    else:
        for utt, (value, src) in wav.values.items():
            yield row(utt, src, value, 0.0, None)
        extra = wav.rejects
    for bad in extra:
        if bad.reason == "malformed_line" and bad.id in text.values and bad.id not in used:
            # the utterance's own line is the bad one: its transcript is not also "without audio"
            used.add(bad.id)
            bad = dataclasses.replace(bad, text_raw=text.values[bad.id][0])
        yield bad
    yield from text.rejects
    yield from spk.rejects
    for utt, (value, src) in text.values.items():
        if utt not in used:
            yield Reject("missing_audio", f"utterance {utt!r} has a transcript but no audio entry", src, id=utt,
                         text_raw=value)

"""Checks that turn input rows into rejects, and the accounting that proves none was lost.

Every input row ends in exactly one place: accepted (one or more utterances in
the manifest: a long clip split into k segments is ONE accepted row with k
utterances) or rejected (one line in rejects.jsonl with one reason). The checks
run in a fixed order and the first failing one gives the reason:

1. parse (importer): ``not_utf8``, ``malformed_line``, ``missing_text``, ``missing_speaker``, ``missing_audio``,
   ``symlink_loop`` (a folder corpus's link to a folder it lies in)
2. :func:`mark_duplicates`: ``duplicate_id`` (the first row with an id wins)
3. :func:`screen_row`: ``shell_pipe``, ``path_outside_root``
4. :func:`check_text`: ``empty_text``, ``foreign_script``
5. audio (:mod:`data_prep.process`): ``missing_audio``, ``unreadable_audio``,
   ``zero_length``, ``nan_samples``, ``silent_audio``, ``too_short``, ``text_too_long``
   (:func:`check_text_rate`), ``too_long``
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from data_prep.importers.base import RawRow, Row
from data_prep.manifest import REJECT_REASONS, Reject, Utterance
from data_prep.text.normalize import TextNormalizer


def reject(row: RawRow, reason: str, detail: str) -> Reject:
    """A reject carrying everything known about ``row``."""
    return Reject(reason, detail, row.source, id=row.id, audio=row.audio, text_raw=row.text_raw)


def mark_duplicates(rows: Iterable[Row]) -> list[Row]:
    """Replace every row whose id was already seen by a ``duplicate_id`` reject."""
    first: dict[str, RawRow] = {}
    out: list[Row] = []
    for row in rows:
        if isinstance(row, RawRow):
            if row.id in first:
                out.append(reject(row, "duplicate_id", f"id {row.id!r} already used at {first[row.id].source}"))
                continue
            first[row.id] = row
        out.append(row)
    return out


@functools.lru_cache(maxsize=16)
def _real_root(root: str) -> str:
    # the corpus root is the same for every row: resolve it (one lstat per component) once
    return os.path.realpath(root)


@functools.lru_cache(maxsize=16)
def _written_root(root: str) -> str:
    # the root as paths are written under it: absolute, symlinks kept
    return os.path.normpath(os.path.abspath(root))


#: Folders resolved by :func:`realpath` in this process (cleared by :func:`forget_folders`).
_REAL_DIRS: dict[str, str] = {}


def realpath(path: str) -> str:
    """``os.path.realpath(path)``, resolving each folder once (until :func:`forget_folders`).

    ``os.path.realpath`` lstat()s every component of the path; a corpus keeps its
    clips in a few folders, so resolving the folder once and the file name by
    itself (one lstat: is it a symlink?) gives the same path for a tenth of the
    calls. A file name that is a symlink (or ``.``/``..``) and a relative path
    go the whole way, as before.
    """
    folder, name = os.path.split(path)
    if not folder.startswith(os.sep) or name in ("", os.curdir, os.pardir) or os.path.islink(path):
        return os.path.realpath(path)
    real = _REAL_DIRS.get(folder)
    if real is None:
        real = _REAL_DIRS[folder] = os.path.realpath(folder)
    return os.path.join(real, name)


def forget_folders() -> None:
    """Resolve folders afresh from now on (``prepare`` calls it once per run: a symlinked folder
    may point elsewhere by the next run of the same process)."""
    _REAL_DIRS.clear()


def _under(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def inside(path: str, root: str, *, real: str | None = None) -> bool:
    """Whether ``path`` lies inside ``root``: as written (with no ``..``, symlinks not resolved),
    or once symlinks and ``..`` are resolved; ``real`` may pass ``path`` resolved already.

    A symlink inside the corpus is followed wherever it points: whoever built the corpus folder
    put it there (a ``clips`` folder linked to another disk, a subset assembled from links).
    What the check stops is a transcript list that names files outside the corpus (``../``,
    an absolute path elsewhere). A ``..`` is judged where it really leads: after a linked
    folder it climbs out of the link's target, not back into the corpus.
    """
    written = os.path.join(_written_root(root), path)
    if ".." not in written.split(os.sep) and _under(os.path.normpath(written), _written_root(root)):
        return True
    return _under(os.path.realpath(path) if real is None else real, _real_root(root))


def screen_row(row: RawRow, root: str, allow_pipes: bool = False, allow_outside_root: bool = False, *,
               real: str | None = None) -> Reject | None:
    """Security checks before any audio is touched (``real``: ``row.audio`` resolved, if at hand)."""
    if row.is_pipe:
        if not allow_pipes:
            return reject(row, "shell_pipe", "wav.scp entry is a command pipe; rerun with --allow-pipes to run it")
        return None
    if not allow_outside_root and not inside(row.audio, root, real=real):
        return reject(row, "path_outside_root",
                      f"{row.audio} lies outside the corpus root {root} (--allow-outside-root accepts it)")
    return None


def check_text(row: RawRow, norm: TextNormalizer) -> tuple[str, Reject | None]:
    """The normalized transcript, or the reason it cannot be used."""
    text = norm.normalize(row.text_raw)
    if not text:
        return text, reject(row, "empty_text", f"transcript {row.text_raw!r} is empty after normalization")
    foreign = norm.foreign_chars(text, normalized=True)
    if foreign:
        shown = " ".join(f"{c!r}(U+{ord(c):04X})" for c in sorted(foreign))
        return text, reject(row, "foreign_script", f"characters outside the {norm.name} rules' scripts: {shown}")
    return text, None


#: ISO 15924 codes (what ``--script`` takes) by the first word of a letter's Unicode name
#: ("LATIN SMALL LETTER A", "GURMUKHI LETTER KA"): the scripts a transcript is likely written in.
SCRIPT_CODES = {
    "LATIN": "Latn", "DEVANAGARI": "Deva", "GURMUKHI": "Guru", "BENGALI": "Beng", "GUJARATI": "Gujr",
    "ORIYA": "Orya", "TAMIL": "Taml", "TELUGU": "Telu", "KANNADA": "Knda", "MALAYALAM": "Mlym", "SINHALA": "Sinh",
    "ARABIC": "Arab", "CYRILLIC": "Cyrl", "GREEK": "Grek", "HEBREW": "Hebr", "THAI": "Thai", "TIBETAN": "Tibt",
    "GEORGIAN": "Geor", "ARMENIAN": "Armn", "ETHIOPIC": "Ethi", "HANGUL": "Hang", "HIRAGANA": "Hira",
    "KATAKANA": "Kana", "CJK": "Hani",
}  # fmt: skip


def script_of(ch: str) -> str | None:
    """``"LATIN"`` etc. (a key of :data:`SCRIPT_CODES`) for a letter of a known script, else None
    (digits, punctuation, marks, letters of other scripts)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    first = unicodedata.name(ch, "").split(" ", 1)[0]
    return first if first in SCRIPT_CODES else None


def foreign_scripts(reject: Reject) -> set[str]:
    """The scripts of the letters a ``foreign_script`` reject lists (its detail names them by code point)."""
    return {s for cp in re.findall(r"\(U\+([0-9A-F]{4,6})\)", reject.detail) if (s := script_of(chr(int(cp, 16))))}


#: Characters a second of a transcript (normalized, spaces included) beyond any speech: the fastest
#: utterance of the Sanskrit CV corpus has 19.2 over its trimmed audio, of the Punjabi digits 8.7.
MAX_CHARS_PER_SECOND = 50.0
#: A clip shorter than this may still carry ``MAX_CHARS_PER_SECOND`` times it in characters: one
#: long word said fast, or a trim that cut a little too much, must not reject a short clip.
RATE_FLOOR_S = 1.0


def check_text_rate(row: RawRow, text: str, duration: float) -> Reject | None:
    """``text_too_long`` when the transcript has far more characters than ``duration`` seconds of
    speech can hold: it belongs to other audio (a shifted list, a whole document), and only training
    would notice (labels longer than the encoder's frames)."""
    limit = MAX_CHARS_PER_SECOND * max(duration, RATE_FLOOR_S)
    if len(text) <= limit:
        return None
    return reject(row, "text_too_long",
                  f"{len(text)} characters of transcript for {duration:.2f} s of audio: more than speech holds "
                  f"(at most {MAX_CHARS_PER_SECOND:g} a second, {limit:g} for this clip)")


@dataclass
class Accounting:
    """Counts over all input rows; ``input == accepted + rejected`` must hold."""

    input_rows: int = 0
    accepted_rows: int = 0
    rejected_rows: int = 0
    utterances: int = 0
    split_rows: int = 0
    rejected_by_reason: Counter = field(default_factory=Counter)
    #: ``foreign_script`` rows by a script of the letters they were rejected for (see :func:`script_of`)
    foreign_scripts: Counter = field(default_factory=Counter)

    def add(self, result: list[Utterance] | Reject) -> None:
        self.input_rows += 1
        if isinstance(result, Reject):
            self.rejected_rows += 1
            self.rejected_by_reason[result.reason] += 1
            if result.reason == "foreign_script":
                self.foreign_scripts.update(foreign_scripts(result))
        else:
            self.accepted_rows += 1
            self.utterances += len(result)
            self.split_rows += len(result) > 1

    @property
    def balanced(self) -> bool:
        return (
            self.input_rows == self.accepted_rows + self.rejected_rows
            and self.rejected_rows == sum(self.rejected_by_reason.values())
        )

    def to_json(self) -> dict:
        unknown = set(self.rejected_by_reason) - REJECT_REASONS
        if unknown:
            raise ValueError(f"unknown reject reasons {sorted(unknown)}")
        return {
            "input_rows": self.input_rows,
            "accepted_rows": self.accepted_rows,
            "rejected_rows": self.rejected_rows,
            "balanced": self.balanced,
            "utterances": self.utterances,
            "rows_split_into_segments": self.split_rows,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
        }

    def summary(self) -> str:
        """One line for the terminal."""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected_by_reason.items())) or "none"
        ok = "OK" if self.balanced else "MISMATCH"
        return (
            f"input {self.input_rows} = accepted {self.accepted_rows} + rejected {self.rejected_rows} [{ok}]; "
            f"{self.utterances} utterances ({self.split_rows} rows split); rejected: {reasons}"
            + self.script_hint()
        )

    def script_hint(self) -> str:
        """When most rejects are ``foreign_script`` and they outnumber the accepted rows (a romanized corpus
        under the language's native-script rules, not a few stray lines): the scripts their letters are
        in and the option that takes them; else ""."""
        foreign = self.rejected_by_reason["foreign_script"]
        if not self.foreign_scripts or 2 * foreign <= self.rejected_rows or foreign <= self.accepted_rows:
            return ""
        found = ", ".join(f"{name.title()} script ({SCRIPT_CODES[name]}, {n} row{'s' * (n != 1)})"
                          for name, n in self.foreign_scripts.most_common())
        code = SCRIPT_CODES[self.foreign_scripts.most_common(1)[0][0]]
        return (f"; most rejects are foreign_script, their letters in {found}: if the corpus writes the "
                f"language so, rerun with --script {code}")

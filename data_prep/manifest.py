"""Typed manifest records and their atomic JSONL I/O.

One line of a manifest is one :class:`Utterance`; one line of a rejects file is
one :class:`Reject`. Only this module reads or writes them, so the schema lives
in one place. Schema (version 2, field ``"v"`` on every line; version 1
lines, which lack ``gain`` and ``dc_offset``, are read with their defaults):

Utterance
    id            unique utterance id (str)
    audio         audio file to read; relative paths are relative to the
                  manifest's directory (after ``prepare`` it is the 16 kHz FLAC
                  cache; with ``--cache-format none`` the source file itself,
                  as an absolute path with symlinks resolved)
    offset        seconds into ``audio`` where the utterance starts
    duration      seconds (0: to the end of ``audio``)
    gain          linear factor applied at load time, after ``dc_offset``
                  (1.0; with ``--cache-format none`` the level normalization)
    dc_offset     subtracted at load time, before ``gain`` (0.0 = no DC removal;
                  with ``--cache-format none`` the mean of the whole decoded clip)
    sample_rate   of ``audio`` (16000 after ``prepare``; the source's rate with
                  ``--cache-format none``)
    channels      of ``audio`` (1 after ``prepare``; the source's with ``none``)
    speaker       speaker id ("" when unknown)
    language      ISO 639 code of the transcript's language
    text_raw      transcript exactly as in the source
    text          transcript after the language's normalizer
    source        {"file", "line"}: where the row came from (line is 1-based)
    source_audio  the original audio path before normalization ("" if same)
    split         "train" | "dev" | "test" | "" (unassigned)
    flags         things fixed or noticed but not rejected (e.g. "resampled",
                  "clipping", "trimmed", "segment:2/3")

Read the samples of an utterance with :meth:`Utterance.load_audio`, never from
``audio`` directly: it applies the window, ``dc_offset`` and ``gain``.

Reject
    reason        one of :data:`REJECT_REASONS`
    detail        human-readable explanation
    source        {"file", "line"}
    id, audio, text_raw   whatever was known about the row (may be "")
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.outputs import OutputRefused, atomic_write_text, check_finished

SCHEMA_VERSION = 2
#: Versions :meth:`Utterance.from_json` reads (fields a version lacks take their defaults).
READABLE_VERSIONS = (1, 2)

#: Reasons ``python -m pipeline pseudo-label`` rejects an unlabeled utterance for (besides duplicate_id).
PSEUDO_LABEL_REJECT_REASONS = frozenset(
    {
        "no_hypothesis",  # the decoder's output has no line for this id
        "empty_hypothesis",  # the decoder wrote nothing
        "repetition_loop",  # the decoder repeated itself
        "implausible_rate",  # characters per second outside the labeled set's range
    }
)
#: The closed set of reasons a row can be rejected for.
REJECT_REASONS = PSEUDO_LABEL_REJECT_REASONS | frozenset(
    {
        "missing_audio",  # audio file does not exist
        "unreadable_audio",  # exists but cannot be decoded
        "zero_length",  # decodes to no samples
        "nan_samples",  # NaN or infinite samples
        "silent_audio",  # every sample the same (digital silence): nothing could have been said
        "too_short",  # shorter than the minimum duration
        "too_long",  # longer than the model limit and could not be split
        "text_too_long",  # more characters a second than speech holds (a transcript of something else)
        "empty_text",  # nothing left after normalization
        "foreign_script",  # characters outside the language's script
        "duplicate_id",  # id seen before in this corpus
        "malformed_line",  # wrong number of columns, bad JSON, missing fields
        "not_utf8",  # line is not valid UTF-8
        "path_outside_root",  # audio path escapes the corpus root
        "shell_pipe",  # Kaldi wav.scp command pipe without --allow-pipes
        "missing_text",  # audio without transcript (or the reverse)
        "missing_speaker",  # Kaldi: utt2spk exists but has no line for the utterance
        "symlink_loop",  # folder corpus: a symlink to a folder it lies in (not followed)
        "label_too_long",  # more labels than encoder frames (CTC)
        "no_noise_source",  # degrade: no other speaker's audio to build babble from
        "alignment_failed",  # longform: a recording's transcript cannot be aligned to its audio
        "low_alignment_score",  # longform: a segment whose audio matches its text too poorly
    }
)


@dataclass(frozen=True)
class Source:
    """Where a row came from: file path and 1-based line number (0 if not line-based)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def _field_problem(d: dict, src: object) -> str | None:
    """What is wrong with one manifest record's fields (None: nothing). A hand-edited or cut
    manifest could otherwise carry ``"duration": "abc"`` to a sort or a normalizer far away."""
    missing = [name for name in _REQUIRED_FIELDS if name not in d]
    if missing:
        return f"missing field(s) {', '.join(map(repr, missing))}"
    for k, v in d.items():
        kind = _FIELD_KINDS.get(k)
        if kind is str and not isinstance(v, str):
            return f"field {k!r} must be a string, got {v!r}"
        if kind is int and (isinstance(v, bool) or not isinstance(v, int)):
            return f"field {k!r} must be an integer, got {v!r}"
        if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            return f"field {k!r} must be a finite number, got {v!r}"
    flags = d.get("flags", [])
    if not (isinstance(flags, (list, tuple)) and all(isinstance(f, str) for f in flags)):  # a string is no list of flags
        return f"field 'flags' must be a list of strings, got {flags!r}"
    if not (isinstance(src, dict) and isinstance(src.get("file", ""), str) and type(src.get("line", 0)) is int):
        return f"field 'source' must be {{\"file\": str, \"line\": int}}, got {src!r}"
    return None


@dataclass(frozen=True)
class Utterance:
    """One utterance of a manifest (see the module docstring for the schema)."""

    id: str
    audio: str
    duration: float
    text: str
    text_raw: str = ""
    offset: float = 0.0
    gain: float = 1.0
    dc_offset: float = 0.0
    sample_rate: int = 16000
    channels: int = 1
    speaker: str = ""
    language: str = ""
    source: Source = field(default_factory=lambda: Source(""))
    source_audio: str = ""
    split: str = ""
    flags: tuple[str, ...] = ()

    def to_json(self) -> dict:
        # a shallow dict in field order, as dataclasses.asdict would give it: its recursive
        # deep copy was a third of writing the manifests
        d = {name: getattr(self, name) for name in _UTTERANCE_FIELDS}
        d["source"] = {"file": self.source.file, "line": self.source.line}
        d["flags"] = list(self.flags)
        return {"v": SCHEMA_VERSION, **d}

    @classmethod
    def from_json(cls, d: dict) -> Utterance:
        d = dict(d)
        version = d.pop("v", SCHEMA_VERSION)
        if version not in READABLE_VERSIONS:
            raise ValueError(f"manifest schema version {version} is not supported (readable: {READABLE_VERSIONS})")
        src = d.pop("source", None) or {}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown manifest fields: {sorted(unknown)}")
        problem = _field_problem(d, src)
        if problem:
            raise ValueError(problem)
        d["flags"] = tuple(d.get("flags", ()))
        return cls(source=Source(**src), **d)

    def replace(self, **changes) -> Utterance:
        """A copy with ``changes`` (what ``dataclasses.replace`` gives, without running ``__init__``)."""
        unknown = changes.keys() - _UTTERANCE_FIELD_SET
        if unknown:
            raise TypeError(f"Utterance has no fields {sorted(unknown)}")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__, **changes)
        return new

    def audio_path(self, manifest_dir: str | os.PathLike | None = None) -> Path:
        """The audio path, resolved against the manifest's directory when relative."""
        p = Path(self.audio)
        if not p.is_absolute() and manifest_dir is not None:
            p = Path(manifest_dir) / p
        return p

    def load_audio(self, manifest_dir: str | os.PathLike | None = None, sr: int = 16000) -> np.ndarray:
        """The utterance's samples: mono float32 at ``sr``, its window, ``dc_offset`` and ``gain`` applied.

        The one way every stage reads a record, so a record that points into the
        source (``prepare --cache-format none``) sounds like its FLAC cache entry
        would. Raises :class:`data_prep.audio.AudioError` naming the file.
        """
        from data_prep.audio import load_window  # here: reading manifests needs no audio stack

        y = load_window(self.audio_path(manifest_dir), self.offset, self.duration or None, sr)
        if self.dc_offset:
            y = y - np.float32(self.dc_offset)
        if self.gain != 1.0:
            y = y * np.float32(self.gain)
        return y


_UTTERANCE_FIELDS = tuple(f.name for f in dataclasses.fields(Utterance))
_UTTERANCE_FIELD_SET = frozenset(_UTTERANCE_FIELDS)


@dataclass(frozen=True)
class Reject:
    """A row that did not make it into the manifest, and why."""

    reason: str
    detail: str
    source: Source
    id: str = ""
    audio: str = ""
    text_raw: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {self.reason!r}")

    def to_json(self) -> dict:
        return {"v": SCHEMA_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, d: dict) -> Reject:
        d = dict(d)
        d.pop("v", None)
        src = d.pop("source", None) or {}
        return cls(source=Source(**src), **d)


class ManifestError(ValueError):
    """A manifest line that cannot be parsed; the message names the file and line."""


def jsonl_line(record: Utterance | Reject | dict) -> str:
    """One line of a JSONL file as :func:`write_jsonl` writes it (without the newline)."""
    obj = record if isinstance(record, dict) else record.to_json()
    return json.dumps(obj, ensure_ascii=False, sort_keys=False)


def write_jsonl(path: str | os.PathLike, records: Iterable[Utterance | Reject | dict], *,
                lines: dict[int, str] | None = None) -> int:
    """Atomically write records (or plain dicts) as JSONL; returns the count.

    ``lines`` may map ``id(record)`` to its :func:`jsonl_line`, for records written
    to several files (a manifest and its split files) to be serialized once.
    """
    out = []
    for r in records:
        line = None if lines is None else lines.get(id(r))
        out.append(jsonl_line(r) if line is None else line)
    atomic_write_text(path, "".join(line + "\n" for line in out))
    return len(out)


#: Manifest fields by the JSON type they must hold (``source`` and ``flags`` are checked apart).
_FIELD_KINDS = {k: t for k, t in typing.get_type_hints(Utterance).items() if t in (str, int, float)}
_REQUIRED_FIELDS = tuple(f.name for f in dataclasses.fields(Utterance) if f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)  # fmt: skip


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-empty line; errors name file and line."""
    path = Path(path)
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield lineno, json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ManifestError(f"{path}:{lineno}: not a valid JSON line: {e}") from e


def read_manifest_lines(path: str | os.PathLike, *, unique_ids: bool = True) -> list[tuple[int, Utterance]]:
    """(line number, utterance) of each record of a manifest; a bad line is a ManifestError naming file and line.

    A manifest whose folder carries the mark of an unfinished write (:func:`data_prep.outputs.in_progress`)
    is a ManifestError too: its files may come from two runs.

    ``unique_ids``: an id seen on an earlier line is an error too (it would be decoded and
    scored twice). A training manifest may repeat a line on purpose, to weight a clip.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found" if not path.exists() else f"{path}: not a file")
    try:
        check_finished(path.parent, path)  # a folder a killed `prepare` left half-written mixes two runs
    except OutputRefused as e:
        raise ManifestError(str(e)) from e
    out: list[tuple[int, Utterance]] = []
    first_line: dict[str, int] = {}
    for lineno, obj in read_jsonl(path):
        if not isinstance(obj, dict):
            raise ManifestError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        try:
            utt = Utterance.from_json(obj)
        except (TypeError, ValueError) as e:
            raise ManifestError(f"{path}:{lineno}: {e}") from e
        if unique_ids and utt.id in first_line:
            raise ManifestError(f"{path}:{lineno}: duplicate utterance id {utt.id!r} (first at line {first_line[utt.id]})")
        first_line.setdefault(utt.id, lineno)
        out.append((lineno, utt))
    return out


def read_manifest(path: str | os.PathLike, *, unique_ids: bool = True) -> list[Utterance]:
    """The utterances of a manifest written by :func:`write_jsonl`, checked as :func:`read_manifest_lines` does."""
    return [u for _, u in read_manifest_lines(path, unique_ids=unique_ids)]


def read_rejects(path: str | os.PathLike) -> list[Reject]:
    out = []
    for lineno, obj in read_jsonl(path):
        try:
            out.append(Reject.from_json(obj))
        except (TypeError, ValueError) as e:
            raise ManifestError(f"{path}:{lineno}: {e}") from e
    return out

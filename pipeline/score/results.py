"""The ``results.json`` record written by ``score`` and read by ``report``.

Schema (version 1, field ``"v"``):

    type            "score_results" (a report's summary file says "report_summary")
    system, kind    system name; zeroshot | finetuned | scratch | other
    testset, lang   test-set name; ISO 639 code whose normalizer was applied
    model           the ``model`` field(s) of the hypotheses ("" if none)
    manifest, hyps  input paths as given
    n_utts          utterances in the manifest (all scored; missing = empty hyp)
    n_missing       manifest utterances without a hypothesis; ``missing_ids`` lists them
    wer, cer, ser   corpus-level rates (fractions, not percent)
    word, char      {"S","D","I","H"} summed counts
    wer_ci, cer_ci  {"point","low","high","level"} utterance-bootstrap interval
    bootstrap       {"n_resamples","seed"}
    cer_unit        how characters were counted
    per_speaker     [{speaker, n_utts, n_missing, word{S,D,I,H}, char{...}, wer, cer}]
    decode_seconds  sum of the hypotheses' ``seconds`` (null if none recorded)
    audio_seconds   summed duration of the manifest utterances (null if unknown)
    rtf             decode_seconds / audio_seconds (null if either is missing)
    utts            [{id, speaker, duration, ref_words, word_errors, ref_chars,
                      char_errors, missing}] in manifest order, for paired tests
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.outputs import atomic_write_text
from pipeline.score.bootstrap import Interval
from pipeline.score.metrics import Counts

RESULTS_VERSION = 1
RESULTS_TYPE = "score_results"
KINDS = ("zeroshot", "finetuned", "scratch", "other")
CER_UNIT = "Unicode code points after normalization, spaces counted as characters"


class ResultsError(ValueError):
    """A results.json that cannot be read; the message names the file."""


@dataclass(frozen=True)
class UttCounts:
    """One utterance's error counts (enough for paired tests and duration bins)."""

    id: str
    speaker: str
    duration: float
    ref_words: int
    word_errors: int
    ref_chars: int
    char_errors: int
    missing: bool = False

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict) -> UttCounts:
        return cls(
            id=str(d["id"]),
            speaker=str(d.get("speaker", "")),
            duration=float(d.get("duration", 0.0)),
            ref_words=int(d["ref_words"]),
            word_errors=int(d["word_errors"]),
            ref_chars=int(d["ref_chars"]),
            char_errors=int(d["char_errors"]),
            missing=bool(d.get("missing", False)),
        )


@dataclass(frozen=True)
class SpeakerRow:
    """Summed counts of one speaker."""

    speaker: str
    n_utts: int
    n_missing: int
    word: Counts
    char: Counts

    @property
    def wer(self) -> float:
        return self.word.rate

    @property
    def cer(self) -> float:
        return self.char.rate

    def to_json(self) -> dict:
        return {
            "speaker": self.speaker,
            "n_utts": self.n_utts,
            "n_missing": self.n_missing,
            "word": self.word.to_json(),
            "char": self.char.to_json(),
            "wer": self.wer,
            "cer": self.cer,
        }

    @classmethod
    def from_json(cls, d: dict) -> SpeakerRow:
        return cls(
            speaker=str(d["speaker"]),
            n_utts=int(d["n_utts"]),
            n_missing=int(d.get("n_missing", 0)),
            word=Counts.from_json(d["word"]),
            char=Counts.from_json(d["char"]),
        )


@dataclass
class Results:
    """Everything ``score`` measured for one system on one test set."""

    system: str
    kind: str
    testset: str
    lang: str
    word: Counts
    char: Counts
    ser: float
    wer_ci: Interval
    cer_ci: Interval
    n_utts: int
    n_missing: int
    model: str = ""
    manifest: str = ""
    hyps: str = ""
    missing_ids: list[str] = field(default_factory=list)
    bootstrap: dict = field(default_factory=dict)
    per_speaker: list[SpeakerRow] = field(default_factory=list)
    decode_seconds: float | None = None
    audio_seconds: float | None = None
    rtf: float | None = None
    utts: list[UttCounts] = field(default_factory=list)
    cer_unit: str = CER_UNIT
    path: str = ""  # where it was read from (not written)

    @property
    def wer(self) -> float:
        return self.word.rate

    @property
    def cer(self) -> float:
        return self.char.rate

    def to_json(self) -> dict:
        return {
            "v": RESULTS_VERSION,
            "type": RESULTS_TYPE,
            "system": self.system,
            "kind": self.kind,
            "testset": self.testset,
            "lang": self.lang,
            "model": self.model,
            "manifest": self.manifest,
            "hyps": self.hyps,
            "n_utts": self.n_utts,
            "n_missing": self.n_missing,
            "missing_ids": list(self.missing_ids),
            "wer": self.wer,
            "cer": self.cer,
            "ser": self.ser,
            "word": self.word.to_json(),
            "char": self.char.to_json(),
            "wer_ci": self.wer_ci.to_json(),
            "cer_ci": self.cer_ci.to_json(),
            "bootstrap": dict(self.bootstrap),
            "cer_unit": self.cer_unit,
            "per_speaker": [s.to_json() for s in self.per_speaker],
            "decode_seconds": self.decode_seconds,
            "audio_seconds": self.audio_seconds,
            "rtf": self.rtf,
            "utts": [u.to_json() for u in self.utts],
        }

    @classmethod
    def from_json(cls, d: dict, path: str = "") -> Results:
        version = d.get("v")
        if version != RESULTS_VERSION:
            raise ValueError(f"results schema version {version!r} is not supported (expected {RESULTS_VERSION})")
        if d.get("type", RESULTS_TYPE) != RESULTS_TYPE:
            raise ValueError(f"not a score results file (type {d.get('type')!r})")

        def opt(key: str) -> float | None:
            return None if d.get(key) is None else float(d[key])

        return cls(
            system=str(d["system"]),
            kind=str(d["kind"]),
            testset=str(d["testset"]),
            lang=str(d["lang"]),
            model=str(d.get("model", "")),
            manifest=str(d.get("manifest", "")),
            hyps=str(d.get("hyps", "")),
            n_utts=int(d["n_utts"]),
            n_missing=int(d["n_missing"]),
            missing_ids=[str(x) for x in d.get("missing_ids", [])],
            word=Counts.from_json(d["word"]),
            char=Counts.from_json(d["char"]),
            ser=float(d["ser"]),
            wer_ci=Interval.from_json(d["wer_ci"]),
            cer_ci=Interval.from_json(d["cer_ci"]),
            bootstrap=dict(d.get("bootstrap", {})),
            cer_unit=str(d.get("cer_unit", CER_UNIT)),
            per_speaker=[SpeakerRow.from_json(s) for s in d.get("per_speaker", [])],
            decode_seconds=opt("decode_seconds"),
            audio_seconds=opt("audio_seconds"),
            rtf=opt("rtf"),
            utts=[UttCounts.from_json(u) for u in d.get("utts", [])],
            path=path,
        )


def write_results(path: str | os.PathLike, results: Results) -> None:
    """Write results.json atomically; one line per utterance keeps it short and diffable."""
    d = results.to_json()
    utts = d.pop("utts")
    head = json.dumps(d, ensure_ascii=False, indent=1)
    rows = ",\n".join("  " + json.dumps(u, ensure_ascii=False) for u in utts)
    atomic_write_text(path, head[: -len("\n}")] + ',\n "utts": [\n' + rows + ("\n" if rows else "") + " ]\n}\n")


def read_results(path: str | os.PathLike) -> Results:
    """Read a results.json written by :func:`write_results`; errors name the file."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: cannot read results: {e}") from e
    if not isinstance(d, dict):
        raise ResultsError(f"{path}: expected a JSON object")
    try:
        return Results.from_json(d, path=str(path))
    except (KeyError, TypeError, ValueError) as e:
        raise ResultsError(f"{path}: {type(e).__name__}: {e}") from e


def results_type(path: str | os.PathLike) -> str | None:
    """The ``type`` field of a JSON file (None if unreadable or not an object)."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return str(d.get("type", "")) if isinstance(d, dict) else None

"""Hypothesis records: what a decoder wrote for one utterance.

A hypotheses file (``hyps.jsonl``) has one :class:`Hypothesis` per line, keyed
by the manifest's utterance id, so that decoding can resume (ids already present
are skipped) and scoring can join on id.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from data_prep.manifest import ManifestError, read_jsonl, write_jsonl


@dataclass(frozen=True)
class Hypothesis:
    id: str
    text: str  # the decoder's raw output (scoring normalizes it)
    model: str = ""  # model name or directory that produced it
    seconds: float = 0.0  # decode wall time attributed to this utterance
    tokens: int = 0  # number of generated tokens (0 for CTC)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Hypothesis:
        """A hypothesis from its JSON form; a wrong type is a ValueError (it would fail far away, in scoring)."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        for name in ("id", "text"):
            if not isinstance(d.get(name), str):
                raise ValueError(f"field {name!r} must be a string, got {d.get(name)!r}")
        if not isinstance(d.get("model", ""), str):
            raise ValueError(f"field 'model' must be a string, got {d['model']!r}")
        for name, types in (("seconds", (int, float)), ("tokens", int)):
            v = d.get(name, 0)
            if isinstance(v, bool) or not isinstance(v, types) or not (math.isfinite(v) and v >= 0):
                raise ValueError(f"field {name!r} must be a number >= 0, got {v!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def read_hyps_lines(path: str | os.PathLike) -> list[tuple[int, Hypothesis]]:
    """(line number, hypothesis) of each record; a bad record is a ManifestError naming file and line."""
    out = []
    for lineno, obj in read_jsonl(path):
        try:
            out.append((lineno, Hypothesis.from_json(obj)))
        except (TypeError, ValueError) as e:
            raise ManifestError(f"{path}:{lineno}: {e}") from e
    return out


def read_hyps(path: str | os.PathLike) -> list[Hypothesis]:
    return [h for _, h in read_hyps_lines(path)]


def write_hyps(path: str | os.PathLike, hyps: list[Hypothesis]) -> int:
    return write_jsonl(path, hyps)

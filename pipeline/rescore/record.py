"""What a ``rescore --tune`` run used, recorded beside its ``weights.json`` (``rescore.json``).

The rescored system is the decoders, the CTC model, the LMs, the search settings and the
weights together; this record names all of them, so that ``export --from-rescore`` can
copy exactly that system without the user repeating a single option. The inputs'
fingerprints are recorded too: an export refuses a model or LM that changed after the run
that tuned the weights with it.

Schema (``version`` 1)::

    version         1
    models          the decoders (absolute paths, or bundled names / hub ids as given)
    ctc, lm         the CTC checkpoint and the word LM (lm.arpa, lm.json or their folder); null: none
    char_lm         the character LM's ARPA file; null: none
    beams, nbest    the decoders' beam width and the candidates kept from each
    ctc_proposals   CTC + LM beam texts added as candidates
    language        --language (null: each decoder's trained language, else data_language)
    data_language   the manifest's language: the candidates' normalization, the decoders' fallback prompt
    batch_size      clips per batch (the beam search's token budget is the batch's longest clip's)
    fusion          {weight, bonus, top_k, length_penalty, max_rate, rate_from, rate_margin}; null: none
    weights         the chosen weights (see pipeline.rescore.combine.Weights)
    tuning          {metric, dev_wer, dev_cer, n_utts, held_out}
    manifest        the dev manifest the weights were tuned on
    inputs          fingerprints by role (data_prep.outputs.RunIdentity inputs)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from data_prep.outputs import atomic_write_text
from pipeline.rescore.combine import TunedWeights, Weights

#: The record's file, beside weights.json.
RECORD_NAME = "rescore.json"
RECORD_VERSION = 1


class RecordError(ValueError):
    """A rescore.json that cannot be used; the message names the file."""


@dataclass(frozen=True)
class FusionRecord:
    """The character-LM fusion inside the decoders' beam search."""

    weight: float
    bonus: float
    top_k: int
    length_penalty: float
    max_rate: float  # characters per second a hypothesis may hold (0: no ceiling), computed from rate_from
    rate_from: str | None = None  # the transcribed manifest the ceiling was taken from
    rate_margin: float = 1.25


@dataclass(frozen=True)
class TuningRecord:
    """How the weights were chosen on dev."""

    metric: str
    dev_wer: float
    dev_cer: float
    n_utts: int
    held_out: list[float] | None = None

    @classmethod
    def of(cls, tuned: TunedWeights) -> TuningRecord:
        return cls(tuned.metric, tuned.wer, tuned.cer, tuned.n_utts, tuned.held_out)


@dataclass(frozen=True)
class RescoreRecord:
    models: list[str]
    ctc: str | None
    lm: str | None
    char_lm: str | None
    beams: int
    nbest: int
    ctc_proposals: int
    language: str | None
    data_language: str
    batch_size: int
    fusion: FusionRecord | None
    weights: Weights
    tuning: TuningRecord
    manifest: str
    inputs: dict[str, str] = field(default_factory=dict)
    version: int = RECORD_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> RescoreRecord:
        fusion = d.get("fusion")
        return cls(**{**d, "models": [str(m) for m in d["models"]],
                      "fusion": FusionRecord(**fusion) if fusion else None, "weights": Weights(**d["weights"]),
                      "tuning": TuningRecord(**d["tuning"]), "inputs": dict(d.get("inputs") or {})})  # fmt: skip

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n")


def read_record(path: str | os.PathLike) -> RescoreRecord:
    """The record at ``path`` (a rescore.json, or the folder holding one); RecordError names the file."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RecordError(f"{path}: no rescore record (a `rescore --tune` run writes it beside weights.json; "
                          "rerun it)") from e  # fmt: skip
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{path}: cannot read the rescore record ({e})") from e
    if not isinstance(d, dict) or d.get("version") != RECORD_VERSION:
        version = d.get("version") if isinstance(d, dict) else None
        raise RecordError(f"{path}: rescore record version {version!r} is not supported (expected {RECORD_VERSION})")
    try:
        return RescoreRecord.from_json(d)
    except (KeyError, TypeError, ValueError) as e:
        raise RecordError(f"{path}: not a rescore record ({e})") from e


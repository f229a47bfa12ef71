"""N-best records: the candidate transcripts of one utterance and their scores.

A candidate is scored by every model at hand, once; choosing among them with
different weights is then a cheap sum (see :mod:`pipeline.rescore.combine`), so
the weights can be tuned on dev by grid search without decoding again.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from data_prep.manifest import ManifestError, read_jsonl, write_jsonl


@dataclass
class Candidate:
    text: str  # normalized transcript
    # who proposed it: "beam" (the first attention decoder), "beam:K" (the K-th decoder of an
    # ensemble, K >= 1), "ctc" (CTC greedy / CTC + LM beam); "+"-joined when several proposed it
    source: str
    # log P(text | audio) under the attention decoder, nats, end token included; with an ensemble
    # of decoders, the mean of their log-probabilities (a product of experts)
    att: float
    ctc: float | None = None  # log P(text | audio) under the CTC model (all alignments), nats
    lm: float | None = None  # word n-gram LM log-probability with sentence boundaries, nats
    clm: float | None = None  # character n-gram LM log-probability, nats
    words: int = 0
    att_each: list[float] | None = None  # each decoder's log P(text | audio) when an ensemble scores
    # place in the first decoder's beam output (0: the search's winner); None: it did not propose it
    rank: int | None = None

    @property
    def sources(self) -> set[str]:
        """Every model that proposed this text ("beam", "beam:1", "ctc")."""
        return set(self.source.split("+"))

    @property
    def n_decoders(self) -> int:
        """How many attention decoders scored this candidate."""
        return len(self.att_each) if self.att_each else 1

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def decoder_source(k: int) -> str:
    """The ``source`` name of decoder ``k`` of an ensemble ("beam" for the first)."""
    return "beam" if k == 0 else f"beam:{k}"


#: Version of the N-best records. 2: ``att`` is each clip's own (version 1 files scored every clip
#: after the first of a batch against another clip's audio, see WhisperScorer.nbest); older
#: records are decoded again, not reused.
NBEST_VERSION = 2


@dataclass
class NBest:
    id: str  # the manifest's utterance id
    candidates: list[Candidate] = field(default_factory=list)
    seconds: float = 0.0  # wall time spent proposing and scoring this utterance's candidates
    # the character-LM fusion inside the beam search that proposed them (Fusion.settings()); None: none
    fusion: list[float] | None = None
    version: int = NBEST_VERSION
    # which models and search settings made it (pipeline.rescore.build.nbest_origin); None: unrecorded
    origin: str | None = None

    def to_json(self) -> dict:
        return {"v": self.version, "id": self.id, "seconds": self.seconds, "fusion": self.fusion,
                "origin": self.origin, "candidates": [c.to_json() for c in self.candidates]}

    @classmethod
    def from_json(cls, d: dict) -> NBest:
        names = {f.name for f in dataclasses.fields(Candidate)}
        cands = [Candidate(**{k: v for k, v in c.items() if k in names}) for c in d["candidates"]]
        fusion = d.get("fusion")
        return cls(id=d["id"], candidates=cands, seconds=float(d.get("seconds", 0.0)),
                   fusion=[float(v) for v in fusion] if fusion else None, version=int(d.get("v", 1)),
                   origin=d.get("origin"))


def read_nbest(path: str | os.PathLike) -> list[NBest]:
    out = []
    for lineno, obj in read_jsonl(path):
        try:
            out.append(NBest.from_json(obj))
        except (KeyError, TypeError, ValueError) as e:
            raise ManifestError(f"{path}:{lineno}: bad N-best record ({e})") from e
    return out


def write_nbest(path: str | os.PathLike, records: list[NBest]) -> int:
    return write_jsonl(path, records)

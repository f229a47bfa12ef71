"""Choosing one candidate per utterance: a weighted sum of model scores, weights tuned on dev.

    score = (1 - ctc_weight) * att + ctc_weight * ctc + lm_weight * lm + word_bonus * words

as in ESPnet's joint CTC/attention decoding with an LM: the attention decoder
knows the language but drops or repeats words and favours short outputs; CTC
is monotonic and counts every frame; the word LM knows which words exist. The
word bonus offsets the LM's (and the decoder's) bias toward fewer words.
Weights are tuned on DEV only (never test): :func:`tune_weights`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from data_prep.manifest import atomic_write_text
from pipeline.lm.tune import error_rates
from pipeline.rescore.candidates import Candidate, NBest

log = logging.getLogger(__name__)

DEFAULT_CTC_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
DEFAULT_LM_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
DEFAULT_WORD_BONUSES = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0)


@dataclass(frozen=True)
class Weights:
    ctc_weight: float = 0.0
    lm_weight: float = 0.0
    word_bonus: float = 0.0

    def score(self, c: Candidate) -> float:
        s = c.att
        if self.ctc_weight:
            s = (1.0 - self.ctc_weight) * c.att + self.ctc_weight * (c.ctc if c.ctc is not None else float("-inf"))
        if self.lm_weight:
            s += self.lm_weight * (c.lm if c.lm is not None else float("-inf"))
        return s + self.word_bonus * c.words


def choose(nbest: NBest, weights: Weights) -> Candidate | None:
    """The best candidate under ``weights`` (ties: the earlier one, i.e. the decoder's own ranking)."""
    best, best_score = None, float("-inf")
    for c in nbest.candidates:
        s = weights.score(c)
        if best is None or s > best_score:
            best, best_score = c, s
    return best


def choose_texts(nbests: Sequence[NBest], weights: Weights) -> list[str]:
    out = []
    for nb in nbests:
        c = choose(nb, weights)
        out.append(c.text if c is not None else "")
    return out


@dataclass
class TunedWeights:
    weights: Weights
    wer: float
    cer: float
    tuned_on: str = ""
    n_utts: int = 0
    grid: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {**asdict(self.weights), "dev_wer": self.wer, "dev_cer": self.cer, "tuned_on": self.tuned_on,
                "n_utts": self.n_utts, "grid": self.grid}  # fmt: skip

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n")


def load_weights(path: str | os.PathLike) -> Weights:
    try:
        d = json.loads(open(path, encoding="utf-8").read())
        return Weights(float(d["ctc_weight"]), float(d["lm_weight"]), float(d["word_bonus"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a rescoring weights file ({e})") from e


def tune_weights(
    nbests: Sequence[NBest],
    refs: Sequence[str],
    *,
    ctc_weights: Sequence[float] = DEFAULT_CTC_WEIGHTS,
    lm_weights: Sequence[float] = DEFAULT_LM_WEIGHTS,
    word_bonuses: Sequence[float] = DEFAULT_WORD_BONUSES,
    metric: str = "wer",
) -> TunedWeights:
    """Grid search on dev; ties go to the other metric, then to the smallest weights (least change)."""
    if len(nbests) != len(refs):
        raise ValueError(f"{len(nbests)} N-best lists but {len(refs)} references")
    if metric not in ("wer", "cer"):
        raise ValueError(f"metric must be wer or cer, got {metric!r}")
    has_ctc = any(c.ctc is not None for nb in nbests for c in nb.candidates)
    has_lm = any(c.lm is not None for nb in nbests for c in nb.candidates)
    grid = []
    for cw, lw, wb in itertools.product(ctc_weights if has_ctc else [0.0], lm_weights if has_lm else [0.0],
                                        word_bonuses):  # fmt: skip
        w = Weights(cw, lw, wb)
        wer, cer = error_rates(refs, choose_texts(nbests, w))
        grid.append({**asdict(w), "wer": wer, "cer": cer})
    other = "cer" if metric == "wer" else "wer"
    best = min(grid, key=lambda g: (round(g[metric], 9), round(g[other], 9), g["ctc_weight"] + g["lm_weight"],
                                    g["word_bonus"]))  # fmt: skip
    w = Weights(best["ctc_weight"], best["lm_weight"], best["word_bonus"])
    log.info("rescoring weights on dev: %s (WER %.4f, CER %.4f)", w, best["wer"], best["cer"])
    return TunedWeights(weights=w, wer=best["wer"], cer=best["cer"], n_utts=len(refs), grid=grid)

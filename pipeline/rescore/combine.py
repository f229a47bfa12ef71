"""Choosing one candidate per utterance: a weighted sum of model scores, weights tuned on dev.

    score = (1 - ctc_weight) * att + ctc_weight * ctc + lm_weight * lm + char_lm_weight * clm
            + word_bonus * words + char_bonus * lm_tokens

as in ESPnet's joint CTC/attention decoding with an LM: the attention decoder
knows the language but drops or repeats words and favours short outputs; CTC
is monotonic and counts every frame; the word LM knows which words exist; the character LM how plausible
the spelling of a word the word LM never saw is. The
word bonus offsets the LM's (and the decoder's) bias toward fewer words; the
character bonus, per character-LM token (characters and word boundaries), is
the fused search's own length reward, so that with ``char_lm_weight`` and
``char_bonus`` equal to the fusion's weight and bonus a weighted point ranks
as the search did, and the word LM can be added on top of it.
Weights are tuned on DEV only (never test): :func:`tune_weights`.

One more point of the grid is ``beam_pick``: keep the first decoder's beam-search
winner (the candidate of ``rank`` 0). A search with character-LM fusion ranks its
hypotheses by its own score, which a weighted sum reproduces only with the
fusion's weight and bonus (``char_lm_weight``, ``char_bonus``) and under its
length penalty 0 (it also saw the length ceiling, which no sum does), so its
pick stays a point of the grid of its own.
A weighted point that beats the search's pick on dev must also beat it held out
(:func:`held_out_rates`: tuned on one half of dev, scored on the other); else the
search's pick is kept, since a grid of hundreds of points can win on one dev
speaker by chance (Sanskrit: by 0.01 CER points, worse on 61 of 100 random halves).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from data_prep.outputs import atomic_write_text
from pipeline.lm.build import char_tokens
from pipeline.rescore.candidates import Candidate, NBest

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

DEFAULT_CTC_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_LM_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)
DEFAULT_CHAR_LM_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0)
DEFAULT_WORD_BONUSES = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0)
DEFAULT_CHAR_BONUSES = (0.0, 0.5, 1.0, 1.5)


#: Stands in for a missing or impossible score (-inf), so that a zero weight gives 0, not NaN.
_FLOOR = -1e9


def lm_tokens(text: str) -> int:
    """Character-LM tokens of a normalized text (what the fusion's bonus pays for): characters and word boundaries."""
    return len(char_tokens(text))


def _floored(value: float | None) -> float:
    return value if value is not None and value > _FLOOR else _FLOOR


@dataclass(frozen=True)
class Weights:
    ctc_weight: float = 0.0
    lm_weight: float = 0.0
    word_bonus: float = 0.0
    char_lm_weight: float = 0.0
    beam_pick: bool = False  # the search's own winner (the lowest rank); the weights are unused
    char_bonus: float = 0.0  # per character-LM token (see the module docstring)

    def score(self, c: Candidate) -> float:
        # The same floored sum, in the same order, as ErrorTable.rates: a missing or impossible
        # score (None, -inf) counts as _FLOOR, so that when every candidate lacks one (a CTC model
        # that cannot align any of them) the others still decide, on dev and on test alike.
        att, ctc, lm, clm = (_floored(v) for v in (c.att, c.ctc, c.lm, c.clm))
        s = (1 - self.ctc_weight) * att + self.ctc_weight * ctc + self.lm_weight * lm + self.char_lm_weight * clm
        return s + self.word_bonus * c.words + self.char_bonus * lm_tokens(c.text)


def choose(nbest: NBest, weights: Weights) -> Candidate | None:
    """The best candidate under ``weights`` (ties: the earlier one, i.e. the decoder's own ranking)."""
    if weights.beam_pick:
        return search_pick(nbest.candidates)
    best, best_score = None, float("-inf")
    for c in nbest.candidates:
        s = weights.score(c)
        if best is None or s > best_score:
            best, best_score = c, s
    return best


def search_pick(cands: Sequence[Candidate]) -> Candidate | None:
    """The first decoder's beam winner: the candidate of lowest ``rank`` (the first one if none has a rank)."""
    ranked = [c for c in cands if c.rank is not None]
    return min(ranked, key=lambda c: c.rank) if ranked else (cands[0] if cands else None)


def choose_texts(nbests: Sequence[NBest], weights: Weights) -> list[str]:
    out = []
    for nb in nbests:
        c = choose(nb, weights)
        out.append(c.text if c is not None else "")
    return out


class ErrorTable:
    """Every candidate's scores and word/char errors against its reference, computed once.

    A grid point is then an argmax per utterance and a sum: the same corpus WER/CER
    (total edits / total reference length) as scoring the chosen texts, thousands of
    times faster than aligning them again at every point.
    """

    def __init__(self, nbests: Sequence[NBest], refs: Sequence[str]):
        import numpy as np

        from pipeline.score.metrics import align_chars, align_words

        width = max((len(nb.candidates) for nb in nbests), default=0) or 1
        n = len(nbests)
        self.feats = np.full((6, n, width), _FLOOR)  # att, ctc, lm, clm, words, character-LM tokens
        self.feats[4:] = 0.0
        self.word_err = np.zeros((n, width))
        self.char_err = np.zeros((n, width))
        self.ref_words = np.zeros(n)  # reference lengths, per utterance
        self.ref_chars = np.zeros(n)
        self.empty_word_err = np.zeros(n)
        self.empty_char_err = np.zeros(n)
        # which utterances carry a CTC / word LM / char LM score, and beam ranks (the grid's axes)
        self.carries = {name: np.array([any(getattr(c, name) is not None for c in nb.candidates) for nb in nbests],
                                       dtype=bool) for name in ("ctc", "lm", "clm", "rank")}  # fmt: skip
        for i, (nb, ref) in enumerate(zip(nbests, refs)):
            empty_w = align_words([ref], [""]).counts()[0]
            empty_c = align_chars([ref], [""]).counts()[0]
            self.ref_words[i], self.ref_chars[i] = empty_w.ref_len, empty_c.ref_len
            self.empty_word_err[i], self.empty_char_err[i] = empty_w.errors, empty_c.errors
            if not nb.candidates:
                continue
            texts = [c.text for c in nb.candidates]
            k = len(texts)
            self.word_err[i, :k] = [c.errors for c in align_words([ref] * k, texts).counts()]
            self.char_err[i, :k] = [c.errors for c in align_chars([ref] * k, texts).counts()]
            for j, c in enumerate(nb.candidates):
                for f, value in enumerate((c.att, c.ctc, c.lm, c.clm)):
                    if value is not None and value > _FLOOR:
                        self.feats[f, i, j] = value
                self.feats[4, i, j] = c.words
                self.feats[5, i, j] = lm_tokens(c.text)
        self.search_pick = np.array([nb.candidates.index(search_pick(nb.candidates)) if nb.candidates else 0
                                     for nb in nbests])  # fmt: skip
        self.padding = np.ones((n, width), dtype=bool)
        for i, nb in enumerate(nbests):
            self.padding[i, : len(nb.candidates)] = False
        self.feats[0][self.padding] = 2 * _FLOOR  # padding never wins
        self.has = np.array([len(nb.candidates) > 0 for nb in nbests])

    @property
    def word_len(self) -> int:
        return int(self.ref_words.sum())

    @property
    def char_len(self) -> int:
        return int(self.ref_chars.sum())

    def rows(self, index: Sequence[int]) -> ErrorTable:
        """The table of a subset of its utterances (no alignment computed again)."""
        sub = object.__new__(ErrorTable)
        for name, value in vars(self).items():
            sub.__dict__[name] = ({k: v[index] for k, v in value.items()} if isinstance(value, dict)
                                  else value[:, index] if name == "feats" else value[index])  # fmt: skip
        return sub

    def carries_any(self, name: str) -> bool:
        return bool(self.carries[name].any())

    def rates_over_bonuses(self, w: Weights, word_bonuses: Sequence[float],
                           char_bonuses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """:meth:`rates` of ``w`` with every word bonus and char bonus at once: (WER, CER) arrays indexed
        [word bonus, char bonus] (the same sums in the same order: the same numbers, one numpy pass)."""
        import numpy as np

        att, ctc, lm, clm, words, tokens = self.feats
        score = (1 - w.ctc_weight) * att + w.ctc_weight * ctc + w.lm_weight * lm + w.char_lm_weight * clm
        wb = np.asarray(word_bonuses, dtype=float)[:, None, None, None]
        cb = np.asarray(char_bonuses, dtype=float)[None, :, None, None]
        pick = (score + wb * words + cb * tokens).argmax(axis=-1)  # [word bonus, char bonus, utterance]
        rows = np.arange(pick.shape[-1])
        word = np.where(self.has, self.word_err[rows, pick], self.empty_word_err).sum(axis=-1)
        char = np.where(self.has, self.char_err[rows, pick], self.empty_char_err).sum(axis=-1)
        return word / max(self.word_len, 1), char / max(self.char_len, 1)

    def rates(self, w: Weights) -> tuple[float, float]:
        import numpy as np

        att, ctc, lm, clm, words, tokens = self.feats
        if w.beam_pick:
            pick = self.search_pick
        else:
            score = (1 - w.ctc_weight) * att + w.ctc_weight * ctc + w.lm_weight * lm + w.char_lm_weight * clm
            pick = (score + w.word_bonus * words + w.char_bonus * tokens).argmax(axis=1)
        rows = np.arange(len(pick))
        word = np.where(self.has, self.word_err[rows, pick], self.empty_word_err).sum()
        char = np.where(self.has, self.char_err[rows, pick], self.empty_char_err).sum()
        return float(word / max(self.word_len, 1)), float(char / max(self.char_len, 1))


@dataclass
class TunedWeights:
    weights: Weights
    wer: float
    cer: float
    tuned_on: str = ""
    n_utts: int = 0
    grid: list[dict] = field(default_factory=list)
    metric: str = "wer"  # what the grid search minimized
    # the metric held out (two halves of dev): [weights tuned on the other half, search's pick]
    held_out: list[float] | None = None

    def to_json(self) -> dict:
        return {**asdict(self.weights), "dev_wer": self.wer, "dev_cer": self.cer, "metric": self.metric,
                "tuned_on": self.tuned_on, "n_utts": self.n_utts, "held_out": self.held_out,
                "grid": self.grid}  # fmt: skip

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n")


def load_weights(path: str | os.PathLike) -> Weights:
    try:
        d = json.loads(open(path, encoding="utf-8").read())
        if not isinstance(d.get("beam_pick", False), bool):
            raise ValueError(f"beam_pick must be true or false, got {d['beam_pick']!r}")
        w = Weights(float(d["ctc_weight"]), float(d["lm_weight"]), float(d["word_bonus"]),
                    float(d.get("char_lm_weight", 0.0)), bool(d.get("beam_pick", False)),
                    float(d.get("char_bonus", 0.0)))  # fmt: skip
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a rescoring weights file ({e})") from e
    # json reads NaN and Infinity; a NaN weight makes every total NaN and the choice arbitrary
    bad = [k for k in ("ctc_weight", "lm_weight", "word_bonus", "char_lm_weight", "char_bonus")
           if not math.isfinite(getattr(w, k))]  # fmt: skip
    if bad:
        raise ValueError(f"{path}: not a rescoring weights file ({', '.join(bad)} not finite)")
    return w


#: What the weight search can minimize: WER, CER, or their sum (both at once: where many
#: weightings tie on CER within a few hundredths of a point, CER alone leaves WER to chance).
METRICS = ("wer", "cer", "wer+cer")


def metric_value(rates: dict, metric: str) -> float:
    """``metric`` of a point with ``wer`` and ``cer`` keys."""
    return rates["wer"] + rates["cer"] if metric == "wer+cer" else rates[metric]


def tune_weights(
    nbests: Sequence[NBest],
    refs: Sequence[str],
    *,
    ctc_weights: Sequence[float] = DEFAULT_CTC_WEIGHTS,
    lm_weights: Sequence[float] = DEFAULT_LM_WEIGHTS,
    word_bonuses: Sequence[float] = DEFAULT_WORD_BONUSES,
    char_bonuses: Sequence[float] = DEFAULT_CHAR_BONUSES,
    char_lm_weights: Sequence[float] = DEFAULT_CHAR_LM_WEIGHTS,
    metric: str = "wer",
    held_out_check: bool = True,
) -> TunedWeights:
    """Grid search on dev; ties go to the other metric, then to the smallest weights (least change).

    Scores that no candidate carries (no CTC model, no LM) keep weight 0. The search's own
    pick (``beam_pick``) is a point of the grid too when the candidates carry beam ranks;
    it loses ties to the weighted points, but a weighted winner must also beat it held out
    (``held_out_check``, :func:`held_out_rates`), else the search's pick is kept.
    """
    if len(nbests) != len(refs):
        raise ValueError(f"{len(nbests)} N-best lists but {len(refs)} references")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")

    table = ErrorTable(nbests, refs)
    axes = dict(ctc_weights=ctc_weights, lm_weights=lm_weights, char_lm_weights=char_lm_weights,
                word_bonuses=word_bonuses, char_bonuses=char_bonuses)  # fmt: skip
    best, grid = _grid_search(table, metric, **axes)
    held_out = None
    if held_out_check and not best["beam_pick"] and table.carries_any("rank") and len(nbests) >= 4:
        held_out = held_out_rates(table, metric, **axes)
        if held_out[0] >= held_out[1]:
            log.info("the tuned weights beat the search's pick on dev but not held out (%s %.4f vs %.4f): "
                     "keeping the search's pick", metric, *held_out)  # fmt: skip
            best = next(g for g in grid if g["beam_pick"])
    w = _weights_of(best)
    log.info("rescoring weights on dev: %s (WER %.4f, CER %.4f)", w, best["wer"], best["cer"])
    return TunedWeights(weights=w, wer=best["wer"], cer=best["cer"], n_utts=len(refs), grid=grid, metric=metric,
                        held_out=held_out)  # fmt: skip


def _weights_of(point: dict) -> Weights:
    return Weights(**{k: point[k] for k in ("ctc_weight", "lm_weight", "word_bonus", "char_lm_weight", "beam_pick",
                                            "char_bonus")})  # fmt: skip


def _grid_search(table: ErrorTable, metric: str, *, ctc_weights: Sequence[float], lm_weights: Sequence[float],
                 char_lm_weights: Sequence[float], word_bonuses: Sequence[float],
                 char_bonuses: Sequence[float] = (0.0,)) -> tuple[dict, list[dict]]:
    """(best point, every point) of the weight grid on ``table``; see :func:`tune_weights` for the order."""

    def present(name: str, values: Sequence[float]) -> Sequence[float]:
        return values if table.carries_any(name) else [0.0]

    grid = []
    # the char bonus is the char LM's partner (the fusion's length reward): only with char LM scores
    bonuses = list(word_bonuses), list(present("clm", char_bonuses))
    for cw, lw, clw in itertools.product(present("ctc", ctc_weights), present("lm", lm_weights),
                                         present("clm", char_lm_weights)):  # fmt: skip
        wers, cers = table.rates_over_bonuses(Weights(ctc_weight=cw, lm_weight=lw, char_lm_weight=clw), *bonuses)
        for (i, wb), (j, cb) in itertools.product(enumerate(bonuses[0]), enumerate(bonuses[1])):
            grid.append({"ctc_weight": cw, "lm_weight": lw, "word_bonus": wb, "char_lm_weight": clw,
                         "beam_pick": False, "char_bonus": cb, "wer": float(wers[i, j]), "cer": float(cers[i, j])})
    if table.carries_any("rank"):
        wer, cer = table.rates(Weights(beam_pick=True))
        grid.append({**asdict(Weights(beam_pick=True)), "wer": wer, "cer": cer})
    other = "cer" if metric == "wer" else "wer"
    best = min(grid, key=lambda g: (round(metric_value(g, metric), 9), round(g[other], 9), g["beam_pick"],
                                    g["ctc_weight"] + g["lm_weight"] + g["char_lm_weight"],
                                    g["word_bonus"] + g["char_bonus"]))  # fmt: skip
    return best, grid


def held_out_rates(table: ErrorTable, metric: str, **axes) -> list[float]:
    """Two-fold check on dev: [tuned weights, search's pick], each scored on the half it was not tuned on.

    The halves are the even and odd utterances (dev order, so both see every part of the
    recording); each half's error count is the other half's tuned weights' (or the search's pick's).
    """
    n = len(table.has)
    halves = [list(range(0, n, 2)), list(range(1, n, 2))]
    errors = {"tuned": [0.0, 0.0], "pick": [0.0, 0.0]}  # word errors, char errors
    words = chars = 0
    for tune_on, score_on in (halves, halves[::-1]):
        tuned = _weights_of(_grid_search(table.rows(tune_on), metric, **axes)[0])
        held = table.rows(score_on)
        for name, w in (("tuned", tuned), ("pick", Weights(beam_pick=True))):
            wer, cer = held.rates(w)
            errors[name][0] += wer * held.word_len
            errors[name][1] += cer * held.char_len
        words, chars = words + held.word_len, chars + held.char_len

    def rate(e: list[float]) -> float:
        return metric_value({"wer": e[0] / max(words, 1), "cer": e[1] / max(chars, 1)}, metric)

    return [rate(errors["tuned"]), rate(errors["pick"])]

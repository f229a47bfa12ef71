"""Word n-gram language models in ARPA format: interpolated modified Kneser-Ney.

Why this file exists: pyctcdecode scores beams with a KenLM model, and the
``kenlm`` Python module can read an ARPA file but cannot build one (KenLM's
``lmplz`` is a separate C++ program; neither PyPI nor Debian bookworm ships
it, and the PyPI ARPA builders found are unmaintained one-person packages).
Our training texts are small (thousands of sentences), so a direct Python
implementation of the standard estimator is fast enough and easy to test. This
module only writes a file format; KenLM reads and queries it.

The estimator is the one ``lmplz`` uses (Chen & Goodman's interpolated modified
Kneser-Ney), written as a back-off model:

* sentences are wrapped in ``<s> ... </s>``;
* counts: the highest order uses raw counts; lower orders use continuation
  counts (the number of distinct words seen to the left), except n-grams that
  start with ``<s>``, which have no left context and keep their raw counts;
* discounts D1, D2, D3+ per order from the counts-of-counts t1..t4 of those
  adjusted counts: ``Y = t1 / (t1 + 2 t2)``, ``Dk = k - (k+1) Y t(k+1) / tk``;
  tiny corpora where that is undefined or out of range use 0.5 / 1.0 / 1.5 (as
  ``lmplz --discount_fallback``);
* ``p(w|h) = (a(hw) - D(a(hw))) / a(h.) + gamma(h) p(w|h')``, with
  ``gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3 N3+(h.)) / a(h.)``; unigrams are
  interpolated with the uniform distribution over the vocabulary plus
  ``<unk>``, which receives exactly the uniform share;
* in the ARPA file, each n-gram's probability is the interpolated one and the
  back-off weight of a context is its ``gamma``, so the model is normalised
  for every context (the tests check this through KenLM).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from data_prep.outputs import atomic_write_text

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
LOG10_ZERO = -99.0  # ARPA's log10 probability of <s> (never predicted)

Ngram = tuple[str, ...]


@dataclass(frozen=True)
class Discounts:
    d1: float
    d2: float
    d3: float
    fallback: bool = False

    def __call__(self, count: int) -> float:
        return self.d1 if count == 1 else self.d2 if count == 2 else self.d3


def count_ngrams(sentences: Iterable[list[str]], order: int) -> list[Counter]:
    """Raw counts ``counts[n][ngram]`` for n = 1..order (index 0 unused) over ``<s> words </s>``."""
    counts = [Counter() for _ in range(order + 1)]
    for words in sentences:
        toks = [BOS, *words, EOS]
        for n in range(1, order + 1):
            for i in range(len(toks) - n + 1):
                counts[n][tuple(toks[i : i + n])] += 1
    return counts


def adjusted_counts(raw: list[Counter], order: int) -> list[dict[Ngram, int]]:
    """Kneser-Ney counts: raw at the top order and for ``<s>``-initial n-grams, else left-continuation counts."""
    adj: list[dict[Ngram, int]] = [{} for _ in range(order + 1)]
    adj[order] = dict(raw[order])
    for n in range(order - 1, 0, -1):
        left = Counter(g[1:] for g in raw[n + 1])
        adj[n] = {g: (c if g[0] == BOS else left[g]) for g, c in raw[n].items()}
        adj[n].pop((BOS,), None)  # <s> is never predicted
    adj[1].pop((BOS,), None)
    return adj


def estimate_discounts(counts: Iterable[int]) -> Discounts:
    """Modified Kneser-Ney discounts from adjusted counts (fallback when undefined or out of range)."""
    t = Counter(min(c, 4) for c in counts)
    t1, t2, t3, t4 = (t[k] for k in (1, 2, 3, 4))
    if min(t1, t2, t3, t4) == 0:
        return Discounts(*FALLBACK_DISCOUNTS, fallback=True)
    y = t1 / (t1 + 2 * t2)
    d = (1 - 2 * y * t2 / t1, 2 - 3 * y * t3 / t2, 3 - 4 * y * t4 / t3)
    if not all(0 < dk < k + 1 for k, dk in enumerate(d)):
        return Discounts(*FALLBACK_DISCOUNTS, fallback=True)
    return Discounts(*d)


@dataclass
class NgramModel:
    """Interpolated probabilities and back-off weights of every n-gram, ready to write."""

    order: int
    prob: list[dict[Ngram, float]]  # prob[n][ngram] = p(w | h), natural scale
    backoff: list[dict[Ngram, float]]  # backoff[n][ngram] = gamma(ngram) as a context
    discounts: list[Discounts]  # discounts[n-1] for order n


def estimate(sentences: Iterable[list[str]], order: int) -> NgramModel:
    """Interpolated modified Kneser-Ney estimate from tokenized sentences."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    sentences = [s for s in sentences if s]
    if not sentences:
        raise ValueError("no non-empty sentences to estimate a language model from")
    adj = adjusted_counts(count_ngrams(sentences, order), order)
    prob: list[dict[Ngram, float]] = [{} for _ in range(order + 1)]
    backoff: list[dict[Ngram, float]] = [{} for _ in range(order + 1)]
    discounts = []
    for n in range(1, order + 1):
        disc = estimate_discounts(adj[n].values())
        discounts.append(disc)
        by_ctx: dict[Ngram, list[tuple[Ngram, int]]] = defaultdict(list)
        for g, c in adj[n].items():
            by_ctx[g[:-1]].append((g, c))
        for ctx, items in by_ctx.items():
            total = sum(c for _, c in items)
            gamma = sum(disc(c) for _, c in items) / total
            if n == 1:
                vocab = [g for g, _ in items] + [(UNK,)]
                uniform = gamma / len(vocab)
                for g, c in items:
                    prob[1][g] = (c - disc(c)) / total + uniform
                prob[1][(UNK,)] = uniform
            else:
                backoff[n - 1][ctx] = gamma
                for g, c in items:
                    prob[n][g] = (c - disc(c)) / total + gamma * prob[n - 1][g[1:]]
    prob[1][(BOS,)] = 0.0
    return NgramModel(order=order, prob=prob, backoff=backoff, discounts=discounts)


def _fmt(x: float) -> str:
    return f"{x:.7g}"


def write_arpa(model: NgramModel, path: str | Path) -> Path:
    """Write ``model`` as an ARPA file (atomically)."""
    lines = ["", "\\data\\"]
    lines += [f"ngram {n}={len(model.prob[n])}" for n in range(1, model.order + 1)]
    for n in range(1, model.order + 1):
        lines += ["", f"\\{n}-grams:"]
        for g in sorted(model.prob[n]):
            p = model.prob[n][g]
            logp = LOG10_ZERO if p <= 0.0 else math.log10(p)
            row = f"{_fmt(logp)}\t{' '.join(g)}"
            if n < model.order and g in model.backoff[n]:
                row += f"\t{_fmt(math.log10(model.backoff[n][g]))}"
            lines.append(row)
    lines += ["", "\\end\\", ""]
    path = Path(path)
    atomic_write_text(path, "\n".join(lines))
    return path

"""Bootstrap confidence intervals and the paired bootstrap test for error rates.

Utterances are the resampling unit (errors within an utterance are not
independent), and every statistic is the corpus-level ratio
sum(errors) / sum(reference lengths) of the resample, like the point estimate.

* :func:`bootstrap_ci` — percentile interval of one system's error rate.
* :func:`paired_bootstrap` — Bisani & Ney (2004): resample the SAME utterances
  for systems A and B; ``p_a_better`` is the fraction of resamples in which A
  makes fewer errors than B (ties count for neither).
* :func:`difference_ci` — interval of rate(B) - rate(A) for two DIFFERENT
  utterance sets (e.g. one system on an in-domain and a shifted test set),
  resampled independently.

All randomness comes from a seeded :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

#: Resamples are drawn in blocks so that memory stays below ~8M indices.
_MAX_BLOCK_CELLS = 8_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided percentile interval."""

    point: float
    low: float
    high: float
    level: float = 0.95

    def to_json(self) -> dict:
        return {"point": self.point, "low": self.low, "high": self.high, "level": self.level}

    @classmethod
    def from_json(cls, d: dict) -> Interval:
        return cls(float(d["point"]), float(d["low"]), float(d["high"]), float(d.get("level", 0.95)))


@dataclass(frozen=True)
class PairedResult:
    """Outcome of a paired bootstrap between systems A and B on the same utterances."""

    n_utts: int
    n_resamples: int
    rate_a: float
    rate_b: float
    p_a_better: float  # fraction of resamples where A has strictly fewer errors
    p_b_better: float  # fraction where B has strictly fewer errors
    delta: Interval  # rate_a - rate_b (negative: A is better)

    def to_json(self) -> dict:
        return {
            "n_utts": self.n_utts,
            "n_resamples": self.n_resamples,
            "rate_a": self.rate_a,
            "rate_b": self.rate_b,
            "p_a_better": self.p_a_better,
            "p_b_better": self.p_b_better,
            "delta": self.delta.to_json(),
        }


def _as_arrays(errors: Sequence[float], ref_lens: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(errors, dtype=np.float64)
    n = np.asarray(ref_lens, dtype=np.float64)
    if e.ndim != 1 or e.shape != n.shape:
        raise ValueError(f"errors and ref_lens must be 1-D of equal length, got {e.shape} and {n.shape}")
    if e.size == 0:
        raise ValueError("cannot bootstrap an empty set of utterances")
    return e, n


def _ratio(err_sum: np.ndarray, len_sum: np.ndarray) -> np.ndarray:
    # A resample whose references are all empty has no defined rate; count its
    # errors instead (jiwer's convention for an empty reference).
    return np.where(len_sum > 0, err_sum / np.maximum(len_sum, 1e-300), err_sum)


def _resample_blocks(rng: np.random.Generator, n_items: int, n_resamples: int) -> Iterator[np.ndarray]:
    """Yield (k, n_items) index arrays, k resamples at a time, n_resamples in all."""
    block = max(1, min(n_resamples, _MAX_BLOCK_CELLS // max(n_items, 1)))
    done = 0
    while done < n_resamples:
        k = min(block, n_resamples - done)
        yield rng.integers(0, n_items, size=(k, n_items))
        done += k


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return float(lo), float(hi)


def corpus_rate(errors: Sequence[float], ref_lens: Sequence[float]) -> float:
    """sum(errors) / sum(ref_lens) (insertions count if all references are empty)."""
    e, n = _as_arrays(errors, ref_lens)
    return float(_ratio(np.array(e.sum()), np.array(n.sum())))


def bootstrap_ci(
    errors: Sequence[float],
    ref_lens: Sequence[float],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of the corpus-level error rate."""
    e, n = _as_arrays(errors, ref_lens)
    point = float(_ratio(np.array(e.sum()), np.array(n.sum())))
    if n_resamples <= 0:
        return Interval(point, point, point, level)
    rng = np.random.default_rng(seed)
    rates = np.concatenate(
        [_ratio(e[idx].sum(axis=1), n[idx].sum(axis=1)) for idx in _resample_blocks(rng, e.size, n_resamples)]
    )
    lo, hi = _percentiles(rates, level)
    return Interval(point, lo, hi, level)


def paired_bootstrap(
    errors_a: Sequence[float],
    errors_b: Sequence[float],
    ref_lens: Sequence[float],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedResult:
    """Bisani & Ney paired bootstrap: how often is A better than B on resampled utterances?

    ``errors_a[i]`` and ``errors_b[i]`` must be the two systems' error counts on
    the same utterance ``i``, whose reference length is ``ref_lens[i]``.
    """
    ea, n = _as_arrays(errors_a, ref_lens)
    eb, _ = _as_arrays(errors_b, ref_lens)
    rate_a = float(_ratio(np.array(ea.sum()), np.array(n.sum())))
    rate_b = float(_ratio(np.array(eb.sum()), np.array(n.sum())))
    if n_resamples <= 0:
        raise ValueError("paired_bootstrap needs n_resamples > 0")
    rng = np.random.default_rng(seed)
    a_better = b_better = 0
    deltas = []
    for idx in _resample_blocks(rng, n.size, n_resamples):
        sa, sb, sn = ea[idx].sum(axis=1), eb[idx].sum(axis=1), n[idx].sum(axis=1)
        # Same utterances, same reference length: comparing error sums is comparing rates.
        a_better += int((sa < sb).sum())
        b_better += int((sb < sa).sum())
        deltas.append(_ratio(sa, sn) - _ratio(sb, sn))
    lo, hi = _percentiles(np.concatenate(deltas), level)
    return PairedResult(
        n_utts=int(n.size),
        n_resamples=n_resamples,
        rate_a=rate_a,
        rate_b=rate_b,
        p_a_better=a_better / n_resamples,
        p_b_better=b_better / n_resamples,
        delta=Interval(rate_a - rate_b, lo, hi, level),
    )


def difference_ci(
    errors_a: Sequence[float],
    ref_lens_a: Sequence[float],
    errors_b: Sequence[float],
    ref_lens_b: Sequence[float],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Interval of rate(B) - rate(A) for two independent utterance sets."""
    ea, na = _as_arrays(errors_a, ref_lens_a)
    eb, nb = _as_arrays(errors_b, ref_lens_b)
    point = float(_ratio(np.array(eb.sum()), np.array(nb.sum())) - _ratio(np.array(ea.sum()), np.array(na.sum())))
    if n_resamples <= 0:
        return Interval(point, point, point, level)
    rng = np.random.default_rng(seed)
    ra = np.concatenate([_ratio(ea[i].sum(axis=1), na[i].sum(axis=1)) for i in _resample_blocks(rng, ea.size, n_resamples)])
    rb = np.concatenate([_ratio(eb[i].sum(axis=1), nb[i].sum(axis=1)) for i in _resample_blocks(rng, eb.size, n_resamples)])
    lo, hi = _percentiles(rb - ra, level)
    return Interval(point, lo, hi, level)

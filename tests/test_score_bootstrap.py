"""Bootstrap intervals and the paired bootstrap test."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.score.bootstrap import bootstrap_ci, corpus_rate, difference_ci, paired_bootstrap


def _system(n: int, p_err: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lens = rng.integers(3, 15, size=n)
    return rng.binomial(lens, p_err), lens


def test_interval_contains_point_and_narrows_with_more_utterances():
    e_small, n_small = _system(30, 0.2, 1)
    e_big, n_big = _system(1000, 0.2, 1)
    small = bootstrap_ci(e_small, n_small, n_resamples=500, seed=0)
    big = bootstrap_ci(e_big, n_big, n_resamples=500, seed=0)
    for ci in (small, big):
        assert ci.low <= ci.point <= ci.high
        assert ci.low < ci.high
    assert big.point == pytest.approx(e_big.sum() / n_big.sum())
    assert (big.high - big.low) < 0.5 * (small.high - small.low)
    assert 0.15 < big.low < 0.2 < big.high < 0.25


def test_interval_is_reproducible_by_seed():
    e, n = _system(50, 0.3, 2)
    assert bootstrap_ci(e, n, seed=3) == bootstrap_ci(e, n, seed=3)
    assert bootstrap_ci(e, n, seed=3) != bootstrap_ci(e, n, seed=4)


def test_interval_is_the_corpus_ratio_not_mean_of_ratios():
    # One long utterance with few errors, one short fully wrong: corpus ratio is 2/11.
    assert corpus_rate([1, 1], [10, 1]) == pytest.approx(2 / 11)
    assert bootstrap_ci([1, 1], [10, 1], n_resamples=0).point == pytest.approx(2 / 11)


def test_paired_bootstrap_prefers_the_truly_better_system():
    rng = np.random.default_rng(5)
    lens = rng.integers(5, 20, size=200)
    worse = rng.binomial(lens, 0.30)
    better = np.maximum(worse - rng.binomial(1, 0.5, size=200), 0)  # fixes some errors, never adds
    res = paired_bootstrap(better, worse, lens, n_resamples=1000, seed=0)
    assert res.p_a_better > 0.99 and res.p_b_better < 0.01
    assert res.rate_a < res.rate_b and res.delta.high < 0
    rev = paired_bootstrap(worse, better, lens, n_resamples=1000, seed=0)
    assert rev.p_a_better < 0.01 and rev.p_b_better > 0.99


def test_paired_bootstrap_identical_systems_is_never_better():
    e, n = _system(100, 0.2, 7)
    res = paired_bootstrap(e, e, n, n_resamples=300, seed=0)
    assert res.p_a_better == 0.0 and res.p_b_better == 0.0  # ties count for neither
    assert res.delta.point == 0.0


def test_paired_bootstrap_with_noise_is_uncertain():
    rng = np.random.default_rng(11)
    lens = rng.integers(5, 20, size=100)
    a, b = rng.binomial(lens, 0.25), rng.binomial(lens, 0.25)
    res = paired_bootstrap(a, b, lens, n_resamples=1000, seed=0)
    assert 0.01 < res.p_a_better < 0.99
    assert res.p_a_better + res.p_b_better <= 1.0


def test_difference_ci_detects_a_gap():
    ea, na = _system(300, 0.1, 1)
    eb, nb = _system(300, 0.3, 2)
    ci = difference_ci(ea, na, eb, nb, n_resamples=500, seed=0)
    assert ci.point == pytest.approx(eb.sum() / nb.sum() - ea.sum() / na.sum())
    assert 0 < ci.low <= ci.point <= ci.high


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([], [])
    with pytest.raises(ValueError, match="equal length"):
        bootstrap_ci([1, 2], [3])

"""The ARPA writer: modified Kneser-Ney estimates that KenLM loads and that normalise."""

from __future__ import annotations

import math

import kenlm
import pytest

from pipeline.lm import build_ngram_lm, read_unigrams
from pipeline.lm.arpa import adjusted_counts, count_ngrams, estimate, estimate_discounts

TRAIN = [
    "the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "the cat ate",
    "dog ate the cat food", "on the mat the cat sat", "new york is big", "in new york",
    "the big dog ate", "a big cat sat on a dog",
]


def _state_after(model: kenlm.Model, words: list[str]) -> kenlm.State:
    s = kenlm.State()
    model.BeginSentenceWrite(s)
    for w in words:
        out = kenlm.State()
        model.BaseScore(s, w, out)
        s = out
    return s


@pytest.mark.parametrize("order", [2, 3, 4])
def test_kenlm_loads_it_and_every_context_sums_to_one(tmp_path, order):
    path = build_ngram_lm(TRAIN * 2, order, tmp_path / "lm.arpa")
    model = kenlm.Model(str(path))
    assert model.order == order
    words = read_unigrams(path) + ["</s>", "<unk>"]
    for ctx in ([], ["the"], ["the", "cat"], ["new", "york"], ["zzz"], ["cat", "zzz"], ["on", "the", "mat"]):
        state = _state_after(model, ctx)
        total = sum(10 ** model.BaseScore(state, w, kenlm.State()) for w in words)
        assert total == pytest.approx(1.0, abs=1e-5), ctx


def test_prefers_in_vocabulary_word_sequences(tmp_path):
    model = kenlm.Model(str(build_ngram_lm(TRAIN, 3, tmp_path / "lm.arpa")))
    seen = model.score("the cat sat on the mat")
    assert seen > model.score("mat the on sat cat the")  # same words, unseen order
    assert seen > model.score("the cat sat on the moon")  # an out-of-vocabulary word
    assert model.score("new york") > model.score("york new")


def test_continuation_counts_favour_words_seen_in_many_contexts():
    """Kneser-Ney: 'york' (always after 'new') gets less unigram mass than 'big' (3 contexts), same raw count."""
    sents = [s.split() for s in TRAIN]
    raw = count_ngrams(sents, 2)
    assert raw[1][("york",)] == 2 and raw[1][("big",)] == 3
    adj = adjusted_counts(raw, 2)
    assert adj[1][("york",)] == 1 and adj[1][("big",)] == 3
    assert adj[1].get(("<s>",)) is None
    model = estimate(sents, 2)
    assert model.prob[1][("york",)] < model.prob[1][("big",)]
    assert sum(model.prob[1].values()) == pytest.approx(1.0)
    assert model.prob[1][("<s>",)] == 0.0


def test_discounts_from_counts_of_counts_and_fallback():
    counts = [1] * 10 + [2] * 5 + [3] * 3 + [4] * 2
    d = estimate_discounts(counts)
    y = 10 / (10 + 2 * 5)
    assert not d.fallback
    assert (d.d1, d.d2, d.d3) == pytest.approx((1 - 2 * y * 5 / 10, 2 - 3 * y * 3 / 5, 3 - 4 * y * 2 / 3))
    assert d(1) == d.d1 and d(2) == d.d2 and d(7) == d.d3
    assert estimate_discounts([1, 1, 2]).fallback  # no count-3/4 n-grams: lmplz's fallback values
    assert (estimate_discounts([1]).d1, estimate_discounts([1]).d3) == (0.5, 1.5)


def test_arpa_header_counts_match_sections(tmp_path):
    path = build_ngram_lm(TRAIN, 3, tmp_path / "lm.arpa")
    text = path.read_text(encoding="utf-8")
    for n in (1, 2, 3):
        declared = int(text.split(f"ngram {n}=")[1].split("\n")[0])
        section = text.split(f"\\{n}-grams:\n")[1].split("\n\n")[0].splitlines()
        assert declared == len(section)
    assert "-99\t<s>\t" in text
    assert text.rstrip().endswith("\\end\\")
    probs = [float(line.split("\t")[0]) for line in text.split("\\3-grams:\n")[1].split("\n\n")[0].splitlines()]
    assert all(-20 < p <= 0 and math.isfinite(p) for p in probs)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no non-empty"):
        build_ngram_lm(["", "  "], 2, tmp_path / "x.arpa")
    with pytest.raises(ValueError, match="bigrams"):
        build_ngram_lm(["a b"], 1, tmp_path / "x.arpa")
    with pytest.raises(ValueError, match="order"):
        estimate([["a"]], 0)
    (tmp_path / "bad.arpa").write_text("hello\n")
    with pytest.raises(ValueError, match="bad.arpa"):
        read_unigrams(tmp_path / "bad.arpa")

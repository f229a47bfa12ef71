"""The transfer verdict: gains, negative transfer, domain shift, and what cannot be compared."""

from __future__ import annotations

import random

from data_prep.manifest import Utterance
from pipeline.decode.hyps import Hypothesis
from pipeline.report.verdict import paired, transfer_verdict
from pipeline.score.bootstrap import difference_ci
from pipeline.score.results import Results
from pipeline.score.scorer import score_utterances

WORDS = ["रामः", "वनं", "गच्छति", "एषः", "कः", "चषकः", "अहं", "बालकः", "पठति", "जलम्"]


def make_utts(n: int = 60, seed: int = 0, prefix: str = "u") -> list[Utterance]:
    rng = random.Random(seed)
    return [Utterance(id=f"{prefix}{i:03d}", audio="x.flac", duration=1.0 + i % 7, language="sa",
                      speaker=f"spk{i % 3}", text=" ".join(rng.choice(WORDS) for _ in range(3 + i % 5)))
            for i in range(n)]


def make_results(utts: list[Utterance], system: str, kind: str, p_err: float, testset: str = "test",
                 seed: int = 1) -> Results:
    """Hypotheses that replace each word by a wrong one with probability p_err."""
    rng = random.Random(seed)
    hyps = {u.id: Hypothesis(u.id, " ".join("गलत" if rng.random() < p_err else w for w in u.text.split()))
            for u in utts}
    return score_utterances(utts, hyps, "sa", system=system, kind=kind, testset=testset, n_resamples=200).results


def by_section(items, section):
    return [i for i in items if i.section == section]


def test_negative_transfer_flagged_when_scratch_equals_finetuned():
    utts = make_utts()
    rs = [make_results(utts, "zs", "zeroshot", 0.9), make_results(utts, "ft", "finetuned", 0.2, seed=5),
          make_results(utts, "scratch", "scratch", 0.2, seed=5)]
    items = transfer_verdict(rs, n_resamples=300, budgets={("sa", "ft"): 500, ("sa", "scratch"): 500})
    (sc,) = by_section(items, "scratch")
    assert sc.status == "flag" and sc.data["negative_transfer"] is True
    assert "negative transfer" in sc.headline and "Same budget: 500 steps each" in sc.detail
    (zs,) = by_section(items, "zeroshot")
    assert zs.status == "ok" and "significant gain" in zs.headline
    assert zs.data["wer"]["p_a_better"] > 0.99


def test_no_flag_when_pretraining_clearly_helps_and_budget_mismatch_is_said():
    utts = make_utts()
    rs = [make_results(utts, "ft", "finetuned", 0.1, seed=2), make_results(utts, "scratch", "scratch", 0.6, seed=3)]
    items = transfer_verdict(rs, n_resamples=300, budgets={("sa", "ft"): 500, ("sa", "scratch"): 2000})
    (sc,) = by_section(items, "scratch")
    assert sc.status == "ok" and sc.data["negative_transfer"] is False
    assert "Budgets DIFFER" in sc.detail and sc.data["budget_differs"] is True
    # No zero-shot system: said plainly.
    assert any(i.status == "na" and "No zero-shot system on test" in i.headline for i in items)


def test_missing_systems_are_stated():
    utts = make_utts(20)
    items = transfer_verdict([make_results(utts, "zs", "zeroshot", 0.9)], n_resamples=50)
    texts = [i.text for i in items]
    assert all(i.status == "na" for i in items)
    assert any("No fine-tuned system on test (sa)" in t for t in texts)
    assert any("No system was scored on two test sets" in t for t in texts)
    items = transfer_verdict([make_results(utts, "ft", "finetuned", 0.3)], n_resamples=50)
    assert any("No from-scratch system (kind=scratch) on test (sa)" in i.text for i in items)


def test_finetuning_that_hurts_is_flagged():
    utts = make_utts()
    rs = [make_results(utts, "zs", "zeroshot", 0.1, seed=2), make_results(utts, "ft", "finetuned", 0.7, seed=3)]
    (zs,) = by_section(transfer_verdict(rs, n_resamples=300), "zeroshot")
    assert zs.status == "flag" and "WORSE" in zs.headline


def test_domain_shift_gap():
    in_dom, shifted = make_utts(80, 0, "a"), make_utts(80, 1, "b")
    rs = [make_results(in_dom, "ft", "finetuned", 0.1, "test", 2),
          make_results(shifted, "ft", "finetuned", 0.5, "test_noisy", 3)]
    (ds,) = by_section(transfer_verdict(rs, n_resamples=300), "domain_shift")
    assert ds.status == "warn" and "significantly worse under the shift" in ds.headline
    gap = ds.data["wer"]["gap"]
    assert gap["low"] > 0 and abs(gap["point"] - (rs[1].wer - rs[0].wer)) < 1e-12
    assert ds.data["in_domain"] == "test" and ds.data["shifted"] == "test_noisy"


def test_dev_is_not_a_shifted_test_set():
    # A system scored on dev and test: dev tuned it (same domain, other speakers), so no shift gap.
    rs = [make_results(make_utts(40, 0, "a"), "ft", "finetuned", 0.1, "test", 2),
          make_results(make_utts(40, 1, "b"), "ft", "finetuned", 0.5, "dev", 3)]
    (ds,) = by_section(transfer_verdict(rs, n_resamples=100), "domain_shift")
    assert ds.status == "na"


def test_no_common_utterances_cannot_be_compared():
    rs = [make_results(make_utts(10, 0, "a"), "ft", "finetuned", 0.1),
          make_results(make_utts(10, 0, "b"), "zs", "zeroshot", 0.9)]
    (zs,) = [i for i in by_section(transfer_verdict(rs, n_resamples=50), "zeroshot") if "zero-shot)" in i.headline]
    assert zs.status == "na" and "no utterances in common" in zs.headline


def test_a_set_derived_from_the_test_set_is_compared_on_the_same_utterances():
    # test_babble holds the test utterances (one rejected) heard in babble: the gap is paired over the 59
    # it kept, and per condition (one item each).
    utts = make_utts(60)
    rs = [make_results(utts, "ft", "finetuned", 0.10, "test", 2),
          make_results(utts[1:], "ft", "finetuned", 0.25, "test_babble", 3),
          make_results(utts, "ft", "finetuned", 0.13, "test_telephone", 2)]  # the clean errors, and a few more
    babble, telephone = by_section(transfer_verdict(rs, n_resamples=300), "domain_shift")
    assert babble.status == "warn" and "on test_babble: significantly worse" in babble.headline
    assert babble.data["paired_utts"] == 59 and "Paired over the 59 utterances" in babble.detail
    paired_gap = babble.data["wer"]["gap"]
    r, _ = paired(rs[1], rs[0], "wer", 300, 0)
    assert paired_gap["point"] == r.delta.point and paired_gap["low"] == r.delta.low
    assert babble.data["wer"]["in_domain"] == r.rate_b  # the clean rate on the same 59 utterances
    independent = difference_ci([u.word_errors for u in rs[0].utts], [u.ref_words for u in rs[0].utts],
                                [u.word_errors for u in rs[2].utts], [u.ref_words for u in rs[2].utts],
                                n_resamples=300)
    tel = telephone.data["wer"]["gap"]
    assert tel["high"] - tel["low"] < independent.high - independent.low  # pairing removes the sampling noise
    assert telephone.data["shifted"] == "test_telephone" and telephone.data["paired_utts"] == 60

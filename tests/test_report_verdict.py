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


def test_the_report_decides_both_verdicts_from_a_degraded_set_and_a_scratch_system(tmp_path):
    """degrade -> score -> report, with hand-written transcripts for three systems' outputs: the fine-tuned
    system on the clean test set and on its babble copy, and a from-scratch system on the clean set."""
    import numpy as np
    import soundfile as sf

    from data_prep.degrade import Condition, degrade
    from data_prep.manifest import Source, write_jsonl
    from pipeline.decode.hyps import write_hyps
    from pipeline.report.collect import collect
    from pipeline.report.render import render_markdown
    from pipeline.score.scorer import score

    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    (data / "audio").mkdir(parents=True)
    utts = []
    for i, u in enumerate(make_utts(40) + make_utts(8, 1, "n")):
        sf.write(data / "audio" / f"{u.id}.wav", (0.1 * rng.standard_normal(4000)).astype(np.float32), 16000)
        utts.append(u.replace(audio=f"audio/{u.id}.wav", duration=0.25, speaker="t" if u.id[0] == "u" else "o",
                              source=Source("x.tsv", i + 1)))  # fmt: skip
    write_jsonl(data / "test.jsonl", [u for u in utts if u.speaker == "t"])
    write_jsonl(data / "train.jsonl", [u for u in utts if u.speaker == "o"])
    degrade(data / "test.jsonl", tmp_path / "shifted" / "test_babble10", Condition("babble", snr_db=10),
            noise_manifest=data / "train.jsonl")  # fmt: skip

    def scored(system: str, kind: str, manifest, p_err: float, seed: int) -> None:
        rnd = random.Random(seed)
        hyps = tmp_path / "exp" / system / manifest.stem / "hyps.jsonl"
        write_hyps(hyps, [Hypothesis(u.id, " ".join("गलत" if rnd.random() < p_err else w for w in u.text.split()))
                          for u in utts if u.speaker == "t"])  # fmt: skip
        score(manifest, hyps, system=system, kind=kind, n_resamples=200)

    scored("ft", "finetuned", data / "test.jsonl", 0.1, 1)
    scored("ft", "finetuned", tmp_path / "shifted" / "test_babble10" / "test_babble10.jsonl", 0.4, 1)
    scored("scratch", "scratch", data / "test.jsonl", 0.8, 2)
    results = [x.results for x in collect([tmp_path / "exp"])]
    items = transfer_verdict(results, n_resamples=200)
    (shift,) = by_section(items, "domain_shift")
    assert shift.status == "warn" and shift.data["shifted"] == "test_babble10" and shift.data["paired_utts"] == 40
    assert "ft (finetuned) on test_babble10: significantly worse under the shift" in shift.text
    (neg,) = by_section(items, "scratch")  # none on test_babble10: the domain-shift section speaks for it
    assert [i.headline for i in by_section(items, "zeroshot")] == [
        "No zero-shot system on test (sa): the gain over the pretrained model cannot be measured"]
    assert neg.status == "ok" and neg.data["negative_transfer"] is False and "transfer helps" in neg.text
    md = render_markdown("t", results, items, [], [], "wer")
    assert "test_babble10: significantly worse" in md.split("### Domain shift")[1]

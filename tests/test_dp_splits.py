"""Speaker-disjoint splits by ratio, explicit speakers, corpus splits, and the overlap report."""

from __future__ import annotations

import pytest

from data_prep.manifest import Source, Utterance
from data_prep.splits import (
    SplitError,
    assign_splits,
    overlap_report,
    parse_ratios,
    parse_speakers,
    ratio_assign,
)

R = parse_ratios("0.8,0.1,0.1")


def utt(i: int, spk: str, split: str = "", dur: float = 1.0, text: str = "क") -> Utterance:
    return Utterance(id=f"u{i}", audio="a.flac", duration=dur, text=text, speaker=spk, split=split,
                     source=Source("f", i + 1))


@pytest.mark.parametrize("n", [2, 3, 4, 8, 30])
def test_ratio_assign_few_and_many_speakers(n):
    hours = {f"s{i}": 1.0 + i % 3 for i in range(n)}
    a = ratio_assign(hours, R, seed=0)
    got = set(a.values())
    assert "train" in got and "test" in got and (n < 3 or "dev" in got)
    assert a == ratio_assign(dict(reversed(list(hours.items()))), R, seed=0)  # input order irrelevant
    if n == 30:
        train = sum(h for s, h in hours.items() if a[s] == "train") / sum(hours.values())
        assert 0.7 < train < 0.9


def test_seed_changes_assignment():
    hours = {f"s{i}": 1.0 for i in range(10)}
    assert any(ratio_assign(hours, R, seed) != ratio_assign(hours, R, 0) for seed in range(1, 6))


def test_unknown_speakers_are_per_row_and_segments_stay_together():
    utts = [utt(i, "") for i in range(10)] + [utt(10, "").replace(id="u10-2")]
    out, mode = assign_splits(utts, "auto", R, 0, {})
    assert mode == "ratio" and out[-1].split == out[-2].split
    assert {u.split for u in out} == {"train", "dev", "test"}


def test_explicit_speakers_and_parsing():
    assert parse_speakers("dev=A,test=B+C") == {"A": "dev", "B": "test", "C": "test"}
    with pytest.raises(SplitError):
        parse_speakers("valid=A")
    with pytest.raises(SplitError):
        parse_ratios("0.5,0.5")
    assert parse_ratios("8,1,1") == pytest.approx(R)
    utts = [utt(0, "A"), utt(1, "B"), utt(2, "C")]
    out, mode = assign_splits(utts, "auto", R, 0, {"A": "dev", "B": "test"})
    assert mode == "speakers" and [u.split for u in out] == ["dev", "test", "train"]


def test_overlap_report_counts_speakers_and_sentences():
    utts = [utt(0, "A", "train", text="x"), utt(1, "A", "dev", text="x"), utt(2, "B", "test", text="y")]
    out, mode = assign_splits(utts, "auto", R, 0, {})
    assert mode == "corpus"
    rep = overlap_report(out)
    assert rep["overlap"]["train/dev"] == {"shared_speakers": ["A"], "shared_sentences": 1}
    assert rep["overlap"]["train/test"] == {"shared_speakers": [], "shared_sentences": 0}
    assert rep["splits"]["train"]["speakers"] == 1


def test_auto_carves_a_missing_dev_split_out_of_train_speakers_only():
    # a CV release without dev.tsv: train speakers s0..s5, its own test speaker t
    utts = [utt(i, f"s{i % 6}", "train", dur=1.0 + i % 6) for i in range(30)] + [utt(30, "t", "test")]
    out, mode = assign_splits(utts, "auto", R, 0, {})
    assert mode == "corpus+carved"
    dev = {u.speaker for u in out if u.split == "dev"}
    assert dev and dev < {f"s{i}" for i in range(6)}  # whole train speakers, not all of them
    assert [u.speaker for u in out if u.split == "test"] == ["t"]  # the corpus's test split untouched
    assert {u.speaker for u in out if u.split == "train"}.isdisjoint(dev)
    assert not overlap_report(out)["overlap"]["train/dev"]["shared_speakers"]
    kept, mode = assign_splits(utts, "corpus", R, 0, {})  # asked for the corpus's split: kept as it is
    assert mode == "corpus" and not any(u.split == "dev" for u in kept)
    one, mode = assign_splits([utt(0, "s0", "train"), utt(1, "t", "test")], "auto", R, 0, {})
    assert mode == "corpus" and [u.split for u in one] == ["train", "test"]  # nothing to carve from

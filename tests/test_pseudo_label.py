"""Pseudo-labelling: every unlabeled utterance is either labeled from the hypotheses or rejected with a reason."""

from __future__ import annotations

import json
import os

from data_prep.manifest import Source, Utterance, read_manifest, read_rejects, write_jsonl
from pipeline.cli import main
from pipeline.decode.hyps import Hypothesis, write_hyps
from pipeline.decode.rates import RateBounds
from pipeline.pseudo_label import check, repeated_ngram


def _utt(uid: str, text: str, duration: float, split: str) -> Utterance:
    return Utterance(id=uid, audio=f"cache/{uid}.flac", duration=duration, text=text, language="sa",
                     source=Source(f"{split}.tsv", 1), split=split)  # fmt: skip


def test_repeated_ngram_finds_loops_only():
    assert repeated_ngram("का का का का का".split(), 3) == "का"
    assert repeated_ngram("a b a b a b a b x".split(), 3) == "a b"
    assert repeated_ngram("a b a b a b".split(), 3) == ""  # three times is allowed
    assert repeated_ngram("एकः द्वौ त्रयः".split(), 3) == ""


def test_rate_bounds_allow_silence_in_short_clips():
    bounds = RateBounds(low=4.0, high=15.0)
    assert check("सः कः", 1.8, bounds, 3) == ("", "")  # 3 characters in 1.8 s: short answer, fine
    reason, detail = check("सः कः", 9.0, bounds, 3)  # a truncated long clip
    assert reason == "implausible_rate" and "9.00 s" in detail
    assert check("क" * 40, 2.0, bounds, 3)[0] == "implausible_rate"  # more than 15 characters/s
    assert check("  ", 2.0, bounds, 3)[0] == "empty_hypothesis"


def test_pseudo_label_cli_keeps_or_rejects_every_utterance(tmp_path):
    data, exp, out = tmp_path / "data", tmp_path / "exp", tmp_path / "out" / "st"
    labeled = [_utt(f"tr{i}", "एकः द्वौ त्रयः चत्वारः", 2.0 + 0.1 * i, "train") for i in range(20)]
    write_jsonl(data / "train.jsonl", labeled)
    unlabeled = [
        _utt("u_ok", "the reference text is never read", 2.0, "dev"),
        _utt("u_empty", "", 2.0, "dev"),
        _utt("u_loop", "", 3.0, "dev"),
        _utt("u_missing", "", 2.0, "dev"),
        _utt("u_truncated", "", 12.0, "dev"),
        _utt("tr3", "", 2.0, "dev"),  # already labeled
    ]
    write_jsonl(data / "dev.jsonl", unlabeled)
    write_hyps(exp / "dev.jsonl", [
        Hypothesis("u_ok", "एकः, द्वौ।"),  # normalized like the references: punctuation goes
        Hypothesis("u_empty", ""),
        Hypothesis("u_loop", "का का का का का"),
        Hypothesis("u_truncated", "एकः"),
        Hypothesis("tr3", "एकः"),
    ])  # fmt: skip

    rc = main(["pseudo-label", "--labeled", str(data / "train.jsonl"), "--unlabeled", str(data / "dev.jsonl"),
               "--hyps", str(exp / "dev.jsonl"), "--out", str(out), "--lang", "sa"])  # fmt: skip
    assert rc == 0
    rows = read_manifest(out / "train.jsonl")
    assert [u.id for u in rows] == [u.id for u in labeled] + ["u_ok"]
    added = rows[-1]
    assert added.text == "एकः द्वौ" and "pseudo_label" in added.flags and added.split == "train"
    # Audio paths still point at the same files from the new directory.
    assert os.path.normpath(out / added.audio) == os.path.normpath(data / "cache" / "u_ok.flac")
    assert os.path.normpath(out / rows[0].audio) == os.path.normpath(data / "cache" / "tr0.flac")
    reasons = {r.id: r.reason for r in read_rejects(out / "rejects.jsonl")}
    assert reasons == {"u_empty": "empty_hypothesis", "u_loop": "repetition_loop", "u_missing": "no_hypothesis",
                       "u_truncated": "implausible_rate", "tr3": "duplicate_id"}  # fmt: skip
    rejects = read_rejects(out / "rejects.jsonl")
    assert all(r.source.file == str(data / "dev.jsonl") and r.source.line >= 1 for r in rejects)
    summary = json.loads((out / "pseudo_label.json").read_text())
    assert summary["accepted"] == 1 and summary["rejected"] == 5 and summary["labeled"] == 20

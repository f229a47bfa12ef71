"""Scoring: hand-checked S/D/I counts, WER/CER (incl. Devanagari matras), missing and unknown hypotheses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.manifest import Utterance, write_jsonl
from pipeline.decode.hyps import Hypothesis, write_hyps
from pipeline.score.metrics import Counts, align_chars, align_words
from pipeline.score.results import read_results
from pipeline.score.scorer import ScoreError, infer_kind, infer_system, score, score_utterances

REPO = Path(__file__).resolve().parents[1]


def utt(uid: str, text: str, speaker: str = "s1", lang: str = "sa", duration: float = 2.0) -> Utterance:
    return Utterance(id=uid, audio=f"{uid}.flac", duration=duration, text=text, speaker=speaker, language=lang)


def test_word_counts_hand_checked():
    w = align_words(["the cat sat on the mat", "a b c d"], ["the cat sit on the mat today", "a c d"])
    assert w.counts() == [Counts(sub=1, dele=0, ins=1, hit=5), Counts(sub=0, dele=1, ins=0, hit=3)]


def test_cer_keeps_spaces_as_characters():
    c = align_chars(["ab cd"], ["abcd"])
    assert c.counts() == [Counts(sub=0, dele=1, ins=0, hit=4)]
    assert c.counts()[0].rate == pytest.approx(1 / 5)
    # The same merge costs a substitution and a deletion at word level.
    assert align_words(["ab cd"], ["abcd"]).counts() == [Counts(sub=1, dele=1, ins=0, hit=0)]


def test_devanagari_matra_is_one_code_point():
    # कि = क + ि ; का = क + ा : one substitution out of two characters.
    assert align_chars(["कि"], ["का"]).counts() == [Counts(sub=1, dele=0, ins=0, hit=1)]


def test_score_utterances_sanskrit_with_missing_hypothesis():
    utts = [utt("u1", "रामः वनं गच्छति", "s1"), utt("u2", "अहं", "s2"), utt("u3", "कि", "s2")]
    hyps = {
        "u1": Hypothesis("u1", "रामः वने गच्छति।", seconds=1.0),  # danda removed by the sa normalizer
        "u3": Hypothesis("u3", "का", seconds=0.5),
    }
    r = score_utterances(utts, hyps, "sa", system="zs", kind="zeroshot", testset="test", n_resamples=50).results
    # u1: words S=1 (वनं->वने) H=2; chars ं->े: S=1 over 15 chars.
    # u2: missing -> 1 word and 3 chars (अ ह ं) deleted.  u3: words S=1; chars S=1 H=1.
    assert r.word == Counts(sub=2, dele=1, ins=0, hit=2)
    assert r.char == Counts(sub=2, dele=3, ins=0, hit=15)
    assert r.wer == pytest.approx(3 / 5)
    assert r.cer == pytest.approx(5 / 20)
    assert r.ser == pytest.approx(1.0)
    assert (r.n_utts, r.n_missing, r.missing_ids) == (3, 1, ["u2"])
    assert [(u.id, u.ref_words, u.word_errors, u.ref_chars, u.char_errors, u.missing) for u in r.utts] == [
        ("u1", 3, 1, 15, 1, False), ("u2", 1, 1, 3, 3, True), ("u3", 1, 1, 2, 1, False)]
    spk = {s.speaker: s for s in r.per_speaker}
    assert spk["s2"].n_utts == 2 and spk["s2"].n_missing == 1 and spk["s2"].wer == pytest.approx(1.0)
    # RTF over decoded audio only (u2 was not decoded): 1.5 s / 4 s.
    assert r.decode_seconds == pytest.approx(1.5) and r.audio_seconds == pytest.approx(4.0)
    assert r.rtf == pytest.approx(0.375)


def test_english_normalization_applies_to_hypothesis():
    utts = [utt("a", "the cat sat on the mat", lang="en"), utt("b", "a b c d", lang="en")]
    hyps = {"a": Hypothesis("a", "The cat sit on the mat, today!"), "b": Hypothesis("b", "A c d")}
    r = score_utterances(utts, hyps, "en", system="x", kind="other", testset="t", n_resamples=20).results
    assert r.word == Counts(sub=1, dele=1, ins=1, hit=8)
    assert r.wer == pytest.approx(3 / 10)
    assert r.ser == pytest.approx(1.0)
    assert r.rtf is None and r.decode_seconds is None


def test_perfect_hypotheses_score_zero():
    utts = [utt("a", "एषः कः"), utt("b", "एषः चषकः")]
    hyps = {u.id: Hypothesis(u.id, u.text + "।") for u in utts}
    r = score_utterances(utts, hyps, "sa", system="x", kind="other", testset="t", n_resamples=20).results
    assert (r.wer, r.cer, r.ser) == (0.0, 0.0, 0.0)
    assert (r.wer_ci.low, r.wer_ci.high) == (0.0, 0.0)


def _write_inputs(tmp_path: Path, hyps: list[dict]) -> tuple[Path, Path]:
    manifest = tmp_path / "data" / "test.jsonl"
    write_jsonl(manifest, [utt("u1", "रामः वनं गच्छति"), utt("u2", "अहं")])
    hyp_path = tmp_path / "exp" / "sa" / "zeroshot" / "test" / "hyps.jsonl"
    write_jsonl(hyp_path, hyps)
    return manifest, hyp_path


def test_unknown_hypothesis_id_names_file_and_line(tmp_path):
    manifest, hyp_path = _write_inputs(tmp_path, [{"id": "u1", "text": "x"}, {"id": "nope", "text": "y"}])
    with pytest.raises(ScoreError, match=rf"{hyp_path}:2: hypothesis id 'nope' is not in the manifest"):
        score(manifest, hyp_path)


def test_duplicate_hypothesis_id_is_an_error(tmp_path):
    manifest, hyp_path = _write_inputs(tmp_path, [{"id": "u1", "text": "x"}, {"id": "u1", "text": "y"}])
    with pytest.raises(ScoreError, match=r":2: duplicate hypothesis id 'u1' \(first at line 1\)"):
        score(manifest, hyp_path)


def test_mixed_language_manifest_needs_lang(tmp_path):
    manifest = tmp_path / "m.jsonl"
    write_jsonl(manifest, [utt("a", "x", lang="sa"), utt("b", "y", lang="hi")])
    hyps = tmp_path / "h.jsonl"
    write_hyps(hyps, [Hypothesis("a", "x")])
    with pytest.raises(ScoreError, match="pass --lang"):
        score(manifest, hyps)


def test_defaults_from_layout():
    assert infer_system("exp/sa/zeroshot/test/hyps.jsonl", "test") == "zeroshot"
    assert infer_system("exp/sa/ft-lora/hyps.jsonl", "test") == "ft-lora"
    assert [infer_kind(s) for s in ("zeroshot", "zero-shot", "scratch-small", "ft-lora", "finetune1", "bigrun")] == [
        "zeroshot", "zeroshot", "scratch", "finetuned", "finetuned", "other"]


def test_cli_writes_outputs_without_importing_torch(tmp_path):
    manifest, hyp_path = _write_inputs(tmp_path, [{"id": "u1", "text": "रामः वने गच्छति", "seconds": 0.5}])
    code = (
        "import sys; from pipeline.cli import main; "
        f"rc = main(['score', '--manifest', {str(manifest)!r}, '--hyps', {str(hyp_path)!r}, '--bootstrap', '100']); "
        "assert 'torch' not in sys.modules, 'score imported torch'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "zeroshot (zeroshot) on test [sa]: 2 utts, 1 missing" in proc.stdout
    out = hyp_path.parent
    for name in ("results.json", "alignments.txt", "per_speaker.tsv", "errors.md"):
        assert (out / name).is_file(), name
    r = read_results(out / "results.json")
    assert (r.system, r.kind, r.testset, r.lang, r.n_missing) == ("zeroshot", "zeroshot", "test", "sa", 1)
    assert r.word == Counts(sub=1, dele=1, ins=0, hit=2)
    raw = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert raw["wer"] == pytest.approx(0.5) and raw["bootstrap"] == {"n_resamples": 100, "seed": 0}
    tsv = (out / "per_speaker.tsv").read_text(encoding="utf-8").splitlines()
    assert tsv[1].split("\t")[:5] == ["s1", "2", "1", "4", "0.5000"]


def test_cli_error_exit_code(tmp_path, capsys):
    from pipeline.cli import main

    manifest, hyp_path = _write_inputs(tmp_path, [{"id": "zz", "text": "x"}])
    assert main(["score", "--manifest", str(manifest), "--hyps", str(hyp_path)]) == 1
    assert "hypothesis id 'zz' is not in the manifest" in capsys.readouterr().err


def test_normalizer_name_comes_from_prepare_json(tmp_path):
    manifest = tmp_path / "test.jsonl"
    write_jsonl(manifest, [utt("a", "ikk do tinn", lang="pa")])
    hyps = tmp_path / "exp" / "pa" / "ft" / "test" / "hyps.jsonl"
    write_hyps(hyps, [Hypothesis("a", "Ikk do, tinn")])
    (tmp_path / "prepare.json").write_text(json.dumps({"process": {"rules": "pa-Latn", "language": "pa"}}))
    r = score(manifest, hyps, n_resamples=10)
    assert r.lang == "pa-Latn" and r.wer == 0.0
    assert score(manifest, hyps, lang="pa", n_resamples=10).lang == "pa"  # --lang overrides


def test_a_degraded_set_is_scored_with_the_rules_of_the_set_it_came_from(tmp_path):
    manifest = tmp_path / "test_telephone" / "test_telephone.jsonl"
    write_jsonl(manifest, [utt("a", "ikk do tinn", lang="pa")])
    hyps = tmp_path / "exp" / "pa" / "ft" / "test_telephone" / "hyps.jsonl"
    write_hyps(hyps, [Hypothesis("a", "Ikk do, tinn")])
    assert score(manifest, hyps, n_resamples=10).lang == "pa"
    (manifest.parent / "degrade.json").write_text(json.dumps({"text_rules": "pa-Latn", "seed": 0}))
    r = score(manifest, hyps, n_resamples=10)
    assert r.lang == "pa-Latn" and r.testset == "test_telephone" and r.system == "ft"

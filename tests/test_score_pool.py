"""``score --pool``: the folds of a leave-one-speaker-out evaluation pooled (pipeline/score/pool.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_prep.manifest import Utterance, write_jsonl
from pipeline.decode.hyps import Hypothesis, write_hyps
from pipeline.score.bootstrap import bootstrap_ci
from pipeline.score.pool import score_pool
from pipeline.score.results import read_results
from pipeline.score.scorer import ScoreError, score
from tests.tree_fixtures import tree_digest

ROOT = Path(__file__).resolve().parents[1]
# fold -> (speaker, [(reference, hypothesis)]): fold1 1 error in 6 words, fold2 2 in 4 words, fold3 none
FOLDS = {
    "fold1": ("spkA", [("ikk do tinn", "ikk do tinn"), ("char panj chhe", "char panj satt")]),
    "fold2": ("spkB", [("satt atth", "satt"), ("nau sifar", "nau do")]),
    "fold3": ("spkC", [("ikk ikk", "ikk ikk"), ("do do", "do do"), ("tinn", "tinn")]),
}


def scored_folds(root: Path, system: str = "whisper_ft", folds=FOLDS) -> list[Path]:
    """Each fold's manifest, hyps and score output, laid out as the recipe lays them out."""
    outs = []
    for name, (spk, pairs) in folds.items():
        data = root / "data" / name
        utts = [Utterance(id=f"{spk}-{i}", audio=f"{i}.flac", duration=1.0, text=ref, speaker=spk, language="en",
                          split="test") for i, (ref, _) in enumerate(pairs)]  # fmt: skip
        write_jsonl(data / "test.jsonl", utts)
        hyps = root / "exp" / name / system / "test" / "hyps.jsonl"
        hyps.parent.mkdir(parents=True)
        write_hyps(hyps, [Hypothesis(u.id, hyp, seconds=0.5) for u, (_, hyp) in zip(utts, pairs)])
        score(data / "test.jsonl", hyps, lang="en", kind="finetuned", n_resamples=200)
        outs.append(hyps.parent)
    return outs


def test_pooled_rates_intervals_and_worst_speaker(tmp_path):
    folds = scored_folds(tmp_path)
    before = tree_digest(tmp_path / "exp")
    pooled = score_pool(folds, tmp_path / "pooled", n_resamples=500, seed=3)
    assert tree_digest(tmp_path / "exp") == before
    r = pooled.results
    assert [f.name for f in pooled.folds] == ["fold1", "fold2", "fold3"]
    assert [round(f.results.wer, 4) for f in pooled.folds] == [round(1 / 6, 4), 0.5, 0.0]
    assert (r.word.errors, r.word.ref_len, r.n_utts) == (3, 15, 7)  # pooled over utterances, not a mean of folds
    assert r.wer == pytest.approx(3 / 15) and r.testset == "pooled" and r.system == "whisper_ft"
    assert r.kind == "finetuned" and r.ser == pytest.approx(3 / 7) and r.decode_seconds == pytest.approx(3.5)
    utts = [u for f in pooled.folds for u in f.results.utts]
    assert r.wer_ci == bootstrap_ci([u.word_errors for u in utts], [u.ref_words for u in utts], n_resamples=500,
                                    seed=3)  # fmt: skip
    assert r.wer_ci.low < r.wer < r.wer_ci.high
    assert pooled.worst_speaker.speaker == "spkB" and pooled.worst_speaker.wer == 0.5
    # results.json in score's schema (report reads it), folds.md and folds.json beside it
    again = read_results(tmp_path / "pooled" / "results.json")
    assert again.wer == r.wer and len(again.utts) == 7 and [s.speaker for s in again.per_speaker] == ["spkA", "spkB",
                                                                                                       "spkC"]
    md = (tmp_path / "pooled" / "folds.md").read_text(encoding="utf-8")
    assert "| fold2 | spkB | 2 | 50.00 [" in md and "| **pooled** | 3 speakers | 7 | 20.00 [" in md
    assert "Worst speaker: spkB (2 utts), WER 50.00 %" in md
    data = json.loads((tmp_path / "pooled" / "folds.json").read_text(encoding="utf-8"))
    assert data["worst_speaker"]["speaker"] == "spkB" and len(data["folds"]) == 3


def test_folds_that_cannot_be_pooled(tmp_path):
    folds = scored_folds(tmp_path)
    with pytest.raises(ScoreError, match="two folds or more"):
        score_pool(folds[:1], tmp_path / "p1")
    other = scored_folds(tmp_path / "b", system="ctc_ft", folds={"fold9": ("spkZ", [("ikk", "ikk")])})
    with pytest.raises(ScoreError, match="pool the folds of one system"):
        score_pool([folds[0], other[0]], tmp_path / "p2")
    with pytest.raises(ScoreError, match="also in"):  # one utterance in two folds' test sets
        score_pool([folds[0], folds[0] / "results.json"], tmp_path / "p3")
    assert not (tmp_path / "p1").exists() and not (tmp_path / "p3").exists()


def test_cli_pool_prints_the_table_and_refuses_mixed_arguments(tmp_path):
    folds = scored_folds(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "pipeline", "score", "--bootstrap", "100"]
    ok = subprocess.run([*base, "--pool", *map(str, folds), "--out", str(tmp_path / "pooled"), "--system", "ft_folds"],
                        capture_output=True, text=True, env=env)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "| **pooled** | 3 speakers | 7 | 20.00 [" in ok.stdout and "# ft_folds: 3 folds pooled" in ok.stdout
    bad = subprocess.run([*base, "--pool", *map(str, folds), "--out", str(tmp_path / "p"), "--manifest", "x.jsonl"],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert bad.returncode == 2 and "--pool" in bad.stderr and not (tmp_path / "p").exists()
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    bad = subprocess.run([*base, "--pool", str(folds[0]), str(broken), "--out", str(tmp_path / "p")],
                         capture_output=True, text=True, env=env)  # fmt: skip
    assert bad.returncode == 2 and str(broken) in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_median_best_step_from_the_folds_training_logs(tmp_path):
    folds = scored_folds(tmp_path)
    logs = {  # fold1: best dev CER at step 20 (a tie at 40 keeps the earlier), fold2 at 40, fold3 no dev: last
        0: [{"step": 10, "dev_cer": 0.3}, {"step": 20, "dev_cer": 0.1}, {"step": 40, "dev_cer": 0.1}],
        1: [{"step": 20, "dev_cer": 0.5}, {"step": 40, "dev_cer": 0.2}, {"step": 60, "dev_cer": 0.4}],
        2: [{"step": 30, "train_loss": 1.0}, {"step": 60, "train_loss": 0.5}],
    }
    for i, records in logs.items():
        (folds[i].parent / "log.jsonl").write_text("".join(json.dumps(o) + "\n" for o in records), encoding="utf-8")
    pooled = score_pool(folds, tmp_path / "pooled", n_resamples=50)
    assert [f.best_step for f in pooled.folds] == [20, 40, 60] and pooled.median_best_step == 40
    assert (tmp_path / "pooled" / "median_best_step").read_text(encoding="utf-8") == "40\n"
    assert "fold1 20, fold2 40, fold3 60; median 40" in (tmp_path / "pooled" / "folds.md").read_text(encoding="utf-8")
    (folds[2].parent / "log.jsonl").unlink()  # a fold without its log: no median, and the old one goes
    assert score_pool(folds, tmp_path / "pooled", n_resamples=50).median_best_step is None
    assert not (tmp_path / "pooled" / "median_best_step").exists()


def test_report_lists_the_pooled_results_beside_single_split_ones(tmp_path):
    from pipeline.report.collect import collect
    from pipeline.report.render import markdown_table

    folds = scored_folds(tmp_path)
    score_pool(folds, tmp_path / "exp_main" / "whisper_ft_folds" / "pooled", system="whisper_ft_folds", n_resamples=50)
    table = markdown_table([x.results for x in collect([tmp_path / "exp_main"])])
    assert "| whisper_ft_folds | finetuned | pooled | en | 7 | 0 | 20.0 [" in table

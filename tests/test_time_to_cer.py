"""The regime race's bookkeeping: log parsing, time to a target CER, ratios (no training here)."""

import argparse
import json

import pytest

from benchmarks import time_to_cer
from benchmarks.time_to_cer import RunResult, compare, first_reaching, markdown, parse_variant, read_log


def test_parse_variant():
    assert parse_variant("cached=") == ("cached", [])
    assert parse_variant("full=train.regime=full,train.trimmed_encoder=false") == (
        "full",
        ["train.regime=full", "train.trimmed_encoder=false"],
    )
    assert parse_variant("sp=augment.speed_perturb=[0.9,1.0,1.1],train.lr=5e-4") == (
        "sp",
        ["augment.speed_perturb=[0.9,1.0,1.1]", "train.lr=5e-4"],
    )
    for bad in ("noequals", "=train.lr=1", "x=train.lr"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)


def test_read_log_weights_samples_per_s_by_steps(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [
        {"step": 10, "samples_per_s": 2.0, "elapsed_s": 5.0, "dev_cer": None},
        {"step": 40, "samples_per_s": 4.0, "elapsed_s": 20.0, "dev_cer": 0.5},
        {"step": 50, "samples_per_s": None, "elapsed_s": 30.0, "dev_cer": 0.3},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elapsed, sps, evals = read_log(log)
    assert elapsed == 30.0
    assert sps == pytest.approx((2.0 * 10 + 4.0 * 30) / 40)
    assert evals == [(40, 20.0, 0.5), (50, 30.0, 0.3)]


def test_time_to_target_counts_setup_and_first_crossing():
    r = RunResult(
        "a",
        [],
        wall_s=100.0,
        train_s=80.0,
        samples_per_s=1.0,
        evals=[(10, 20.0, 0.6), (20, 40.0, 0.4), (30, 60.0, 0.45)],
    )
    assert r.setup_s == 20.0
    assert r.time_to(0.5) == 20.0 + 40.0
    assert r.time_to(0.4) == 60.0
    assert r.time_to(0.3) is None
    assert r.best_cer == 0.4


def test_compare_default_target_is_worst_best_and_ratios_against_first():
    fast = RunResult(
        "cached", [], wall_s=50.0, train_s=40.0, samples_per_s=10.0, evals=[(10, 20.0, 0.5), (20, 40.0, 0.3)]
    )
    slow = RunResult(
        "full",
        ["train.regime=full"],
        wall_s=500.0,
        train_s=495.0,
        samples_per_s=2.0,
        evals=[(10, 200.0, 0.6), (20, 400.0, 0.4)],
    )
    target, rows = compare([fast, slow])
    assert target == 0.4
    assert rows[0]["time_to_target_s"] == 10.0 + 40.0 and rows[0]["time_ratio_vs_baseline"] == 1.0
    assert rows[1]["time_to_target_s"] == 5.0 + 400.0
    assert rows[1]["time_ratio_vs_baseline"] == pytest.approx(405.0 / 50.0, abs=0.01)
    assert rows[1]["speed_ratio_vs_baseline"] == 5.0
    # A target the slow run never reaches: its whole wall time, shown as a lower bound.
    target, rows = compare([fast, slow], target=0.35)
    assert not rows[1]["reached"] and rows[1]["time_to_target_s"] == 500.0
    assert ">= 10.0" in markdown(target, rows)


def test_first_reaching_finds_the_first_evaluation_at_or_below_the_target(tmp_path):
    log = tmp_path / "log.jsonl"
    assert first_reaching(log, 0.5) is None  # no log yet
    rows = [{"step": 10, "dev_cer": None}, {"step": 20, "dev_cer": 0.6}, {"step": 40, "dev_cer": 0.5}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert first_reaching(log, 0.5) == 40
    assert first_reaching(log, 0.7) == 20
    assert first_reaching(log, 0.4) is None


FAKE_TRAIN = """
import json, sys, time
from pathlib import Path
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
out = Path(args["output_dir"]); out.mkdir(parents=True)
start = time.time(); time.sleep(0.5)
cer = float(args.get("train.lr", "0.5"))
rows = [{"step": 10, "elapsed_s": 1.0, "samples_per_s": 4.0, "dev_cer": cer + 0.1, "dev_wer": 0.9},
        {"step": 20, "elapsed_s": 2.0, "samples_per_s": 4.0, "dev_cer": cer, "dev_wer": 0.7}]
(out / "log.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in rows))
(out / "span.json").write_text(json.dumps([start, time.time()]))
"""


@pytest.mark.parametrize("parallel", [1, 3])
def test_variants_run_at_most_parallel_at_once_and_report_dev_wer(tmp_path, monkeypatch, parallel):
    import subprocess
    import sys

    real_popen = subprocess.Popen

    def fake_popen(cmd):  # ["python", "-m", "pipeline", "train", ...overrides]: a trainer that only logs
        return real_popen([sys.executable, "-c", FAKE_TRAIN, *cmd[4:]])

    monkeypatch.setattr(time_to_cer.subprocess, "Popen", fake_popen)
    monkeypatch.setattr(time_to_cer, "POLL_S", 0.05)
    variants = [("a", ["train.lr=0.3"]), ("b", ["train.lr=0.2"]), ("c", ["train.lr=0.4"])]
    results = time_to_cer.run_variants("cfg.yaml", tmp_path, variants, threads=1, parallel=parallel)
    assert [r.name for r in results] == ["a", "b", "c"]
    assert [r.best_cer for r in results] == pytest.approx([0.3, 0.2, 0.4])
    assert all(r.best_wer == 0.7 for r in results)
    spans = sorted(json.loads((tmp_path / n / "span.json").read_text()) for n, _ in variants)
    overlaps = sum(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
    assert overlaps == (0 if parallel == 1 else 2)
    target, rows = compare(results)
    table = markdown(target, rows, parallel)
    assert "| b | 4.0 |" in table and "70.0 %" in table
    assert ("shared the machine" in table) == (parallel > 1)


def test_overlapping_runs_get_their_own_cache(tmp_path):
    own, common = ["train.lr=1e-4"], ["train.eval_every=200"]
    assert time_to_cer.full_overrides(tmp_path, "a", own, common, 1) == common + own
    assert time_to_cer.full_overrides(tmp_path, "a", own, common, 4) == [
        f"train.cache_dir={tmp_path / 'a' / 'encoder_cache'}", *common, *own
    ]

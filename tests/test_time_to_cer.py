"""The regime race's bookkeeping: log parsing, time to a target CER, ratios (no training here)."""

import argparse
import json

import pytest

from pipeline.train.time_to_cer import RunResult, compare, first_reaching, markdown, parse_variant, read_log


def test_parse_variant():
    assert parse_variant("cached=") == ("cached", [])
    assert parse_variant("full=train.regime=full,train.trimmed_encoder=false") == (
        "full",
        ["train.regime=full", "train.trimmed_encoder=false"],
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

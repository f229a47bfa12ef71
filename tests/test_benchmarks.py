"""The benchmark scripts: each runs from the repository root, and their tables come out right
on tiny inputs (no real model, no corpus)."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest

import benchmarks
from pipeline.rescore.candidates import Candidate, NBest, write_nbest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__))


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_prints_its_help(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    assert f"python -m benchmarks.{name}" in capsys.readouterr().out


def test_the_package_lists_every_script():
    assert SCRIPTS and all(f"python -m benchmarks.{name} " in benchmarks.__doc__ for name in SCRIPTS)


def test_the_product_never_imports_benchmarks():
    importing = re.compile(r"^\s*(from|import)\s+benchmarks\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for package in ("pipeline", "data_prep")
                 for p in (ROOT / package).rglob("*.py") if importing.search(p.read_text(encoding="utf-8"))]  # fmt: skip
    assert offenders == []


def _cand(text: str, rank: int | None, att: float, lm: float | None = None, clm: float | None = None) -> Candidate:
    return Candidate(text=text, source="beam", att=att, lm=lm, clm=clm, words=len(text.split()), rank=rank)


def _write_dev(tmp_path: Path, refs: list[str]) -> Path:
    from data_prep.manifest import Utterance, write_jsonl

    path = tmp_path / "dev.jsonl"
    write_jsonl(path, [Utterance(id=f"u{i}", audio=f"{i}.flac", duration=1.0, text=t, language="sa")
                       for i, t in enumerate(refs)])  # fmt: skip
    return path


def test_split_half_finds_a_weighting_that_beats_the_search_pick_on_every_held_out_half(tmp_path, capsys):
    from benchmarks.split_half import main

    # the search's pick (rank 0) is wrong everywhere; the word LM prefers the right text
    refs = ["ab ba", "ba ab", "aab bb", "bb aab", "ab ab", "ba ba"]
    nbests = [NBest(f"u{i}", [_cand("x " + r, 0, -1.0, lm=-5.0), _cand(r, 1, -2.0, lm=-1.0)])
              for i, r in enumerate(refs)]  # fmt: skip
    write_nbest(tmp_path / "nbest.jsonl", nbests)
    args = ["--nbest", str(tmp_path / "nbest.jsonl"), "--manifest", str(_write_dev(tmp_path, refs)), "--splits", "5"]
    assert main(args) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    splits, picked, mean, worse, better = (cell.strip() for cell in row.strip("|").split("|"))
    assert (splits, picked, worse, better) == ("5", "0", "0", "5") and float(mean) < 0


def test_mbr_picks_the_consensus_and_prior_zero_is_the_search_pick(tmp_path, capsys):
    from benchmarks.mbr import main

    refs = ["ab bb"]
    nbests = [NBest("u0", [_cand("ab ba", 0, -1.0), _cand("ab bb", 1, -1.1), _cand("ab bb", 2, -1.2),
                           _cand("ba ba", None, -3.0)])]  # fmt: skip
    write_nbest(tmp_path / "nbest.jsonl", nbests)
    assert main(["--nbest", str(tmp_path / "nbest.jsonl"), "--manifest", str(_write_dev(tmp_path, refs)),
                 "--priors", "1.0"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2].startswith("| the search's pick | 50.00 | 20.00 |")
    assert lines[3] == "| MBR, prior 1 | 0.00 | 0.00 |"


def test_weights_grid_shows_the_pick_the_best_points_and_the_choice(tmp_path, capsys):
    from benchmarks.weights_grid import main

    def point(wer, cer, beam_pick=False, char_bonus=0.0, lm_weight=0.0):
        return {"ctc_weight": 0.0, "lm_weight": lm_weight, "word_bonus": 0.0, "char_lm_weight": 0.3,
                "beam_pick": beam_pick, "char_bonus": char_bonus, "wer": wer, "cer": cer}  # fmt: skip

    grid = [point(0.48, 0.128, beam_pick=True), point(0.479, 0.1267, lm_weight=0.3),
            point(0.477, 0.1259, lm_weight=0.3, char_bonus=0.5), point(0.50, 0.13, char_bonus=1.0)]
    tuned = {**{k: v for k, v in grid[2].items() if k not in ("wer", "cer")}, "dev_wer": 0.477, "dev_cer": 0.1259,
             "metric": "cer", "held_out": [0.1268, 0.1279], "grid": grid}  # fmt: skip
    (tmp_path / "weights.json").write_text(json.dumps(tuned))
    assert main([str(tmp_path / "weights.json")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1] == "| the search's pick | 48.00 | 12.80 | the search's pick |  |"
    assert rows[2] == "| best weighting, no char bonus | 47.90 | 12.67 | lm_weight 0.3, char_lm_weight 0.3 |  |"
    assert rows[3].startswith("| best weighting | 47.70 | 12.59 | lm_weight 0.3, char_lm_weight 0.3, char_bonus 0.5")
    assert rows[4].endswith("| 12.68 vs 12.79 |")


def test_ablation_table_names_the_search_pick_and_the_weights_that_count():
    from benchmarks.rescore_ablation import table

    rows = [{"scores": "decoder's first choice", "wer": 0.5, "cer": 0.25},
            {"scores": "all", "wer": 0.25, "cer": 0.125, "weights": {"lm_weight": 0.5, "ctc_weight": 0.0}},
            {"scores": "+ ctc", "wer": 0.5, "cer": 0.25, "weights": {"beam_pick": True, "lm_weight": 0.0}}]
    assert table(rows).splitlines()[2:] == ["| decoder's first choice | 50.00 | 25.00 |  |",
                                           "| all | 25.00 | 12.50 | lm_weight 0.5 |",
                                           "| + ctc | 50.00 | 25.00 | the search's pick |"]  # fmt: skip


def test_vocab_steps_table_puts_whisper_first_with_ratio_one():
    from benchmarks.vocab import steps_table

    one = {"s_per_step": 2.0, "steps": 10, "label_tokens_per_utt": 40.0, "vocab_rows": 51865, "trainable_params": 5e7}
    result = {"whisper": one, "bpe": {**one, "s_per_step": 1.0, "vocab_rows": 1908}, "bpe_over_whisper": 0.5}
    assert steps_table(result).splitlines()[2:] == ["| whisper | 2.0 | 1.00 | 40.0 | 51,865 | 50.0 M |",
                                                   "| bpe | 1.0 | 0.50 | 40.0 | 1,908 | 50.0 M |"]  # fmt: skip


@pytest.mark.usefixtures("one_torch_thread")
def test_decode_speed_times_greedy_and_beam_on_the_same_clips(tmp_path, capsys):
    from benchmarks.decode_speed import main
    from pipeline.testing.tiny import save_tiny_whisper, write_tiny_corpus

    model = save_tiny_whisper(tmp_path / "model", seed=2)
    data = write_tiny_corpus(tmp_path / "data", n_train=1, n_dev=2)
    assert main(["--model", str(model), "--manifest", str(data / "dev.jsonl"), "--beams", "1,2",
                 "--repeats", "1", "--batch-size", "2"]) == 0  # fmt: skip
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[2].startswith("| greedy |") and rows[2].endswith("| 1.00 | 0 |")
    assert rows[3].startswith("| beam 2 |")


def test_load_speed_reads_every_utterance_of_each_manifest(tmp_path, capsys):
    from benchmarks.load_speed import main
    from pipeline.testing.tiny import write_tiny_corpus

    data = write_tiny_corpus(tmp_path / "data", n_train=3, n_dev=1)
    assert main([str(data / "train.jsonl"), str(data / "dev.jsonl"), "--repeats", "2"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == [f"| {data / 'train.jsonl'}", f"| {data / 'dev.jsonl'}"]
    assert rows[0].endswith(("| 1.00 |", "| - |")) and all(len(r.split(" | ")[2].split(", ")) == 2 for r in rows)


def test_longform_recordings_and_boundary_shares():
    from benchmarks.longform import Placed, boundary_shares, split_in_recordings

    runs = split_in_recordings([5.0] * 300, minutes=10, pause_mean=0.5)
    assert len(runs) == 2 and runs[0].start == 0 and runs[-1].stop == 300 and runs[0].stop == runs[1].start
    assert abs(len(runs[0]) - len(runs[1])) <= 1
    assert split_in_recordings([5.0] * 10, minutes=10, pause_mean=0.5) == [range(0, 10)]
    placed = [Placed("r", "a", 0.0, 2.0, 0.6), Placed("r", "b", 2.6, 5.0, 0.4), Placed("r", "c", 5.4, 7.0, 0.0)]
    # segment edges: near a's start and end, inside b only, near c's start and end
    segments = {"r": [(0.1, 1.9), (3.8, 4.0), (5.8, 6.9)]}
    junctions, starts, ends = boundary_shares(placed, segments, tol=0.5)
    assert junctions == 0.5  # a|b at 2.3 (1.9 is 0.4 away) found; b|c at 5.2 (5.8 is 0.6 away) not
    assert starts == 2 / 3 and ends == 2 / 3  # b's start and end have no segment edge near them


def test_align_boundaries_measures_cuts_against_the_pause_and_the_silence_between_the_speech():
    from benchmarks.align_boundaries import Cut, Truth, cut_inside_lines, recovered

    # clip 1 ends its speech 0.8 s before its end (a long trailing silence), clip 2 starts at once:
    # the pause put between them is centred at 10.25, the silence between their speech at 9.85
    truth = {"r": Truth(bounds=[10.25], speech_bounds=[9.85])}
    spans = {"r": [Cut(0.0, 9.3, 1, False), Cut(10.4, 15.0, 2, False), Cut(15.5, 18.0, 2, False)]}
    assert recovered(truth, spans).round(2).tolist() == [0.4]  # the cut at 9.85 is 0.4 s off the pause's middle
    assert recovered(truth, spans, speech=True).round(2).tolist() == [0.0]
    assert cut_inside_lines(spans) == 1  # the third segment starts inside line 2


def test_swap_dev_test_swaps_the_manifests_and_repeats_the_recorded_search(tmp_path):
    from benchmarks.swap_dev_test import rescore_args, swap_manifests
    from data_prep.manifest import read_manifest, write_jsonl
    from pipeline.testing.tiny import write_tiny_corpus

    data = write_tiny_corpus(tmp_path / "data")
    write_jsonl(data / "test.jsonl", read_manifest(data / "train.jsonl")[:2])  # a test split of its own
    swap_manifests(data, tmp_path / "work" / "swapped")
    swapped = {s: read_manifest(tmp_path / "work" / "swapped" / f"{s}.jsonl") for s in ("dev", "test")}
    assert [u.id for u in swapped["dev"]] == [u.id for u in read_manifest(data / "test.jsonl")]
    assert [u.id for u in swapped["test"]] == [u.id for u in read_manifest(data / "dev.jsonl")]
    assert all(u.audio_path(tmp_path / "work" / "swapped").is_file() for u in swapped["dev"] + swapped["test"])
    record = {"models": ["m"], "ctc": "c", "lm": "l", "char_lm": None, "language": None, "beams": 4, "nbest": 4,
              "ctc_proposals": 4, "batch_size": 8, "fusion": {"weight": 0.5, "bonus": 1.0, "top_k": 128,
              "length_penalty": 0.0, "rate_from": "train.jsonl", "rate_margin": 1.25}}  # fmt: skip
    args = rescore_args(record)
    assert args[args.index("--ctc") + 1] == "c" and "--char-lm" not in args and "--language" not in args
    assert args[args.index("--fusion-rate-from") + 1] == "train.jsonl" and args[args.index("--beams") + 1] == "4"

"""The Sanskrit run.sh wires its stages together: which model each stage reads and which system it writes.

The recipe runs in a copy of its files with a fake interpreter (``PY``) that records
every ``python -m pipeline`` call instead of running it, so the test checks the data
flow of all nine stages in a second, without models or corpora.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


#: Switches the wiring tests turn off unless given: most tests predate them as defaults (CTC=1, and
#: stages 11-13) and check the decoder-only variant of stages 1-10.
OFF_UNLESS_GIVEN = ("CTC", "SCRATCH", "SOURCE", "SHIFT")


def run_recipe(tmp_path: Path, *args: str, **env: str | None) -> list[list[str]]:
    """The recipe's calls. The switches of :data:`OFF_UNLESS_GIVEN` are 0 unless given; ``CTC=None``
    (``SCRATCH=None`` ...) runs the recipe's own default."""
    env = {k: v for k, v in {**dict.fromkeys(OFF_UNLESS_GIVEN, "0"), **env}.items() if v is not None}
    base = {k: v for k, v in os.environ.items() if k not in OFF_UNLESS_GIVEN}
    for rel in ("recipes/sanskrit/run.sh", "recipes/lib/stages.sh", "recipes/lib/shift.sh"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)  # a second run in the same tree records only its own calls
    fake = tmp_path / "fake_python"
    # One write per call: stages that run dev and test at once append to the log concurrently,
    # and a call written piecewise (each argument, then the newline) could interleave with another.
    fake.write_text(f'#!/usr/bin/env bash\nline=$(printf "%s\\t" "$@")\nprintf "%s\\n" "$line" >> "{log}"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    r = subprocess.run(["bash", str(tmp_path / "recipes/sanskrit/run.sh"), *args], capture_output=True, text=True,
                       env={**base, "PY": str(fake), **env})  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [line.rstrip("\t").split("\t") for line in log.read_text().splitlines()]


def calls_of(calls: list[list[str]], command: str) -> list[list[str]]:
    return [c for c in calls if c[:3] == ["-m", "pipeline", command]]


def arg(call: list[str], flag: str) -> str:
    return call[call.index(flag) + 1]


def test_self_training_reads_stage_6_and_feeds_stage_8(tmp_path):
    calls = run_recipe(tmp_path, SEEDS="1")
    (pl,) = calls_of(calls, "pseudo-label")
    assert pl[pl.index("--hyps") + 1 : pl.index("--hyps") + 3] == [
        "exp/sa/whisper_lm/dev/hyps.jsonl", "exp/sa/whisper_lm/test/hyps.jsonl"]  # fmt: skip
    assert pl[pl.index("--unlabeled") + 1 : pl.index("--unlabeled") + 3] == [
        "data/sa/dev.jsonl",
        "data/sa/test.jsonl",
    ]
    assert "--force" in pl  # another variant's labels replace the last one's (its stage 7 has its own marker)
    first, selftrain = calls_of(calls, "train")
    assert "recipes/sanskrit/config.yaml" in first
    assert "model.name=exp/sa/whisper_ft/best" in selftrain
    assert f"data.train={arg(pl, '--out')}/train.jsonl" in selftrain
    assert "output_dir=exp/sa/whisper_st" in selftrain
    rescored = {arg(c, "--out") for c in calls_of(calls, "rescore")}
    assert {"exp/sa/whisper_lm/dev/hyps.jsonl", "exp/sa/whisper_st_lm/test/hyps.jsonl"} <= rescored
    st_rescores = [c for c in calls_of(calls, "rescore") if "whisper_st_lm" in arg(c, "--out")]
    assert st_rescores and all(arg(c, "--model") == "exp/sa/whisper_st/best" for c in st_rescores)
    assert calls.index(pl) < calls.index(selftrain) < calls.index(st_rescores[0])
    assert (tmp_path / "exp/sa/.done/stage9.report").exists()


def test_ctc_nbest_and_no_selftrain_variants(tmp_path):
    calls = run_recipe(tmp_path / "ctc", CTC="1", SEEDS="1")
    (pl,) = calls_of(calls, "pseudo-label")
    assert "exp/sa/whisper_ctc_lm/dev/hyps.jsonl" in pl  # labels from the best system of stage 6
    st_rescores = [c for c in calls_of(calls, "rescore") if "whisper_st_ctc_lm" in arg(c, "--out")]
    assert st_rescores and all(arg(c, "--ctc") == "exp/sa/ctc_st/best" for c in st_rescores)
    # Other pseudo-labels, so another self-trained system than CTC=0's whisper_st: a CTC=1 run
    # after a CTC=0 run in one exp/sa trains its own instead of resuming the finished one.
    (selftrain,) = [c for c in calls_of(calls, "train") if "recipes/sanskrit/config_selftrain.yaml" in c]
    assert "output_dir=exp/sa/whisper_st_ctc" in selftrain
    assert all(arg(c, "--model") == "exp/sa/whisper_st_ctc/best" for c in st_rescores)
    assert all(arg(c, "--model") == "exp/sa/whisper_st_ctc/best" for c in calls_of(calls, "decode")[-2:])

    calls = run_recipe(tmp_path / "nbest8", NBEST="8", SEEDS="1")
    assert all(arg(c, "--beams") == "8" == arg(c, "--nbest") for c in calls_of(calls, "rescore"))

    calls = run_recipe(tmp_path / "plain", SELFTRAIN="0", SEEDS="1")
    assert not calls_of(calls, "pseudo-label") and len(calls_of(calls, "train")) == 1
    assert not list((tmp_path / "plain/exp/sa/.done").glob("stage7.*"))


def test_by_default_the_ctc_system_trains_and_joins_stages_6_and_8(tmp_path):
    calls = run_recipe(tmp_path, CTC=None)
    ctc_train = [c for c in calls_of(calls, "train") if "recipes/sanskrit/config_ctc.yaml" in c]
    assert len(ctc_train) == 1 and "output_dir=exp/sa/ctc_ft" in ctc_train[0]
    rescores = calls_of(calls, "rescore")
    assert calls.index(ctc_train[0]) < calls.index(rescores[0])
    assert {arg(c, "--out").split("/")[2] for c in rescores} == {"whisper_soup2_ctc_lm", "whisper_st_soup2_ctc_lm"}
    stage6 = [c for c in rescores if "/whisper_soup2_ctc_lm/" in arg(c, "--out")]
    stage8 = [c for c in rescores if "/whisper_st_soup2_ctc_lm/" in arg(c, "--out")]
    assert all(arg(c, "--ctc") == "exp/sa/ctc_ft/best" for c in stage6)
    (pl,) = calls_of(calls, "pseudo-label")
    assert "exp/sa/whisper_soup2_ctc_lm/dev/hyps.jsonl" in pl
    # Stage 7 self-trains both systems on the pseudo-labels; stage 8 rescores with the self-trained CTC system
    st_decoder = [c for c in calls_of(calls, "train") if "recipes/sanskrit/config_selftrain.yaml" in c]
    (st_ctc,) = [c for c in calls_of(calls, "train") if "recipes/sanskrit/config_ctc_selftrain.yaml" in c]
    assert len(st_decoder) == 1 and "output_dir=exp/sa/whisper_st_soup2_ctc" in st_decoder[0]
    assert "model.name=exp/sa/ctc_ft/best" in st_ctc and "output_dir=exp/sa/ctc_st" in st_ctc
    assert f"data.train={arg(pl, '--out')}/train.jsonl" in st_ctc
    assert calls.index(pl) < calls.index(st_ctc) < calls.index(stage8[0])
    assert stage8 and all(arg(c, "--ctc") == "exp/sa/ctc_st/best" for c in stage8)
    assert all(arg(c, "--beams") == "4" == arg(c, "--nbest") for c in stage6)  # NBEST
    assert all(arg(c, "--beams") == "8" == arg(c, "--nbest") for c in stage8)  # ST_NBEST: the final system's
    lm, lm_st = calls_of(calls, "lm")  # the LM's CTC weights tuned on dev again for the self-trained CTC system
    assert arg(lm_st, "--model") == "exp/sa/ctc_st/best" and arg(lm_st, "--out") == "exp/sa/lm_st"
    assert arg(lm_st, "--config") == "recipes/sanskrit/config_ctc.yaml"  # the train text, not the pseudo-labels
    assert all(arg(c, "--lm") == "exp/sa/lm" for c in stage6) and all(arg(c, "--lm") == "exp/sa/lm_st" for c in stage8)
    assert calls.index(st_ctc) < calls.index(lm_st) < calls.index(stage8[0])
    assert arg(lm, "--model") == "exp/sa/ctc_ft/best"  # stage 6's LM: tuned with stage 5's CTC system


def test_two_seeds_train_rescore_and_selftrain_as_an_ensemble(tmp_path):
    calls = run_recipe(tmp_path, SEEDS="2", SOUP="0")
    trains = calls_of(calls, "train")
    assert [(arg(c, "--config"), c[-2:]) for c in trains] == [
        ("recipes/sanskrit/config.yaml", ["output_dir=exp/sa/whisper_ft", "train.seed=0"]),
        ("recipes/sanskrit/config.yaml", ["output_dir=exp/sa/whisper_ft_s1", "train.seed=1"]),
        ("recipes/sanskrit/config_selftrain.yaml", ["output_dir=exp/sa/whisper_st_x2", "train.seed=0"]),
        ("recipes/sanskrit/config_selftrain.yaml", ["output_dir=exp/sa/whisper_st_x2_s1", "train.seed=1"]),
    ]  # fmt: skip
    assert "model.name=exp/sa/whisper_ft_s1/best" in trains[3]  # each seed self-trains its own decoder
    (pl,) = calls_of(calls, "pseudo-label")
    assert "exp/sa/whisper_x2_lm/dev/hyps.jsonl" in pl  # labels from the ensemble
    assert calls.index(pl) < calls.index(trains[2])

    def models(c: list[str]) -> list[str]:
        i = c.index("--model") + 1
        return c[i : c.index("--lm")]

    rescores = calls_of(calls, "rescore")
    first = [c for c in rescores if "/whisper_x2_lm/" in arg(c, "--out")]
    second = [c for c in rescores if "/whisper_st_x2_lm/" in arg(c, "--out")]
    assert len(first) == len(second) == 3 and len(rescores) == 6
    assert all(models(c) == ["exp/sa/whisper_ft/best", "exp/sa/whisper_ft_s1/best"] for c in first)
    assert all(models(c) == ["exp/sa/whisper_st_x2/best", "exp/sa/whisper_st_x2_s1/best"] for c in second)
    done = {m.name for m in (tmp_path / "exp/sa/.done").iterdir()}
    assert {"stage3.train.whisper_ft", "stage3.train.whisper_ft_s1", "stage6.rescore.ctc0.seeds2.fusion0.5_1.0_lp0_r1.25.wer+cer"} <= done

    # A single-seed run after it redoes stages 6-8 (its own variant), not stage 3
    calls = run_recipe(tmp_path, SEEDS="1")
    assert not [c for c in calls_of(calls, "train") if "recipes/sanskrit/config.yaml" in c]
    assert {arg(c, "--out").split("/")[2] for c in calls_of(calls, "rescore")} == {
        "whisper_lm",
        "whisper_st_lm",
    }


def test_only_the_zero_shot_decode_forces_the_language_token(tmp_path):
    decodes = calls_of(run_recipe(tmp_path), "decode")
    zeroshot = [c for c in decodes if arg(c, "--model") == "whisper-base"]
    assert len(zeroshot) == 1 and arg(zeroshot[0], "--language") == "sa"
    # fine-tuned models decode with the token they were trained with (config model.language)
    assert all("--language" not in c for c in decodes if c not in zeroshot)


def test_by_default_two_seeds_are_averaged_into_one_decoder_for_stages_4_to_8(tmp_path):
    calls = run_recipe(tmp_path)
    trains = calls_of(calls, "train")
    assert [c[-2:] for c in trains[:2]] == [["output_dir=exp/sa/whisper_ft", "train.seed=0"],
                                             ["output_dir=exp/sa/whisper_ft_s1", "train.seed=1"]]  # fmt: skip
    (soup,) = calls_of(calls, "soup")
    assert soup[soup.index("--models") + 1 : soup.index("--out")] == [
        "exp/sa/whisper_ft/best", "exp/sa/whisper_ft_s1/best"]  # fmt: skip
    assert arg(soup, "--out") == "exp/sa/whisper_soup2/best"
    assert calls.index(trains[1]) < calls.index(soup)
    finetuned = [c for c in calls_of(calls, "decode") if arg(c, "--model") != "whisper-base"]
    assert {arg(c, "--model") for c in finetuned} == {"exp/sa/whisper_soup2/best", "exp/sa/whisper_st_soup2/best"}
    rescores = calls_of(calls, "rescore")
    assert all(len(c[c.index("--model") + 1 : c.index("--lm")]) == 1 for c in rescores)  # one model, not two
    assert {arg(c, "--model") for c in rescores} == {"exp/sa/whisper_soup2/best", "exp/sa/whisper_st_soup2/best"}
    assert {arg(c, "--out").split("/")[2] for c in rescores} == {"whisper_soup2_lm", "whisper_st_soup2_lm"}
    (pl,) = calls_of(calls, "pseudo-label")
    assert "exp/sa/whisper_soup2_lm/dev/hyps.jsonl" in pl
    (selftrain,) = trains[2:]  # the soup self-trains once
    assert "model.name=exp/sa/whisper_soup2/best" in selftrain and "output_dir=exp/sa/whisper_st_soup2" in selftrain
    done = {m.name for m in (tmp_path / "exp/sa/.done").iterdir()}
    variant = "ctc0.soup2.fusion0.5_1.0_lp0_r1.25.wer+cer"
    assert {"stage3.soup.whisper_soup2", f"stage6.rescore.{variant}", f"stage8.selftrained.{variant}"} <= done
    # every beam search of stages 6 and 8 fuses the character LM; dev tunes the choice for CER
    fused = ("0.5", "1.0", "0", "data/sa/train.jsonl", "1.25")  # length penalty 0: summed scores
    keys = ("weight", "bonus", "length-penalty", "rate-from", "rate-margin")
    assert all(tuple(arg(c, f"--fusion-{k}") for k in keys) == fused for c in rescores)
    assert all(arg(c, "--tune-metric") == "wer+cer" for c in rescores if "--tune" in c)
    assert sum("--tune" in c for c in rescores) == 2  # dev of stage 6 and of stage 8

    # Other fusion settings are another variant: stages 6-8 run again, the training of stage 3 does not
    calls = run_recipe(tmp_path, FUSION_WEIGHT="0")
    assert {arg(c, "--fusion-weight") for c in calls_of(calls, "rescore")} == {"0"}
    assert not calls_of(calls, "soup") and len(calls_of(calls, "train")) == 1  # the self-training only

    # An ensemble run after it reuses both seeds' training, and writes systems of its own
    calls = run_recipe(tmp_path, SOUP="0")
    assert not [c for c in calls_of(calls, "train") if "recipes/sanskrit/config.yaml" in c]
    assert not calls_of(calls, "soup")
    assert {arg(c, "--out").split("/")[2] for c in calls_of(calls, "rescore")} == {"whisper_x2_lm", "whisper_st_x2_lm"}


def test_a_forced_run_forces_every_training_and_the_prepare(tmp_path):
    """A finished training of the same settings is otherwise returned as it is (its run identity matches)."""
    defaults = dict.fromkeys(OFF_UNLESS_GIVEN)
    plain = run_recipe(tmp_path / "plain", **defaults)
    forced = run_recipe(tmp_path / "forced", "--force", **defaults)
    for calls, expected in ((plain, False), (forced, True)):
        trains = calls_of(calls, "train")
        # two seeds, the CTC system, the self-trained decoder and CTC system, the scratch and source systems
        assert len(trains) == 7
        # prepare and degrade otherwise refuse to replace their outputs made with other settings
        refusing = calls_of(calls, "prepare") + calls_of(calls, "degrade")
        assert len(refusing) == 6 and all(("--force" in c) == expected for c in trains + refusing)


def test_the_last_stage_exports_the_final_rescored_system(tmp_path):
    calls = run_recipe(tmp_path, CTC=None)  # the recipe's defaults: two seeds souped, CTC, self-training
    (export,) = calls_of(calls, "export")
    reports = calls_of(calls, "report")  # stage 9's and stage 14's
    assert calls.index(export) == calls.index(reports[1]) + 1 and calls[-2:] == reports[2:]
    final = "exp/sa/whisper_st_soup2_ctc_lm"  # stage 8's system, whose dev run tuned the weights
    (tuned,) = [c for c in calls_of(calls, "rescore") if arg(c, "--out") == f"{final}/dev/hyps.jsonl"]
    assert "--tune" in tuned and arg(export, "--from-rescore") == f"{final}/dev"
    assert arg(export, "--data") == "data/sa" and arg(export, "--out") == "exp/sa/final"
    results = export[export.index("--results") + 1 : export.index("--results") + 3]
    assert results == [f"{final}/dev/results.json", f"{final}/test/results.json"]
    assert "recipes/sanskrit/run.sh" in arg(export, "--recipe")
    assert "test audio was heard" in arg(export, "--limitation")  # the card says what self-training saw
    assert any((tmp_path / "exp/sa/.done").glob("stage10.export.*"))

    calls = run_recipe(tmp_path / "plain", SELFTRAIN="0", SEEDS="1")  # no stage 8: stage 6's system is final
    (export,) = calls_of(calls, "export")
    assert arg(export, "--from-rescore") == "exp/sa/whisper_lm/dev" and "--limitation" not in export


def overrides(train: list[str]) -> list[str]:
    """A train call's config overrides (what follows --config and its file), --force aside."""
    return [a for a in train[train.index("--config") + 2 :] if a != "--force"]


def decoded_and_scored(calls: list[list[str]], system: str) -> dict[str, tuple[list[str], list[str]]]:
    """test set -> (decode call, score call) of ``system``: each decode's hyps scored under that name."""
    out = {}
    for decode in calls_of(calls, "decode"):
        hyps = arg(decode, "--out")
        if hyps.split("/")[2] != system:
            continue
        (score,) = [c for c in calls_of(calls, "score") if "--hyps" in c and arg(c, "--hyps") == hyps]
        assert arg(score, "--system") == system and arg(score, "--manifest") == arg(decode, "--manifest")
        assert calls.index(decode) < calls.index(score)
        out[hyps.split("/")[3]] = (decode, score)
    return out


def test_stage_11_trains_stage_3s_config_from_random_weights_and_scores_it_as_scratch(tmp_path):
    calls = run_recipe(tmp_path, SCRATCH=None, CTC=None)  # the recipe's defaults: two seeds souped
    trains = calls_of(calls, "train")
    (scratch,) = [c for c in trains if "model.init=scratch" in c]
    ft = trains[0]  # seed 0 of stage 3: one transfer seed's training
    assert arg(scratch, "--config") == arg(ft, "--config") == "recipes/sanskrit/config.yaml"
    # the same config, seed and step budget (epochs, batches): only the start and the output differ
    assert overrides(ft) == ["output_dir=exp/sa/whisper_ft", "train.seed=0"]
    assert overrides(scratch) == ["model.init=scratch", "output_dir=exp/sa/whisper_scratch", "train.seed=0"]
    (export,) = calls_of(calls, "export")
    assert calls.index(export) < calls.index(scratch)
    scored = decoded_and_scored(calls, "whisper_scratch")
    assert set(scored) == {"dev", "test"}
    for split, (decode, score) in scored.items():
        assert arg(decode, "--model") == "exp/sa/whisper_scratch/best" and arg(decode, "--manifest") == f"data/sa/{split}.jsonl"
        assert not {"--num-beams", "--lm", "--char-lm", "--language"} & set(decode)  # greedy, as trained
        assert arg(score, "--kind") == "scratch" and calls.index(scratch) < calls.index(decode)
    # Its like-for-like transfer system, seed 0's decoder, is scored too: stage 4 scored only the soup
    ft_scored = decoded_and_scored(calls, "whisper_ft")
    assert set(ft_scored) == {"dev", "test"}
    assert all(arg(d, "--model") == "exp/sa/whisper_ft/best" and arg(s, "--kind") == "finetuned"
               for d, s in ft_scored.values())  # fmt: skip
    assert {"stage11.scratch.train.whisper_scratch", "stage11.scratch.score.whisper_scratch"} <= {
        m.name for m in (tmp_path / "exp/sa/.done").iterdir()}  # fmt: skip

    calls = run_recipe(tmp_path / "one_seed", SCRATCH=None, SEEDS="1")  # stage 4 scored whisper_ft already
    assert len(calls_of(calls, "decode")) == len({arg(c, "--out") for c in calls_of(calls, "decode")})
    assert len(decoded_and_scored(calls, "whisper_scratch")) == 2

    calls = run_recipe(tmp_path / "off", SCRATCH="0")
    assert not [c for c in calls_of(calls, "train") if "model.init=scratch" in c]
    assert "scratch" not in {arg(c, "--kind") for c in calls_of(calls, "score")}
    assert not list((tmp_path / "off/exp/sa/.done").glob("stage11.*"))


def test_stage_12_trains_the_same_config_from_english_only_whisper_tiny_en(tmp_path):
    calls = run_recipe(tmp_path, SOURCE=None)
    (source,) = [c for c in calls_of(calls, "train") if "model.name=whisper-tiny.en" in c]
    assert arg(source, "--config") == "recipes/sanskrit/config.yaml"
    # whisper-tiny.en has no language tokens: <|sa|> (the config's model.language) starts from <|en|>'s rows
    assert overrides(source) == ["model.name=whisper-tiny.en", "model.new_language_init_from=en",
                                 "output_dir=exp/sa/whisper_tinyen", "train.seed=0"]  # fmt: skip
    scored = decoded_and_scored(calls, "whisper_tinyen")
    assert set(scored) == {"dev", "test"}
    for split, (decode, score) in scored.items():
        assert arg(decode, "--model") == "exp/sa/whisper_tinyen/best" and arg(decode, "--manifest") == f"data/sa/{split}.jsonl"
        assert not {"--num-beams", "--lm", "--language"} & set(decode) and arg(score, "--kind") == "finetuned"
        assert calls.index(source) < calls.index(decode)
    assert calls.index(calls_of(calls, "export")[0]) < calls.index(source)

    calls = run_recipe(tmp_path / "off", SOURCE="0")
    assert not [c for c in calls_of(calls, "train") if "model.name=whisper-tiny.en" in c]
    assert not decoded_and_scored(calls, "whisper_tinyen")


SHIFTED_SETS = ("test_telephone", "test_babble10", "test_babble5", "test_noise10", "test_reverb")


def test_stage_13_scores_the_exported_system_and_the_decoder_on_shifted_copies_of_test(tmp_path):
    calls = run_recipe(tmp_path, SHIFT=None, CTC=None)
    degrades = calls_of(calls, "degrade")
    assert [arg(c, "--out") for c in degrades] == [f"data/sa_shifted/{name}" for name in SHIFTED_SETS]
    assert all(arg(c, "--manifest") == "data/sa/test.jsonl" and arg(c, "--seed") == "0" for c in degrades)
    assert "--id-suffix" not in {a for c in degrades for a in c}  # ids kept: the report pairs each set with test
    conditions = [c[c.index("--condition") : c.index("--seed")] for c in degrades]
    assert conditions == [
        ["--condition", "telephone"],
        ["--condition", "babble", "--snr", "10", "--noise-manifest", "data/sa/train.jsonl"],
        ["--condition", "babble", "--snr", "5", "--noise-manifest", "data/sa/train.jsonl"],
        ["--condition", "noise", "--snr", "10", "--noise-color", "pink"],
        ["--condition", "reverb", "--rt60", "0.5"],
    ]
    (export,) = calls_of(calls, "export")
    assert calls.index(export) < calls.index(degrades[0])
    manifests = {name: f"data/sa_shifted/{name}/{name}.jsonl" for name in SHIFTED_SETS}
    # The stage-3 decoder system (greedy), whose test score is stage 4's
    decoder = decoded_and_scored(calls, "whisper_soup2")
    assert set(decoder) == {"dev", "test", *SHIFTED_SETS}
    for name in SHIFTED_SETS:
        decode, score = decoder[name]
        assert arg(decode, "--manifest") == manifests[name] and arg(decode, "--model") == "exp/sa/whisper_soup2/best"
        assert "--num-beams" not in decode and arg(score, "--kind") == "finetuned"
        assert calls.index(degrades[-1]) < calls.index(decode)
    # The exported system as a user runs it (its own search and batches), on test too: its in-domain rate
    final = decoded_and_scored(calls, "final_export")
    assert set(final) == {"test", *SHIFTED_SETS}
    assert arg(final["test"][0], "--manifest") == "data/sa/test.jsonl"
    for name, (decode, score) in final.items():
        assert arg(decode, "--model") == "exp/sa/final" and arg(score, "--kind") == "finetuned"
        assert not {"--batch-size", "--num-beams", "--lm", "--language"} & set(decode)
        assert name == "test" or arg(decode, "--manifest") == manifests[name]
    assert not [c for c in calls if any(a.startswith("exp/sa/final/") for a in c)]  # nothing written into the export
    # The report again, last, over everything
    reports = calls_of(calls, "report")
    assert calls[-2:] == reports[-2:] and arg(reports[-2], "--out") == "exp/sa/report"
    assert (tmp_path / "exp/sa/.done/stage14.verdict").exists()

    # Another variant's export is scored again; the sets and the decoder's scores stay
    calls = run_recipe(tmp_path, SHIFT=None, CTC=None, FUSION_WEIGHT="0")
    assert not calls_of(calls, "degrade") and not decoded_and_scored(calls, "whisper_soup2")
    assert set(decoded_and_scored(calls, "final_export")) == {"test", *SHIFTED_SETS}

    calls = run_recipe(tmp_path / "off", SHIFT="0")
    assert not calls_of(calls, "degrade") and not decoded_and_scored(calls, "final_export")
    assert not any(arg(c, "--manifest").startswith("data/sa_shifted/") for c in calls_of(calls, "decode"))

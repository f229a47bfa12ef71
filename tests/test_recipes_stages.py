"""The stage runner shared by the recipes: ranges, .done markers, --force, failures."""

import subprocess
from pathlib import Path

import pytest

STAGES = Path(__file__).resolve().parents[1] / "recipes" / "lib" / "stages.sh"


def run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = f"""
set -euo pipefail
source "{STAGES}"
EXP="{tmp_path}/exp"
parse_stage_args "$@"
run_stage 1 first bash -c 'echo x >> "{tmp_path}/first.log"'
run_stage 2 second bash -c 'echo x >> "{tmp_path}/second.log"'
run_stage 3 fails false
"""
    return subprocess.run(["bash", "-c", script, "run.sh", *args], capture_output=True, text=True)


def count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_stage_range_markers_and_force(tmp_path):
    r = run_script(tmp_path, "--stop-stage", "2")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "exp/.done/stage1.first").exists() and (tmp_path / "exp/.done/stage2.second").exists()
    assert count(tmp_path / "first.log") == 1 and count(tmp_path / "second.log") == 1

    r = run_script(tmp_path, "--stop-stage", "2")  # both done already: nothing reruns
    assert r.returncode == 0 and "done already" in r.stdout
    assert count(tmp_path / "first.log") == 1

    r = run_script(tmp_path, "--stage", "2", "--stop-stage", "2", "--force")
    assert r.returncode == 0
    assert count(tmp_path / "first.log") == 1 and count(tmp_path / "second.log") == 2


def test_failed_stage_stops_without_marker(tmp_path):
    r = run_script(tmp_path, "--stage", "3")
    assert r.returncode != 0
    assert "stage 3 (fails) failed" in r.stderr
    assert not (tmp_path / "exp/.done/stage3.fails").exists()


def test_stage_function_stops_at_its_first_failing_command(tmp_path):
    script = f"""
set -euo pipefail
source "{STAGES}"
EXP="{tmp_path}/exp"
two_steps() {{ false; echo ran > "{tmp_path}/after.log"; }}
run_stage 5 two two_steps
"""
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert r.returncode != 0 and "stage 5 (two) failed" in r.stderr
    assert not (tmp_path / "after.log").exists() and not (tmp_path / "exp/.done/stage5.two").exists()


def test_unknown_argument_is_refused(tmp_path):
    r = run_script(tmp_path, "--stgae", "1")
    assert r.returncode == 2 and "unknown argument" in r.stderr


def test_dev_and_test_run_at_once_with_one_thread_each(tmp_path):
    script = f"""
set -euo pipefail
source "{STAGES}"
EXP="{tmp_path}/exp"
work() {{  # tag split: records its thread setting, start and end; "bad test" fails
  date +%s.%N > "{tmp_path}/$2.start"; sleep 0.5
  echo "$OMP_NUM_THREADS" > "{tmp_path}/$2.threads"; date +%s.%N > "{tmp_path}/$2.end"
  [ "$1 $2" != "bad test" ]
}}
run_stage 4 pair on_dev_and_test work "$1"
"""

    def run(tag):
        return subprocess.run(["bash", "-c", script, "run.sh", tag], capture_output=True, text=True)

    r = run("good")
    assert r.returncode == 0, r.stderr
    t = {f"{s}.{e}": float((tmp_path / f"{s}.{e}").read_text()) for s in ("dev", "test") for e in ("start", "end")}
    assert t["test.start"] < t["dev.end"] and t["dev.start"] < t["test.end"]  # they overlapped
    assert (tmp_path / "dev.threads").read_text().strip() == "1" == (tmp_path / "test.threads").read_text().strip()
    assert (tmp_path / "exp/.done/stage4.pair").exists()

    (tmp_path / "exp/.done/stage4.pair").unlink()
    r = run("bad")  # one of the two fails: the stage fails after both ended, no marker
    assert r.returncode != 0 and "stage 4 (pair) failed" in r.stderr
    assert (tmp_path / "dev.end").exists() and not (tmp_path / "exp/.done/stage4.pair").exists()


def test_force_is_passed_on_to_the_commands_that_take_it(tmp_path):
    script = f"""
set -euo pipefail
source "{STAGES}"
EXP="{tmp_path}/exp"
parse_stage_args "$@"
run_stage 1 prepare bash -c 'echo "[$*]" >> "{tmp_path}/args.log"' prepare --out data "${{FORCE_ARGS[@]}}"
"""
    for args in ([], ["--force"]):
        r = subprocess.run(["bash", "-c", script, "run.sh", *args], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "args.log").read_text().splitlines() == ["[--out data]", "[--out data --force]"]


RECIPE_LIBS = ("recipes/lib/stages.sh", "recipes/lib/folds.sh", "recipes/lib/shift.sh")


def _copy_recipe(tmp_path: Path, recipe: str) -> None:
    """A recipe's run.sh and the stage libraries it sources, copied under ``tmp_path``."""
    import shutil

    root = STAGES.parents[2]
    for rel in (f"recipes/{recipe}/run.sh", *RECIPE_LIBS):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / rel, tmp_path / rel)


def _recipe_calls(tmp_path: Path, recipe: str, **env: str) -> list[list[str]]:
    """The ``python -m pipeline`` calls of a recipe's run.sh, run in a copy with a fake interpreter that
    records them instead of running them (``env``: more environment for run.sh)."""
    import os
    import stat

    _copy_recipe(tmp_path, recipe)
    log = tmp_path / "calls.log"
    fake = tmp_path / "fake_python"
    fake.write_text(f'#!/usr/bin/env bash\nline=$(printf "%s\\t" "$@")\nprintf "%s\\n" "$line" >> "{log}"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    r = subprocess.run(["bash", str(tmp_path / f"recipes/{recipe}/run.sh")], capture_output=True, text=True,
                       env={**os.environ, "PY": str(fake), **env})  # fmt: skip
    assert r.returncode == 0, r.stderr
    return [line.rstrip("\t").split("\t") for line in log.read_text().splitlines()]


def _arg(call: list[str], flag: str) -> str:
    return call[call.index(flag) + 1]


def _calls_of(calls: list[list[str]], command: str) -> list[list[str]]:
    return [c for c in calls if c[:3] == ["-m", "pipeline", command]]


def test_the_demo_and_punjabi_recipes_export_the_system_they_scored(tmp_path):
    for recipe, exp, data in (("demo", "exp/demo", "data/demo"), ("punjabi_digits", "exp/pa_digits", "data/pa_digits")):
        calls = _recipe_calls(tmp_path / recipe, recipe, FOLDS="0")  # the Punjabi folds: the test below
        (export,) = _calls_of(calls, "export")
        decodes = [c for c in _calls_of(calls, "decode") if _arg(c, "--manifest") == f"{data}/test.jsonl"]
        scored = [c for c in decodes if _arg(c, "--model") == f"{exp}/whisper_ft/best"][-1]  # fine-tuned, test
        assert _arg(export, "--model") == _arg(scored, "--model") == f"{exp}/whisper_ft/best"
        assert _arg(export, "--batch-size") == _arg(scored, "--batch-size")  # the same batches, the same texts
        for flag in ("--tail-silence",):  # the search it was scored with
            assert (flag in export) == (flag in scored) and (flag not in export or _arg(export, flag) == _arg(scored, flag))
        assert _arg(export, "--results") == f"{exp}/whisper_ft/test/results.json"
        assert _arg(export, "--data") == data and _arg(export, "--out") == f"{exp}/final"
        assert f"recipes/{recipe}/run.sh" in _arg(export, "--recipe")


@pytest.mark.parametrize("dev_speakers", ["0", "1"])
def test_punjabi_folds_train_each_fold_pool_them_and_export_a_system_of_every_speaker(tmp_path, dev_speakers):
    # what stages 7 and 9 would have written: three folds, and the median of their best steps
    for k in (1, 2, 3):
        (tmp_path / f"data/pa_digits_folds/fold{k}").mkdir(parents=True)
    (tmp_path / "data/pa_digits_folds/all").mkdir()
    pooled = tmp_path / "exp/pa_digits/whisper_ft_folds/pooled"
    pooled.mkdir(parents=True)
    (pooled / "median_best_step").write_text("75\n")
    env = {} if dev_speakers == "0" else {"DEV_SPEAKERS": dev_speakers}  # FOLDS=1, DEV_SPEAKERS=0: the defaults
    calls = _recipe_calls(tmp_path, "punjabi_digits", **env)
    cmds = [c[2] for c in calls]
    assert cmds[:7] == ["prepare", "decode", "score", "train", "decode", "score", "report"]  # stages 1-5 as before
    folds = next(c for c in calls if c[2] == "folds")
    assert _arg(folds, "--data") == "data/pa_digits" and _arg(folds, "--out") == "data/pa_digits_folds"
    assert _arg(folds, "--dev-speakers") == dev_speakers
    fold_trains = [c for c in calls if c[2] == "train" and any(a.startswith("data.manifests_dir=") for a in c)]
    assert len(fold_trains) == 4  # three folds and the system of every speaker
    for k, train in enumerate(fold_trains[:3], 1):
        exp, data = f"exp/pa_digits_folds/fold{k}/whisper_ft", f"data/pa_digits_folds/fold{k}"
        assert f"output_dir={exp}" in train and f"data.manifests_dir={data}" in train
        # a dev speaker picks the step; without one the config's epochs are what the folds measure
        assert ("train.eval_every=25" in train) == (dev_speakers == "1")
        i = calls.index(train)
        decode, score = calls[i + 1], calls[i + 2]
        assert _arg(decode, "--model") == f"{exp}/best" and _arg(decode, "--manifest") == f"{data}/test.jsonl"
        assert _arg(decode, "--tail-silence") == "0.5"
        assert _arg(score, "--hyps") == _arg(decode, "--out") == f"{exp}/test/hyps.jsonl"
        assert _arg(score, "--manifest") == f"{data}/test.jsonl" and _arg(score, "--system") == "whisper_ft"
    pool = next(c for c in calls if "--pool" in c)
    i = pool.index("--pool")
    assert pool[i + 1 : i + 4] == [f"exp/pa_digits_folds/fold{k}/whisper_ft/test" for k in (1, 2, 3)]
    assert _arg(pool, "--out") == "exp/pa_digits/whisper_ft_folds/pooled"
    final = fold_trains[3]
    assert calls.index(pool) < calls.index(final)
    assert "data.manifests_dir=data/pa_digits_folds/all" in final
    assert ("train.max_steps=75" in final) == (dev_speakers == "1")
    assert "output_dir=exp/pa_digits/whisper_ft_all" in final
    report, export = calls[-3], calls[-1]
    assert report[2] == "report" and calls.index(final) < len(calls) - 3  # stage 11: the report with the pooled row
    assert export[2] == "export" and _arg(export, "--model") == "exp/pa_digits/whisper_ft_all/best"
    assert _arg(export, "--tail-silence") == "0.5"  # as the folds were decoded
    assert _arg(export, "--data") == "data/pa_digits_folds/all" and _arg(export, "--out") == "exp/pa_digits/final_all"
    assert _arg(export, "--results") == "exp/pa_digits/whisper_ft_folds/pooled/results.json"


@pytest.mark.parametrize("recipe,fold_stage,message", [
    ("punjabi_digits", "8", "no folds in data/pa_digits_folds: run stage 7 first"),
    ("demo", "17", "no folds in data/demo_folds: run stage 16 first"),
])  # fmt: skip
def test_fold_stages_need_the_folds_of_their_folds_stage(tmp_path, recipe, fold_stage, message):
    import os

    _copy_recipe(tmp_path, recipe)
    r = subprocess.run(["bash", str(tmp_path / f"recipes/{recipe}/run.sh"), "--stage", fold_stage], capture_output=True,
                       text=True, env={**os.environ, "PY": "false"})  # fmt: skip
    assert r.returncode != 0 and message in r.stderr


def test_the_demo_scores_the_finetuned_system_on_shifted_test_sets_derived_from_its_test_set(tmp_path):
    calls = _recipe_calls(tmp_path, "demo", ADAPT="0", FOLDS="0")
    telephone, babble, babble5 = _calls_of(calls, "degrade")
    for call in (telephone, babble, babble5):
        assert _arg(call, "--manifest") == "data/demo/test.jsonl" and "--seed" in call
        assert "--id-suffix" not in call  # the ids of the clean test set: score pairs them
    assert _arg(telephone, "--condition") == "telephone" and "--noise-manifest" not in telephone
    assert _arg(babble, "--condition") == _arg(babble5, "--condition") == "babble"
    assert (_arg(babble, "--snr"), _arg(babble5, "--snr")) == ("10", "5")
    for call in (babble, babble5):  # the training voices, not the test voice
        assert _arg(call, "--noise-manifest") == "data/demo/train.jsonl"
    sets = {_arg(c, "--out") for c in (telephone, babble, babble5)}
    assert sets == {"data/demo_shifted/test_telephone", "data/demo_shifted/test_babble10",
                    "data/demo_shifted/test_babble5"}
    for out in sorted(sets):
        name = out.rsplit("/", 1)[1]
        manifest, hyps = f"{out}/{name}.jsonl", f"exp/demo/whisper_ft/{name}/hyps.jsonl"
        (decode,) = [c for c in _calls_of(calls, "decode") if _arg(c, "--manifest") == manifest]
        (score,) = [c for c in _calls_of(calls, "score") if _arg(c, "--manifest") == manifest]
        assert _arg(decode, "--model") == "exp/demo/whisper_ft/best" and _arg(decode, "--out") == hyps
        assert _arg(score, "--hyps") == hyps and _arg(score, "--kind") == "finetuned"
        assert _arg(score, "--system") == "whisper_ft"  # the same system: a domain-shift gap, not another system
        assert calls.index(decode) > calls.index(babble)
    report = calls[-1]
    assert report[:4] == ["-m", "pipeline", "report", "exp/demo"]
    assert all(calls.index(c) < len(calls) - 1 for c in _calls_of(calls, "score"))  # the report sees every score


def test_the_demo_trains_a_scratch_system_with_the_finetunings_config_and_budget(tmp_path):
    calls = _recipe_calls(tmp_path / "with", "demo", ADAPT="0", FOLDS="0")
    finetune, scratch = _calls_of(calls, "train")
    assert _arg(scratch, "--config") == _arg(finetune, "--config") == "recipes/demo/config.yaml"
    extra = [a for a in scratch[3:] if a not in finetune[3:]]
    assert extra == ["model.init=scratch", "output_dir=exp/demo/whisper_scratch"]  # nothing else differs
    (decode,) = [c for c in _calls_of(calls, "decode") if _arg(c, "--model") == "exp/demo/whisper_scratch/best"]
    (score,) = [c for c in _calls_of(calls, "score") if _arg(c, "--system") == "whisper_scratch"]
    assert _arg(decode, "--manifest") == _arg(score, "--manifest") == "data/demo/test.jsonl"
    assert _arg(score, "--kind") == "scratch" and calls.index(score) < len(calls) - 1
    without = _recipe_calls(tmp_path / "without", "demo", SCRATCH="0", ADAPT="0", FOLDS="0")
    assert len(_calls_of(without, "train")) == 1 and without[-1][:3] == ["-m", "pipeline", "report"]


DEMO_SHIFTS = ("telephone", "babble10", "babble5")


def _scored_everywhere(calls: list[list[str]], system: str, model: str) -> None:
    """``system`` (``model``) is decoded and scored on the demo's test set and on each shifted one."""
    manifests = ["data/demo/test.jsonl", *(f"data/demo_shifted/test_{s}/test_{s}.jsonl" for s in DEMO_SHIFTS)]
    for manifest in manifests:
        (decode,) = [c for c in _calls_of(calls, "decode") if _arg(c, "--manifest") == manifest
                     and _arg(c, "--model") == model]  # fmt: skip
        (score,) = [c for c in _calls_of(calls, "score") if _arg(c, "--manifest") == manifest
                    and _arg(c, "--system") == system]  # fmt: skip
        assert _arg(score, "--hyps") == _arg(decode, "--out") and calls.index(score) > calls.index(decode)


def test_the_demo_adapts_to_the_shifted_sets_without_their_labels(tmp_path):
    import yaml

    from pipeline.config import load_config

    calls = _recipe_calls(tmp_path / "with", "demo", ADAPT="1", FOLDS="0")
    finetune, _, multi, self_trained = _calls_of(calls, "train")
    # Multi-condition: the fine-tuning's config, the shifted test sets' channels as augmentation, more steps.
    assert _arg(multi, "--config") == _arg(finetune, "--config") == "recipes/demo/config.yaml"
    extra = [a for a in multi[3:] if a not in finetune[3:]]
    channels = "augment.channels=[clean,telephone,babble10,babble5]"
    assert extra == [channels, "train.max_steps=120", "output_dir=exp/demo/whisper_mc"]
    _scored_everywhere(calls, "zeroshot", "whisper-base")
    _scored_everywhere(calls, "whisper_mc", "exp/demo/whisper_mc/best")
    # Self-training: the DEV speaker's audio through the same channels (babble of the training voices) ...
    dev_sets = [c for c in _calls_of(calls, "degrade") if _arg(c, "--manifest") == "data/demo/dev.jsonl"]
    assert sorted(_arg(c, "--out") for c in dev_sets) == sorted(f"data/demo_shifted/dev_{s}" for s in DEMO_SHIFTS)
    assert all(_arg(c, "--noise-manifest") == "data/demo/train.jsonl" for c in dev_sets if "--noise-manifest" in c)
    # one dev utterance in three conditions: three training clips, so three ids
    assert sorted(_arg(c, "--id-suffix") for c in dev_sets) == sorted(f"_{s}" for s in DEMO_SHIFTS)
    (pseudo,) = _calls_of(calls, "pseudo-label")
    unlabeled = pseudo[pseudo.index("--unlabeled") + 1 : pseudo.index("--hyps")]
    hyps = pseudo[pseudo.index("--hyps") + 1 : pseudo.index("--out")]
    assert unlabeled == [f"data/demo_shifted/dev_{s}/dev_{s}.jsonl" for s in DEMO_SHIFTS]  # never the test audio
    assert _arg(pseudo, "--labeled") == "data/demo/train.jsonl"
    for manifest, h in zip(unlabeled, hyps):  # ... transcribed by the multi-condition system, never scored
        (decode,) = [c for c in _calls_of(calls, "decode") if _arg(c, "--manifest") == manifest]
        assert _arg(decode, "--model") == "exp/demo/whisper_mc/best" and _arg(decode, "--out") == h
        assert calls.index(decode) < calls.index(pseudo) < calls.index(self_trained)
    assert not [c for c in _calls_of(calls, "score") if "/dev" in _arg(c, "--manifest")]  # dev texts unread
    # ... and one more round on train + them, from the multi-condition system, with its channels.
    assert _arg(self_trained, "--config") == "recipes/demo/config_selftrain.yaml" and channels in self_trained
    root = STAGES.parents[2]
    tree = yaml.safe_load((root / "recipes/demo/config_selftrain.yaml").read_text(encoding="utf-8"))
    assert tree["data"]["train"] == f"{_arg(pseudo, '--out')}/train.jsonl"
    assert tree["model"]["name"] == "exp/demo/whisper_mc/best"
    cfg = load_config(root / "recipes/demo/config_selftrain.yaml", [channels])
    assert cfg.output_dir == "exp/demo/whisper_st" and cfg.model.vocabulary == "whisper"  # the model's own
    _scored_everywhere(calls, "whisper_st", "exp/demo/whisper_st/best")
    report = calls[-1]
    assert report[:4] == ["-m", "pipeline", "report", "exp/demo"]
    assert all(calls.index(c) < len(calls) - 1 for c in _calls_of(calls, "score"))  # the report sees every score
    without = _recipe_calls(tmp_path / "without", "demo", ADAPT="0", FOLDS="0")
    assert [_arg(c, "--config") for c in _calls_of(without, "train")] == ["recipes/demo/config.yaml"] * 2
    assert not _calls_of(without, "pseudo-label") and without[-1][:3] == ["-m", "pipeline", "report"]


def _demo_folds_written(root: Path, n_folds: int = 3) -> None:
    """What stage 16 would have written: the folds' data folders and the one of every voice."""
    for k in range(1, n_folds + 1):
        (root / f"data/demo_folds/fold{k}").mkdir(parents=True)
    (root / "data/demo_folds/all").mkdir()


def _limitations(call: list[str]) -> list[str]:
    return [call[i + 1] for i, a in enumerate(call) if a == "--limitation"]


def test_the_demo_folds_train_each_fold_pool_them_and_export_a_system_of_every_voice(tmp_path):
    _demo_folds_written(tmp_path)
    calls = _recipe_calls(tmp_path, "demo")  # FOLDS=1, N_FOLDS=3, ADAPT=0: the defaults
    before = _recipe_calls(tmp_path / "before", "demo", FOLDS="0")
    assert calls[: len(before)] == before  # stages 0-11 as without the folds
    folds_calls = calls[len(before) :]
    assert [c[2] for c in folds_calls] == ["folds", *["train", "decode", "score"] * 3, "score", "train", "report",
                                           "report", "export"]  # fmt: skip
    (folds,) = _calls_of(calls, "folds")
    assert _arg(folds, "--data") == "data/demo" and _arg(folds, "--out") == "data/demo_folds"
    assert _arg(folds, "--dev-speakers") == "0" and _arg(folds, "--folds") == "3"
    finetune = _calls_of(calls, "train")[0]  # stage 3's system, whose recipe the folds measure
    fold_trains = [c for c in _calls_of(calls, "train") if any(a.startswith("data.manifests_dir=") for a in c)]
    assert len(fold_trains) == 4  # three folds and the system of every voice
    for k, train in enumerate(fold_trains[:3], 1):
        exp, data = f"exp/demo_folds/fold{k}/whisper_ft", f"data/demo_folds/fold{k}"
        # the config's 60 steps, no dev voice to evaluate: nothing else differs from stage 3's training
        extra = [a for a in train[3:] if a not in finetune[3:]]
        assert extra == [f"output_dir={exp}", f"data.manifests_dir={data}", "train.eval_every=0"]
        assert not exp.startswith("exp/demo/")  # `report exp/demo` refuses two systems named whisper_ft
        i = calls.index(train)
        decode, score = calls[i + 1], calls[i + 2]
        assert _arg(decode, "--model") == f"{exp}/best" and _arg(decode, "--manifest") == f"{data}/test.jsonl"
        assert _arg(score, "--hyps") == _arg(decode, "--out") == f"{exp}/test/hyps.jsonl"
        assert _arg(score, "--manifest") == f"{data}/test.jsonl" and _arg(score, "--system") == "whisper_ft"
        assert _arg(score, "--kind") == "finetuned"
    pool = next(c for c in calls if "--pool" in c)
    i = pool.index("--pool")
    assert pool[i + 1 : i + 4] == [f"exp/demo_folds/fold{k}/whisper_ft/test" for k in (1, 2, 3)]
    assert _arg(pool, "--out") == "exp/demo/whisper_ft_folds/pooled" and _arg(pool, "--system") == "whisper_ft_folds"
    final = fold_trains[3]
    assert calls.index(pool) < calls.index(final)
    extra = [a for a in final[3:] if a not in finetune[3:]]
    assert extra == ["output_dir=exp/demo/whisper_ft_all", "data.manifests_dir=data/demo_folds/all",
                     "train.eval_every=0"]  # fmt: skip
    report, export = calls[-2], calls[-1]
    assert report[:4] == ["-m", "pipeline", "report", "exp/demo"] and calls.index(final) < len(calls) - 2
    assert _arg(export, "--model") == "exp/demo/whisper_ft_all/best" and _arg(export, "--out") == "exp/demo/final_all"
    assert _arg(export, "--batch-size") == _arg(calls[calls.index(fold_trains[0]) + 1], "--batch-size")
    assert _arg(export, "--data") == "data/demo_folds/all"
    assert _arg(export, "--results") == "exp/demo/whisper_ft_folds/pooled/results.json"
    (stage6,) = [c for c in _calls_of(calls, "export") if c is not export]
    assert _arg(export, "--license") == _arg(stage6, "--license") == "other"
    limits = _limitations(export)
    assert limits[0] == _arg(stage6, "--limitation") and "synthetic speech" in limits[0]
    assert limits[1].startswith("Trained on all six voices for the config's 60 steps; its results are pooled over "
                                "3 speaker folds")  # fmt: skip


def test_the_demo_folds_leave_one_voice_out_with_n_folds_6(tmp_path):
    _demo_folds_written(tmp_path, 6)
    calls = _recipe_calls(tmp_path, "demo", N_FOLDS="6")
    assert _arg(_calls_of(calls, "folds")[0], "--folds") == "6"
    pool = next(c for c in calls if "--pool" in c)
    assert pool[pool.index("--pool") + 1 : pool.index("--out")] == [
        f"exp/demo_folds/fold{k}/whisper_ft/test" for k in range(1, 7)]
    assert "pooled over 6 speaker folds" in _limitations(calls[-1])[-1]


def test_the_demo_without_folds_stops_after_its_verdicts(tmp_path):
    for adapt, last_stage in (("0", 11), ("1", 15)):
        calls = _recipe_calls(tmp_path / adapt, "demo", FOLDS="0", ADAPT=adapt)
        assert not _calls_of(calls, "folds") and not [c for c in calls if "--pool" in c]
        assert calls[-1][:4] == ["-m", "pipeline", "report", "exp/demo"]
        assert all("demo_folds" not in a and "whisper_ft_all" not in a for c in calls for a in c)
        done = sorted(int(p.name.split(".")[0][5:]) for p in (tmp_path / adapt / "exp/demo/.done").iterdir())
        assert done[-1] == last_stage

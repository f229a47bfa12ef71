"""Leave-one-speaker-out folds (data_prep/folds.py, ``python -m pipeline folds``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from data_prep.folds import ALL_DIR, FOLDS_JSON, FoldError, plan_folds, write_folds
from data_prep.manifest import Source, Utterance, read_manifest, write_jsonl
from data_prep.outputs import OutputRefused
from data_prep.validate import Accounting
from tests.tree_fixtures import tree_digest

ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = ("spkC", "spkA", "spkD", "spkB")  # not sorted: the folds sort them


def prepared_folder(root: Path, speakers=SPEAKERS, per_speaker: int = 3) -> Path:
    """A hand-made prepared folder: manifest.jsonl (split set as prepare would), prepare.json, accounting."""
    data = root / "pa"
    data.mkdir(parents=True)
    utts = []
    for k, spk in enumerate(speakers):
        for i in range(per_speaker):
            utts.append(Utterance(
                id=f"{spk}-{i}", audio=f"cache/{k}{i}.flac", duration=1.0 + i, text=f"ikk do {spk[-1].lower()}",
                speaker=spk, language="pa", source=Source("data/all/text", 1 + len(utts)),
                split="test" if k == 0 else "train"))  # fmt: skip
    write_jsonl(data / "manifest.jsonl", utts)
    for split in ("train", "dev", "test"):
        write_jsonl(data / f"{split}.jsonl", [u for u in utts if u.split == split])
    settings = {"process": {"rules": "pa-Latn", "language": "pa", "root": "/corpora/punjabi_digits"}}
    (data / "prepare.json").write_text(json.dumps(settings) + "\n", encoding="utf-8")
    acc = Accounting()
    for u in utts:
        acc.add([u])
    (data / "accounting.json").write_text(json.dumps(acc.to_json()) + "\n", encoding="utf-8")
    (data / "rejects.jsonl").write_text("", encoding="utf-8")
    return data


def fold_manifests(out: Path, name: str) -> dict[str, list[Utterance]]:
    return {split: read_manifest(out / name / f"{split}.jsonl") for split in ("train", "dev", "test")}


def test_every_utterance_is_tested_once_and_folds_are_speaker_disjoint(tmp_path):
    data = prepared_folder(tmp_path)
    out = tmp_path / "pa_folds"
    folds = write_folds(data, out)
    assert [f.name for f in folds] == ["fold1", "fold2", "fold3", "fold4"]
    all_ids = [u.id for u in read_manifest(data / "manifest.jsonl")]
    tested_ids: Counter[str] = Counter()
    tested_speakers: Counter[str] = Counter()
    for fold in folds:
        m = fold_manifests(out, fold.name)
        speakers = {split: {u.speaker for u in utts} for split, utts in m.items()}
        assert all(speakers.values()), f"{fold.name}: an empty split {speakers}"
        assert not speakers["train"] & speakers["dev"]
        assert not speakers["train"] & speakers["test"]
        assert not speakers["dev"] & speakers["test"]
        assert len(speakers["test"]) == 1 and len(speakers["dev"]) == 1
        # every utterance of the corpus is in the fold, in exactly one split
        assert sorted(u.id for utts in m.values() for u in utts) == sorted(all_ids)
        tested_ids.update(u.id for u in m["test"])
        tested_speakers.update(speakers["test"])
    assert tested_ids == Counter(all_ids)  # each utterance in exactly one fold's test set
    assert tested_speakers == Counter(SPEAKERS)  # each speaker tested in exactly one fold
    # fold k tests the k-th speaker (sorted); its dev speaker is the next one, wrapping round
    assert [(f.test, f.dev) for f in folds] == [
        (("spkA",), ("spkB",)), (("spkB",), ("spkC",)), (("spkC",), ("spkD",)), (("spkD",), ("spkA",))]
    everyone = fold_manifests(out, ALL_DIR)
    assert sorted(u.id for u in everyone["train"]) == sorted(all_ids) and not everyone["dev"] and not everyone["test"]


def test_fold_folders_are_prepared_folders(tmp_path):
    data = prepared_folder(tmp_path)
    out = tmp_path / "pa_folds"
    write_folds(data, out)
    fold = out / "fold1"
    for name in ("prepare.json", "vocab.json", "oov.json", "splits.json", "stats.json", "accounting.json",
                 "rejects.jsonl", "manifest.jsonl"):
        assert (fold / name).is_file(), name
    settings = json.loads((fold / "prepare.json").read_text(encoding="utf-8"))
    assert settings["process"]["rules"] == "pa-Latn"  # what score normalizes with
    assert settings["fold"]["test"] == ["spkA"]
    # the audio paths lead to the source folder's cache, from wherever the fold folder is
    test = read_manifest(fold / "test.jsonl")
    assert test[0].audio_path(fold).resolve() == (data / "cache/10.flac").resolve()
    # vocab from the fold's train text only: spkA ("a") is test, spkB ("b") dev
    vocab = json.loads((fold / "vocab.json").read_text(encoding="utf-8"))
    assert "c" in vocab and "d" in vocab and "a" not in vocab and "b" not in vocab
    assert json.loads((fold / "splits.json").read_text(encoding="utf-8"))["overlap"]["train/test"][
        "shared_speakers"] == []
    plan = json.loads((out / FOLDS_JSON).read_text(encoding="utf-8"))
    assert plan["speakers"] == sorted(SPEAKERS) and len(plan["folds"]) == 4


def test_folds_are_deterministic_and_leave_the_input_alone(tmp_path):
    data = prepared_folder(tmp_path)
    before = tree_digest(data)
    write_folds(data, tmp_path / "a")
    write_folds(data, tmp_path / "b")
    assert tree_digest(data) == before
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    write_folds(data, tmp_path / "a")  # a rerun replaces the folder it wrote
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")


def test_no_dev_speakers_and_too_few_speakers():
    folds = plan_folds(["b", "a", "c", "a"], dev_speakers=0)
    assert [(f.test, f.dev, f.train) for f in folds] == [
        (("a",), (), ("b", "c")), (("b",), (), ("a", "c")), (("c",), (), ("a", "b"))]
    assert [f.train for f in plan_folds(["a", "b", "c"], dev_speakers=1)] == [("c",), ("a",), ("b",)]
    with pytest.raises(FoldError, match="need at least 3"):
        plan_folds(["a", "b"], dev_speakers=1)


def test_utterances_without_a_speaker_are_refused(tmp_path):
    data = prepared_folder(tmp_path)
    utts = read_manifest(data / "manifest.jsonl")
    write_jsonl(data / "manifest.jsonl", [*utts, utts[0].replace(id="anon-1", speaker="")])
    with pytest.raises(FoldError, match="1 utterances have no speaker id .*'anon-1'"):
        write_folds(data, tmp_path / "f")
    assert not (tmp_path / "f").exists()


def test_output_inside_the_input_or_not_ours_is_refused(tmp_path):
    data = prepared_folder(tmp_path)
    with pytest.raises(OutputRefused):
        write_folds(data, data / "folds")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep", encoding="utf-8")
    with pytest.raises(OutputRefused):
        write_folds(data, foreign)
    assert (foreign / "notes.txt").read_text(encoding="utf-8") == "keep"


def test_cli_writes_folds_and_refuses_too_few_speakers(tmp_path):
    data = prepared_folder(tmp_path, speakers=("s1", "s2"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pipeline", "folds", "--data", str(data), "--out", str(tmp_path / "f")]
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "2 speakers" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "f").exists()
    ok = subprocess.run([*cmd, "--dev-speakers", "0"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "f/fold1: test s1  dev -  train s2" in ok.stdout
    assert {u.speaker for u in read_manifest(tmp_path / "f" / "fold2" / "test.jsonl")} == {"s2"}


SIX = ("s6", "s2", "s4", "s1", "s5", "s3")  # not sorted: the folds sort them


def test_k_folds_deal_the_speakers_round_robin_and_test_every_utterance_once(tmp_path):
    data = prepared_folder(tmp_path, speakers=SIX)
    out = tmp_path / "pa_folds"
    folds = write_folds(data, out, dev_speakers=0, n_folds=3)
    spks = sorted(SIX)
    assert [f.test for f in folds] == [tuple(spks[k::3]) for k in range(3)]  # (s1, s4), (s2, s5), (s3, s6)
    all_utts = read_manifest(data / "manifest.jsonl")
    tested: Counter[str] = Counter()
    for fold in folds:
        m = fold_manifests(out, fold.name)
        assert {u.speaker for u in m["test"]} == set(fold.test) and not m["dev"]
        assert not {u.speaker for u in m["train"]} & set(fold.test)
        assert sorted(u.id for utts in m.values() for u in utts) == sorted(u.id for u in all_utts)
        tested.update(u.id for u in m["test"])
    assert tested == Counter(u.id for u in all_utts)  # every utterance in exactly one fold's test split
    for spk in SIX:  # all of a speaker's utterances are tested in one fold
        tested_in = {f.name for f in folds for u in read_manifest(out / f.name / "test.jsonl") if u.speaker == spk}
        assert len(tested_in) == 1
    plan = json.loads((out / FOLDS_JSON).read_text(encoding="utf-8"))
    assert plan["n_folds"] == 3 and [f["test"] for f in plan["folds"]] == [list(f.test) for f in folds]
    assert json.loads((out / "fold1" / "prepare.json").read_text())["fold"]["test"] == ["s1", "s4"]


def test_k_folds_dev_speakers_follow_the_last_test_speaker_and_skip_the_tested_ones():
    folds = plan_folds(list(SIX), dev_speakers=2, n_folds=2)
    # fold1 tests s1 s3 s5: after s5 come s6, (s1 tested), s2; fold2 tests s2 s4 s6: after s6, s1, (s2), s3
    assert [(f.test, f.dev, f.train) for f in folds] == [
        (("s1", "s3", "s5"), ("s6", "s2"), ("s4",)), (("s2", "s4", "s6"), ("s1", "s3"), ("s5",))]
    # one fold per speaker, as without the setting
    assert plan_folds(list(SIX), dev_speakers=1, n_folds=6) == plan_folds(list(SIX), dev_speakers=1)
    assert [f.dev for f in plan_folds(list(SIX), dev_speakers=1, n_folds=3)] == [("s5",), ("s6",), ("s1",)]


def test_k_folds_out_of_range_or_leaving_none_to_train_are_refused(tmp_path):
    for k in (0, 1, 7):
        with pytest.raises(FoldError, match=f"{k} folds of 6 speakers: folds need 2 or more, .*at most 6"):
            plan_folds(list(SIX), dev_speakers=0, n_folds=k)
    with pytest.raises(FoldError, match="3 speakers: folds with 2 test and 1 dev speakers need at least 4"):
        plan_folds(["a", "b", "c"], dev_speakers=1, n_folds=2)
    assert [f.train for f in plan_folds(["a", "b", "c"], dev_speakers=0, n_folds=2)] == [("b",), ("a", "c")]
    data = prepared_folder(tmp_path, speakers=SIX)
    with pytest.raises(FoldError, match="7 folds"):
        write_folds(data, tmp_path / "f", n_folds=7)
    assert not (tmp_path / "f").exists()


def test_cli_folds_flag(tmp_path):
    data = prepared_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "pipeline", "folds", "--data", str(data), "--out", str(tmp_path / "f"),
           "--dev-speakers", "0"]  # fmt: skip
    bad = subprocess.run([*cmd, "--folds", "5"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "5 folds of 4 speakers" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "f").exists()
    ok = subprocess.run([*cmd, "--folds", "2"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "f/fold1: test spkA+spkC  dev -  train spkB+spkD" in ok.stdout and "train on all 4 speakers" in ok.stdout
    written = sorted(p.name for p in (tmp_path / "f").iterdir() if not p.name.startswith("."))
    assert written == ["all", "fold1", "fold2", FOLDS_JSON]
    assert {u.speaker for u in read_manifest(tmp_path / "f" / "fold2" / "test.jsonl")} == {"spkB", "spkD"}

"""Runs of ``prepare`` that meet in one --out: another run's settings, two at once, a kill among the final writes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from dp_fixtures import utterance_clip
from tree_fixtures import tree_digest

from data_prep.manifest import ManifestError, read_manifest
from data_prep.outputs import IN_PROGRESS_FILE, exclusive
from pipeline.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]
KILLED_RUN = Path(__file__).with_name("killed_run.py")
#: Each says the word-final म्, which the sa rules write as an anusvara and the hi rules keep: their manifests differ.
SENTENCES = ["अहम् वनं गच्छामि", "सीता गृहे अस्ति अहम्", "अहम् पठामि", "गजः चलति अहम्", "अहम् वहामि", "रामः अहम्"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A Common Voice layout: six clips of three speakers."""
    root = tmp_path_factory.mktemp("runs") / "cv"
    root.mkdir()
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    lines = [f"s{i % 3}\tu{i}.wav\t{text}\t2\t0\t\t\t\tsa\t\n" for i, text in enumerate(SENTENCES)]
    (root / "train.tsv").write_text(header + "".join(lines), encoding="utf-8")
    for i in range(len(SENTENCES)):
        utterance_clip(root / "clips" / f"u{i}.wav", 0.6 + 0.05 * i)
    return root


def args(corpus: Path, out: Path, rules: str) -> list[str]:
    return ["prepare", "--format", "cv", "--src", str(corpus), "--lang", "sa", "--rules", rules, "--out", str(out),
            "--split-speakers", "dev=s1,test=s2", "--jobs", "1", "--no-progress", "--vad", "energy",
            "--trim-vad", "none"]  # fmt: skip


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file of a prepared folder (not the cache, whose entries both rule sets share)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).parts[0] != "cache"}  # fmt: skip


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The outputs of one undisturbed run per rule set, each in a folder of its own."""
    refs = {}
    for rules in ("sa", "hi"):
        out = tmp_path_factory.mktemp(f"ref_{rules}") / "data"
        assert cli(args(corpus, out, rules)) == 0
        refs[rules] = outputs(out)
    assert refs["sa"]["prepare.json"] != refs["hi"]["prepare.json"]
    return refs


def one_error_line(text: str) -> str:
    """The one line of ``text`` (stderr), an error (the kill driver's count of its points left out)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("fsync points: ")]
    assert len(lines) == 1 and "error: " in lines[0], lines
    return lines[0]


def run_subprocess(argv: list[str], *, kill_at: int = 0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(KILLED_RUN), str(kill_at), "0", "--", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_rerun_with_other_rules_is_refused_naming_them_unless_forced(corpus, reference, tmp_path, capsys):
    out = tmp_path / "data"
    assert cli(args(corpus, out, "sa")) == 0
    capsys.readouterr()
    before = tree_digest(tmp_path)
    assert cli(args(corpus, out, "hi")) == 2
    assert "setting process.rules ('sa' -> 'hi')" in one_error_line(capsys.readouterr().err)
    assert tree_digest(tmp_path) == before
    assert cli(args(corpus, out, "sa")) == 0 and outputs(out) == reference["sa"]  # the same run: fine
    assert cli([*args(corpus, out, "hi"), "--force"]) == 0 and outputs(out) == reference["hi"]


def test_a_run_into_an_out_another_run_is_writing_is_refused(corpus, tmp_path, capsys):
    out = tmp_path / "data"
    with exclusive(out, "prepare"):
        before = tree_digest(tmp_path)
        assert cli(args(corpus, out, "sa")) == 2
        assert "another run is writing it (prepare, pid" in one_error_line(capsys.readouterr().err)
        assert tree_digest(tmp_path) == before and not out.exists()


def test_two_runs_at_once_into_one_out_one_refused_the_other_whole(corpus, reference, tmp_path):
    out = tmp_path / "data"
    runs = {rules: run_subprocess(args(corpus, out, rules)) for rules in ("sa", "hi")}
    done = {rules: (p.wait(120), p.stderr.read()) for rules, p in runs.items()}
    assert sorted(rc for rc, _ in done.values()) == [0, 2], done
    winner = next(rules for rules, (rc, _) in done.items() if rc == 0)
    loser = "hi" if winner == "sa" else "sa"
    refusal = one_error_line(done[loser][1])
    # refused by the lock while the other wrote, or by its prepare.json once it had finished
    assert "another run is writing it" in refusal or "the prepared outputs of another run" in refusal
    assert outputs(out) == reference[winner]  # prepare.json and every manifest: one run's
    assert not (out / IN_PROGRESS_FILE).exists()


def test_a_kill_among_the_final_writes_is_marked_refused_by_readers_and_repaired_by_a_rerun(
    corpus, reference, tmp_path, capsys
):  # fmt: skip
    import shutil

    out = tmp_path / "data"
    assert cli(args(corpus, out, "sa")) == 0
    scratch = tmp_path / "scratch"
    shutil.copytree(out, scratch)  # the same cache: the same points
    counted = run_subprocess([*args(corpus, scratch, "hi"), "--force"])
    assert counted.wait(120) == 0
    points = int(counted.stderr.read().strip().splitlines()[-1].split()[-1])
    # the last points are the final writes (prepare.json, rejects, accounting, splits, manifests, ...)
    kill_at = points - random.Random(7).randrange(6)
    killed = run_subprocess([*args(corpus, out, "hi"), "--force"], kill_at=kill_at)
    assert killed.wait(120) == -9
    torn = outputs(out)
    assert IN_PROGRESS_FILE in torn and torn["prepare.json"] == reference["hi"]["prepare.json"]
    # half one run, half the other: nothing but the mark says so
    assert any(torn[name] == reference["sa"][name] != reference["hi"][name] for name in reference["sa"])
    with pytest.raises(ManifestError, match="half-written"):
        read_manifest(out / "train.jsonl")
    capsys.readouterr()
    rc = cli(["decode", "--model", str(tmp_path / "none"), "--manifest", str(out / "dev.jsonl"),
              "--out", str(tmp_path / "hyps.jsonl")])  # fmt: skip
    assert rc == 2 and "half-written" in one_error_line(capsys.readouterr().err)
    assert cli(args(corpus, out, "hi")) == 0  # the run the folder now records: repairs it
    assert outputs(out) == reference["hi"] and not (out / IN_PROGRESS_FILE).exists()


def test_merge_into_a_folder_prepared_with_other_rules_is_refused_unless_forced(corpus, reference, tmp_path, capsys):
    out = tmp_path / "data"
    assert cli(args(corpus, out, "sa")) == 0
    for i in range(2):
        assert cli([*args(corpus, out, "hi"), "--num-shards", "2", "--shard-index", str(i)]) == 0
    capsys.readouterr()
    before = tree_digest(tmp_path)
    assert cli(["merge", "--out", str(out)]) == 2
    assert "setting process.rules ('sa' -> 'hi')" in one_error_line(capsys.readouterr().err)
    after = tree_digest(tmp_path)
    assert after.pop(".data.lock") and before.pop(".data.lock")  # names the last holder: this run, refused
    assert after == before
    assert cli(["merge", "--out", str(out), "--force"]) == 0
    merged = outputs(out)
    assert {k: v for k, v in merged.items() if k.split("/")[0] != "shards"} == reference["hi"]

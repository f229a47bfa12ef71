"""End to end: every reject reason, accounting, resume determinism, shards == single run, pipes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import soundfile as sf
from dp_fixtures import kaldi_zoo, utterance_clip

from data_prep.assemble import SplitOptions
from data_prep.manifest import PSEUDO_LABEL_REJECT_REASONS, REJECT_REASONS, read_manifest, read_rejects
from data_prep.merge import MergeError, merge
from data_prep.prepare import prepare
from data_prep.validate import inside
from pipeline.cli import main as cli

FAST = dict(jobs=1, max_duration=2.0, min_duration=0.3, vad="energy", trim_vad="none", progress=False)
OUTPUTS = ("manifest.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl", "rejects.jsonl", "accounting.json",
           "splits.json", "vocab.json", "oov.json", "stats.json", "stats.md", "durations.png", "prepare.json")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    return kaldi_zoo(tmp_path_factory.mktemp("zoo") / "corpus")


@pytest.fixture(scope="module")
def zoo_out(zoo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo_out")
    assert prepare(zoo, out, "kaldi", "sa", **FAST) == 0
    return out


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def snapshot_of(out: Path) -> dict[str, bytes]:
    """Every file of ``out`` but its cache."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "cache" not in p.relative_to(out).parts}  # fmt: skip


def test_every_data_prep_reject_reason_is_produced(zoo_out):
    rejects = read_rejects(zoo_out / "rejects.jsonl")
    by_id = {r.id: r.reason for r in rejects}
    assert by_id["x_missing"] == "missing_audio"
    assert by_id["x_garbage"] == "unreadable_audio"
    assert by_id["x_empty"] == "zero_length"
    assert by_id["x_nan"] == "nan_samples"
    assert by_id["x_silent"] == "silent_audio"
    assert by_id["x_short"] == "too_short"
    assert by_id["x_long"] == "too_long"
    assert by_id["x_longtext"] == "text_too_long"
    assert by_id["x_emptytext"] == "empty_text"
    assert by_id["x_latin"] == "foreign_script"
    assert by_id["x_outside"] == "path_outside_root"
    assert by_id["x_pipe"] == "shell_pipe"
    assert by_id["x_notext"] == "missing_text"
    assert by_id["x_nospeaker"] == "missing_speaker"
    assert by_id["x_malformed"] == "malformed_line"
    assert by_id["x_orphan"] == "missing_audio"
    reasons = {r.reason for r in rejects}
    # label_too_long belongs to training (labels vs encoder frames), symlink_loop to folder corpora
    # (test_dp_importers.py), no_noise_source to degrade (test_dp_degrade.py), the alignment ones to long
    # recordings (test_dp_longform.py, test_prepare_longform.py), the others to pseudo-labelling
    longform = {"alignment_failed", "low_alignment_score"}
    assert reasons == (REJECT_REASONS - {"label_too_long", "symlink_loop", "no_noise_source"} - longform
                       - PSEUDO_LABEL_REJECT_REASONS)
    for r in rejects:
        assert r.source.file and r.source.line > 0


def test_accounting_balances(zoo, zoo_out):
    acc = json.loads((zoo_out / "accounting.json").read_text())
    wav_lines = len((zoo / "data/all/wav.scp").read_text().splitlines())
    # every wav.scp line, plus the orphan transcript and the non-UTF-8 text line
    assert acc["input_rows"] == wav_lines + 2
    assert acc["input_rows"] == acc["accepted_rows"] + acc["rejected_rows"]
    assert acc["rejected_rows"] == sum(acc["rejected_by_reason"].values())
    assert acc["rejected_rows"] == len(read_rejects(zoo_out / "rejects.jsonl"))
    utts = read_manifest(zoo_out / "manifest.jsonl")
    assert acc["utterances"] == len(utts) == acc["accepted_rows"] + 1  # c2 was split in two
    assert acc["rows_split_into_segments"] == 1


def test_manifest_audio_is_16k_mono_flac_and_split_clip_has_aligned_text(zoo_out):
    utts = {u.id: u for u in read_manifest(zoo_out / "manifest.jsonl")}
    for u in utts.values():
        info = sf.info(u.audio_path(zoo_out))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "FLAC")
        assert u.offset + u.duration <= info.duration + 1e-3
    assert {"resampled", "downmixed"} <= set(utts["b2"].flags)
    s1, s2 = utts["c2-1"], utts["c2-2"]
    assert s1.audio == s2.audio and s1.text == "प्रथमं वाक्यं अस्ति" and s2.text == "द्वितीयं वाक्यं अस्ति"  # sa rules: word-final म् -> ं
    assert s1.offset == 0 and abs(s2.offset - (s1.offset + s1.duration)) < 1e-3
    assert 1.4 < s2.offset < 2.0  # cut inside the pause between the two bursts
    assert "segment:2/2" in s2.flags


def test_splits_are_speaker_disjoint_and_vocab_from_train(zoo_out):
    utts = read_manifest(zoo_out / "manifest.jsonl")
    split_of = {}
    for u in utts:
        assert split_of.setdefault(u.speaker, u.split) == u.split
    assert set(split_of.values()) == {"train", "dev", "test"}  # 3 speakers -> one per split
    report = json.loads((zoo_out / "splits.json").read_text())
    assert report["mode"] == "ratio"
    assert all(not v["shared_speakers"] for v in report["overlap"].values())
    vocab = json.loads((zoo_out / "vocab.json").read_text())
    assert list(vocab.items())[:3] == [("<pad>", 0), ("<unk>", 1), ("|", 2)]
    train_chars = {c for u in utts if u.split == "train" for c in u.text if c != " "}
    assert set(vocab) - {"<pad>", "<unk>", "|"} == train_chars
    oov = json.loads((zoo_out / "oov.json").read_text())
    dev_chars = [c for u in utts if u.split == "dev" for c in u.text.replace(" ", "")]
    assert oov["dev"]["oov_characters"] == sum(c not in vocab for c in dev_chars) > 0
    train_words = {w for u in utts if u.split == "train" for w in u.text.split()}
    dev_words = [w for u in utts if u.split == "dev" for w in u.text.split()]
    assert oov["dev"]["oov_words"] == sum(w not in train_words for w in dev_words) > 0
    assert oov["dev"]["word_oov_rate"] == round(oov["dev"]["oov_words"] / len(dev_words), 6)
    stats = json.loads((zoo_out / "stats.json").read_text())
    assert stats["total"]["utterances"] == len(utts)
    assert (zoo_out / "durations.png").read_bytes()[:4] == b"\x89PNG"


def test_stats_plot_and_characters_equal_the_plain_way(zoo_out, tmp_path):
    """durations.png has the bytes pyplot + tight_layout gave; characters are counted as one by one."""
    from collections import Counter

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from data_prep.splits import SPLITS
    from data_prep.stats import HIST_BIN_S, compute_stats, plot_durations

    def pyplot_durations(utts, path):  # plot_durations as it was written with pyplot
        fig, ax = plt.subplots(figsize=(7, 3.5))
        top = max([u.duration for u in utts], default=1.0)
        bins = np.arange(0, np.ceil(top) + HIST_BIN_S, HIST_BIN_S)
        for split in SPLITS:
            d = [u.duration for u in utts if u.split == split]
            if d:
                ax.hist(d, bins=bins, alpha=0.6, label=f"{split} ({len(d)})")
        ax.set_xlabel("duration (s)")
        ax.set_ylabel("utterances")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(fig)

    utts = read_manifest(zoo_out / "manifest.jsonl")
    longer = [u.replace(duration=u.duration * 7.3, split=("train", "dev", "test")[i % 3]) for i, u in enumerate(utts)]
    for case in (utts, utts[:1], longer, []):
        plot_durations(case, tmp_path / "new.png")
        pyplot_durations(case, tmp_path / "old.png")
        assert (tmp_path / "new.png").read_bytes() == (tmp_path / "old.png").read_bytes()
    chars = Counter(ch for u in utts for ch in u.text if ch != " ")
    assert compute_stats(utts, {})["characters"] == dict(sorted(chars.items(), key=lambda kv: (-kv[1], kv[0])))


def test_plot_drawn_in_a_forked_process_is_the_same_and_its_failure_raises(zoo, zoo_out, tmp_path, monkeypatch):
    import time

    import data_prep.stats as stats

    utts = read_manifest(zoo_out / "manifest.jsonl")
    stats.plot_durations(utts, tmp_path / "here.png")
    wait = stats.start_plot_durations(utts, tmp_path / "there.png")
    wait()
    assert (tmp_path / "there.png").read_bytes() == (tmp_path / "here.png").read_bytes()

    # a child that hangs is ended and the plot drawn in the caller
    real, caller = stats.plot_durations, os.getpid()

    def hangs_in_a_child(utts, path):
        if os.getpid() != caller:
            time.sleep(60)
        real(utts, path)

    monkeypatch.setattr(stats, "plot_durations", hangs_in_a_child)
    monkeypatch.setattr(stats, "PLOT_TIMEOUT_S", 0.5)
    stats.start_plot_durations(utts, tmp_path / "late.png")()
    assert (tmp_path / "late.png").read_bytes() == (tmp_path / "here.png").read_bytes()

    def boom(utts, path):
        raise ValueError("no plot today")

    monkeypatch.setattr(stats, "plot_durations", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the plot failed(.|\n)*no plot today"):
        prepare(zoo, out, "kaldi", "sa", **FAST)
    assert (out / "stats.json").exists() and not (out / "durations.png").exists()  # the rest was written


def test_the_plot_child_of_a_killed_run_dies_with_it(tmp_path):
    # a killed prepare's plot must not land in the folder a rerun writes, after the rerun's own
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import os, sys, time\n"
        "import data_prep.stats as stats\n"
        "def slow(utts, path):\n"
        "    time.sleep(1.5)\n"
        "    open(path, 'w').write('late')\n"
        "stats.plot_durations = slow\n"
        f"stats.start_plot_durations([], __import__('pathlib').Path({str(tmp_path / 'late.png')!r}))\n"
        "print('forked', flush=True)\n"
        "time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert p.stdout.readline().strip() == "forked"
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(2.5)
    assert not (tmp_path / "late.png").exists()


def test_rerun_and_partial_cache_give_identical_outputs(zoo, zoo_out, tmp_path):
    out = tmp_path / "out"
    assert prepare(zoo, out, "kaldi", "sa", **FAST) == 0
    first = snapshot(out)
    assert first == snapshot(zoo_out)  # a fresh run in another folder: byte-identical
    # simulate kill -9: half the cached clips and sidecars (rejects, VAD regions) gone, a stray temp file
    cached = sorted((out / "cache").rglob("*.flac")) + sorted((out / "cache").rglob("*.json"))
    for p in cached[::2]:
        p.unlink()
    next((out / "cache").rglob("*.flac")).with_name(".x.flac.tmp").write_bytes(b"partial")
    (out / "manifest.jsonl").unlink()
    assert prepare(zoo, out, "kaldi", "sa", **FAST) == 0
    assert snapshot(out) == first


def test_cached_rows_are_not_decoded_again(zoo, zoo_out, monkeypatch):
    import data_prep.process as P

    def boom(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(P, "_decode", boom)
    before = snapshot(zoo_out)
    assert prepare(zoo, zoo_out, "kaldi", "sa", **FAST) == 0
    assert snapshot(zoo_out) == before


def test_shards_then_merge_equal_single_run(zoo, zoo_out, tmp_path):
    out = tmp_path / "sharded"
    with pytest.raises(MergeError):
        merge(out)
    for i in range(3):
        assert prepare(zoo, out, "kaldi", "sa", num_shards=3, shard_index=i, **FAST) == 0
        assert not (out / "manifest.jsonl").exists()
    assert merge(out) == 0
    assert snapshot(out) == snapshot(zoo_out)


def test_merge_refuses_incomplete_or_mismatched_shards(zoo, tmp_path):
    out = tmp_path / "sharded"
    prepare(zoo, out, "kaldi", "sa", num_shards=2, shard_index=0, **FAST)
    with pytest.raises(MergeError, match="missing"):
        merge(out)
    prepare(zoo, out, "kaldi", "sa", num_shards=2, shard_index=1, **{**FAST, "min_duration": 0.2})
    with pytest.raises(MergeError, match="different settings"):
        merge(out)


def test_pipes_run_without_a_shell(zoo, tmp_path):
    out = tmp_path / "out"
    assert prepare(zoo, out, "kaldi", "sa", allow_pipes=True, **FAST) == 0
    utts = {u.id: u for u in read_manifest(out / "manifest.jsonl")}
    assert utts["x_pipe"].source_audio == "cat audio/a1.wav |"
    # shell syntax in a pipe is passed to the command as plain arguments, never interpreted
    corpus = tmp_path / "evil"
    utterance_clip(corpus / "a.wav")
    (corpus / "wav.scp").write_text(f"e1 cat {corpus}/a.wav; touch {tmp_path}/pwned |\ne2 cat {corpus}/a.wav |\n")
    (corpus / "text").write_text("e1 क\ne2 ख\n")
    assert prepare(corpus, tmp_path / "out2", "kaldi", "sa", allow_pipes=True, **FAST) == 0
    assert not (tmp_path / "pwned").exists()
    rejects = read_rejects(tmp_path / "out2" / "rejects.jsonl")
    assert [(r.id, r.reason) for r in rejects] == [("e1", "unreadable_audio")]


def test_outside_root_allowed_by_flag(zoo, tmp_path):
    out = tmp_path / "out"
    prepare(zoo, out, "kaldi", "sa", allow_outside_root=True, **FAST)
    assert "x_outside" in {u.id for u in read_manifest(out / "manifest.jsonl")}


def test_realpath_resolving_folders_once_equals_os_realpath(tmp_path):
    from data_prep.validate import forget_folders, realpath

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "a" / "b" / "f.wav").write_bytes(b"x")
    (tmp_path / "elsewhere" / "g.wav").write_bytes(b"x")
    (tmp_path / "a" / "link.wav").symlink_to(tmp_path / "elsewhere" / "g.wav")  # a symlinked file
    (tmp_path / "a" / "dirlink").symlink_to(tmp_path / "elsewhere")  # a symlinked folder
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a" / "loop")
    t = str(tmp_path)
    paths = [f"{t}/a/b/f.wav", f"{t}/a/link.wav", f"{t}/a/dirlink/g.wav", f"{t}/a/dirlink/../b/f.wav",
             f"{t}/a/b/../../a/b/f.wav", f"{t}/a//b/./f.wav", f"{t}/a/b/missing.wav", f"{t}/a/b/", f"{t}/a/b/.",
             f"{t}/a/b/..", f"{t}/a/loop/f.wav", f"{t}/a/loop", "/", "/f.wav", "a/b/f.wav", "f.wav", "./f.wav"]
    forget_folders()
    for _ in range(2):  # resolved, then from the resolved folders
        assert [realpath(p) for p in paths] == [os.path.realpath(p) for p in paths]
    # a folder is resolved once per run: prepare forgets them when it starts
    (tmp_path / "a" / "dirlink").unlink()
    (tmp_path / "a" / "dirlink").symlink_to(tmp_path / "a" / "b")
    forget_folders()
    assert realpath(f"{t}/a/dirlink/f.wav") == os.path.realpath(f"{t}/a/dirlink/f.wav") == f"{t}/a/b/f.wav"


def cv_corpus(root: Path, rows: dict[str, list[tuple[str, str, str]]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    for split, items in rows.items():
        lines = [header] + [f"{spk}\t{clip}\t{text}\t2\t0\t\t\t\tsa\t\n" for spk, clip, text in items]
        (root / f"{split}.tsv").write_text("".join(lines))
        for _, clip, _ in items:
            if not (root / "clips" / clip).exists():
                utterance_clip(root / "clips" / clip)
    return root


def test_corpus_splits_and_speaker_overlap_error(tmp_path):
    rows = {"train": [("s1", "a.wav", "क"), ("s2", "b.wav", "ख")], "dev": [("s3", "c.wav", "ग")],
            "test": [("s1", "d.wav", "घ")]}
    corpus = cv_corpus(tmp_path / "cv", rows)
    out = tmp_path / "out"
    assert prepare(corpus, out, "cv", "sa", **FAST) == 1  # s1 in train and test
    report = json.loads((out / "splits.json").read_text())
    assert report["mode"] == "corpus" and report["overlap"]["train/test"]["shared_speakers"] == ["s1"]
    assert not (out / "train.jsonl").exists()
    ok = SplitOptions(allow_speaker_overlap=True)
    assert prepare(corpus, out, "cv", "sa", opts=ok, **FAST) == 0
    assert [u.id for u in read_manifest(out / "test.jsonl")] == ["d"]


def test_symlinks_inside_the_corpus_are_followed_paths_outside_it_rejected(tmp_path):
    # a corpus assembled with links: its clips folder lives on another disk, and one clip there
    # is a link to a third place
    elsewhere = cv_corpus(tmp_path / "disk", {"train": [("s1", "a.wav", "क"), ("s2", "b.wav", "ख")]}) / "clips"
    corpus = tmp_path / "cv"
    corpus.mkdir()
    (corpus / "clips").symlink_to(elsewhere)
    utterance_clip(tmp_path / "third" / "c.wav")
    (elsewhere / "c.wav").symlink_to(tmp_path / "third" / "c.wav")
    utterance_clip(tmp_path / "outside.wav")  # clips/../../outside.wav, through the link
    rows = [("s1", "a.wav", "क"), ("s2", "b.wav", "ख"), ("s3", "c.wav", "ग"), ("s4", "../../outside.wav", "घ")]
    cv_corpus(corpus, {"train": rows})  # every clip exists already: it only writes train.tsv
    out = tmp_path / "out"
    assert prepare(corpus, out, "cv", "sa", **FAST) == 0
    assert sorted(u.text for u in read_manifest(out / "manifest.jsonl")) == ["क", "ख", "ग"]
    (bad,) = read_rejects(out / "rejects.jsonl")
    assert bad.reason == "path_outside_root" and bad.source.line == 5 and "--allow-outside-root" in bad.detail
    assert inside(f"{corpus}/clips/c.wav", str(corpus))
    assert not inside(f"{corpus}/clips/../c.wav", str(corpus))  # really disk/c.wav: `..` leaves the link's target


def test_a_missing_dev_split_is_carved_from_train_speakers_else_warned_about(tmp_path, capsys):
    rows = {"train": [("s1", "a.wav", "क"), ("s2", "c.wav", "ग")], "test": [("s3", "b.wav", "ख")]}
    out = tmp_path / "out"
    assert prepare(cv_corpus(tmp_path / "cv", rows), out, "cv", "sa", **FAST) == 0
    assert "note: the corpus has no dev split; 1 of its train speakers became dev" in capsys.readouterr().out
    assert json.loads((out / "splits.json").read_text())["mode"] == "corpus+carved"
    assert len(read_manifest(out / "dev.jsonl")) == 1 and len(read_manifest(out / "train.jsonl")) == 1
    rows = {"train": [("s1", "a.wav", "क")], "test": [("s3", "b.wav", "ख")]}  # one train speaker: kept
    assert prepare(cv_corpus(tmp_path / "cv1", rows), tmp_path / "out1", "cv", "sa", **FAST) == 0
    assert "warning: no utterances in the dev split" in capsys.readouterr().out


def test_a_corpus_with_nothing_accepted_is_an_error(tmp_path, capsys):
    corpus = cv_corpus(tmp_path / "cv", {"train": [("s1", "a.wav", "abc")]})  # Latin text: foreign_script
    out = tmp_path / "out"
    assert prepare(corpus, out, "cv", "sa", **FAST) == 1
    assert "no utterance accepted" in capsys.readouterr().out
    assert [r.reason for r in read_rejects(out / "rejects.jsonl")] == ["foreign_script"]


def test_cli_explicit_speakers_and_sentencepiece(tmp_path):
    rows = {"train": [(f"s{i % 4}", f"u{i}.wav", t) for i, t in enumerate(
        ["रामः वनं गच्छति", "सीता गृहे अस्ति", "बालकः पठति", "गजः चलति", "नदी वहति", "अहो दौर्भाग्यम्",
         "रामः पठति", "सीता वहति"])]}
    corpus = cv_corpus(tmp_path / "cv", rows)
    out = tmp_path / "out"
    base = ["prepare", "--format", "cv", "--src", str(corpus), "--lang", "sa", "--out", str(out), "--jobs", "2",
            "--no-progress", "--vad", "energy", "--trim-vad", "none"]
    assert cli(base + ["--split-speakers", "dev=s1,test=s2+s3", "--sentencepiece", "30"]) == 0
    split = {u.speaker: u.split for u in read_manifest(out / "manifest.jsonl")}
    assert split == {"s0": "train", "s1": "dev", "s2": "test", "s3": "test"}
    assert (out / "spm.model").stat().st_size > 0
    before = snapshot_of(out)
    # other settings into a prepared folder: refused, unless forced
    assert cli(base + ["--split-speakers", "dev=nobody"]) == 2
    assert cli(base + ["--split-speakers", "dev=nobody", "--force"]) == 1  # unknown speaker: a split error
    assert snapshot_of(out) == before  # a split plan that fails writes nothing: the folder stays whole


def test_missing_corpus_is_a_clear_error(tmp_path, capsys):
    assert cli(["prepare", "--format", "cv", "--src", str(tmp_path / "nope"), "--lang", "sa",
                "--out", str(tmp_path / "o")]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("../shared/corpora/punjabi_digits"), reason="real corpus absent")
def test_real_punjabi_digits(tmp_path):
    out = tmp_path / "pa"
    rc = prepare("../shared/corpora/punjabi_digits", out, "kaldi", "pa", script="Latn", jobs=2, progress=False)
    assert rc == 0
    acc = json.loads((out / "accounting.json").read_text())
    assert acc["input_rows"] == 240 == acc["accepted_rows"] + acc["rejected_rows"]
    assert all(sf.info(u.audio_path(out)).samplerate == 16000 for u in read_manifest(out / "manifest.jsonl"))


def _slow_square(k: int) -> int:
    import time

    time.sleep(0.002 * (k % 3))  # results come back out of order
    return k * k


def test_fork_map_keeps_order_reaps_its_workers_and_raises_their_errors():
    import multiprocessing as mp
    import resource

    from data_prep.forkmap import RemoteTraceback, fork_map

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    before = cpu()
    assert list(fork_map(_slow_square, range(40), 3)) == [k * k for k in range(40)]
    assert list(fork_map(_slow_square, [], 2)) == [] and list(fork_map(_slow_square, [5], 4)) == [25]
    assert not mp.active_children()  # every worker has exited and was reaped ...
    assert cpu() > before  # ... and its CPU time is counted

    offset = 100  # fork: a closure over the caller's data is fine

    def task(k: int) -> int:
        if k == 7:
            raise ValueError(f"bad task {k + offset}")
        return k

    with pytest.raises(ValueError, match="bad task 107") as info:
        list(fork_map(task, range(20), 2))
    assert isinstance(info.value.__cause__, RemoteTraceback) and "in task" in str(info.value.__cause__)
    assert not mp.active_children()

    with pytest.raises(RuntimeError, match="task 2: cannot send its result back"):
        list(fork_map(lambda k: (lambda: k) if k == 2 else k, range(6), 2))  # a lambda does not pickle

    def dies(k: int) -> int:
        if k == 3:
            os._exit(9)
        return k

    with pytest.raises(RuntimeError, match="died"):
        list(fork_map(dies, range(10), 2))
    assert not mp.active_children()


def test_rows_sharing_a_clip_in_one_batch_decode_it_once(tmp_path, monkeypatch):
    """A batch decodes its clips first, then analyses them: a row whose clip an earlier row of the
    batch computes takes that row's entry; the outputs are those of one clip at a time."""
    import data_prep.process as P

    corpus = tmp_path / "kaldi"
    for name in ("a", "b"):
        utterance_clip(corpus / "audio" / f"{name}.wav")
    d = corpus / "data" / "all"
    d.mkdir(parents=True)
    wav = {"r1": "a", "r2": "a", "r3": "b", "r4": "a", "r5": "b", "r6": "missing"}
    (d / "wav.scp").write_text("".join(f"{k} audio/{v}.wav\n" for k, v in wav.items()))
    (d / "text").write_text("".join(f"{k} {t}\n" for k, t in zip(wav, "कखगघङच")))
    (d / "utt2spk").write_text("".join(f"{k} s{i % 3}\n" for i, k in enumerate(wav)))
    real_decode, default = P._decode, P.GROUP_BYTES
    for fmt in ("flac", "none"):
        outs = {}
        for group_bytes in (default, 0):  # 0: each clip is analysed right after its decode
            monkeypatch.setattr(P, "GROUP_BYTES", group_bytes)
            decoded: list[str] = []
            monkeypatch.setattr(P, "_decode", lambda row, cfg, seen=decoded: seen.append(row.audio)
                                or real_decode(row, cfg))
            out = tmp_path / f"{fmt}-{group_bytes}"
            assert prepare(corpus, out, "kaldi", "sa", cache_format=fmt, **FAST) == 0
            assert sorted(Path(a).name for a in decoded) == ["a.wav", "b.wav"]
            outs[group_bytes] = snapshot(out)
            if fmt == "none":
                (journal,) = (out / "cache" / "ref").glob("*.jsonl")
                assert journal.read_bytes().count(b'"meta"') == 2  # one line per clip
            else:
                assert len(list((out / "cache").rglob("*.flac"))) == 2
        assert outs[default] == outs[0]
        assert len(read_manifest(out / "manifest.jsonl")) == 5


def test_fork_map_workers_exit_when_their_caller_is_killed():
    """kill -9 of prepare: its workers see the end of their pipe and exit instead of lingering."""
    import signal
    import time

    from data_prep.forkmap import fork_map

    r, w = os.pipe()
    caller = os.fork()
    if caller == 0:  # the caller: reports its workers, then maps slowly until killed
        try:
            os.close(r)
            for x in fork_map(lambda k: time.sleep(0.05) or k, range(1000), 2):
                if x == 0:
                    kids = os.popen(f"ps -o pid= --ppid {os.getpid()}").read().split()
                    os.write(w, " ".join(kids).encode() + b"\n")
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        workers = [int(p) for p in f.readline().split()]
    os.kill(caller, signal.SIGKILL)
    os.waitpid(caller, 0)
    assert len(workers) >= 2

    def running(pid: int) -> bool:
        try:
            return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    lingering = [pid for pid in workers if running(pid)]
    for pid in lingering:  # (a failure must not leave them holding the test run's output open)
        os.kill(pid, signal.SIGKILL)
    assert not lingering

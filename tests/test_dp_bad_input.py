"""Bad input through ``prepare``: a clear error naming the file, or a reject with a reason; nothing lost."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from dp_fixtures import riff_wav, speechlike, utterance_clip
from tree_fixtures import tree_digest

from data_prep import audio as A
from data_prep import process
from data_prep.manifest import read_manifest, read_rejects
from data_prep.prepare import prepare
from pipeline.cli import main as cli

FAST = dict(jobs=1, vad="energy", trim_vad="none", progress=False)
HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"


def cv(root, clips: dict[str, bytes | None]):
    """A validated.tsv corpus: clip name -> its bytes (None: a generated utterance)."""
    for name, data in clips.items():
        if data is None:
            utterance_clip(root / "clips" / name)
        else:
            (root / "clips" / name).write_bytes(data)
    (root / "validated.tsv").write_text(HEADER + "".join(f"s{i}\t{n}\tक\t2\t0\t\t\t\tsa\t\n"
                                                         for i, n in enumerate(clips)))
    return root


def args(src, out, fmt="cv"):
    return ["prepare", "--format", fmt, "--src", str(src), "--lang", "sa", "--out", str(out), "--jobs", "1",
            "--no-progress", "--vad", "energy", "--trim-vad", "none"]


def test_a_zero_byte_clip_is_rejected_zero_length_saying_so(tmp_path):
    out = tmp_path / "out"
    assert prepare(cv(tmp_path / "cv", {"a.wav": None, "b.wav": b""}), out, "cv", "sa", **FAST) == 0
    (r,) = read_rejects(out / "rejects.jsonl")
    assert (r.id, r.reason, r.source.line) == ("b", "zero_length", 3) and "empty (0 bytes)" in r.detail


def test_an_undecodable_file_warns_nothing_besides_its_error(tmp_path):
    # librosa's fallback and deprecation warnings reached the terminal for every such clip
    (tmp_path / "x.wav").write_text("not audio\n")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(A.AudioError, match="x.wav"):
            A.read_audio(tmp_path / "x.wav")
    assert [str(w.message) for w in seen] == []


def test_out_inside_a_folder_corpus_is_refused(tmp_path, capsys):
    # its cached clips would be read as corpus audio by the rerun: 1 input row, then 1 + cached
    utterance_clip(tmp_path / "c" / "a.wav")
    (tmp_path / "c" / "a.txt").write_text("क")
    assert cli(args(tmp_path / "c", tmp_path / "c" / "prep", "folder")) == 2
    assert "lies inside --src" in capsys.readouterr().err
    assert not (tmp_path / "c" / "prep").exists()


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "out").write_text("")
    assert cli(args(cv(tmp_path / "cv", {"a.wav": None}), tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"--out {tmp_path / 'out'} exists and is not a folder" in err


@pytest.mark.parametrize("cache_format", ["flac", "none"])
def test_a_cache_that_cannot_be_written_stops_the_run_instead_of_rejecting_rows(tmp_path, capsys, cache_format):
    # a full disk or an unwritable output is no row's fault: it was unreadable_audio for every row
    # (FLAC cache) or a traceback (reference mode's journal)
    corpus = cv(tmp_path / "cv", {"a.wav": None, "b.wav": None})
    out = tmp_path / "out"
    out.mkdir()
    (out / "cache").write_text("")  # every write below it fails
    assert cli(args(corpus, out) + ["--cache-format", cache_format]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{out / 'cache'}" in err and "Not a directory" in err
    assert not (out / "rejects.jsonl").exists() and not (out / "manifest.jsonl").exists()


def test_kaldi_nan_segment_times_are_rejected_not_fatal(tmp_path):
    # a "nan" time went through to the decoder and ended the run with "cannot convert float NaN to integer"
    utterance_clip(tmp_path / "c" / "r.wav", 2.0)
    (tmp_path / "c" / "wav.scp").write_text("r r.wav\n")
    (tmp_path / "c" / "segments").write_text("ok r 0.1 1.5\nbad r 0 nan\n")
    (tmp_path / "c" / "text").write_text("ok क\nbad ख\n")
    out = tmp_path / "out"
    assert prepare(tmp_path / "c", out, "kaldi", "sa", **FAST) == 0
    assert [u.id for u in read_manifest(out / "manifest.jsonl")] == ["ok"]
    assert [(r.id, r.reason, str(r.source)) for r in read_rejects(out / "rejects.jsonl")] == [
        ("bad", "malformed_line", "segments:2")]
    acc = json.loads((out / "accounting.json").read_text())
    assert (acc["input_rows"], acc["accepted_rows"], acc["rejected_rows"]) == (2, 1, 1)


def test_audiofolder_lone_surrogate_is_a_reject_not_a_failed_write(tmp_path):
    utterance_clip(tmp_path / "c" / "a.wav")
    utterance_clip(tmp_path / "c" / "b.wav")
    (tmp_path / "c" / "metadata.jsonl").write_text('{"file_name": "a.wav", "text": "क"}\n'
                                                   '{"file_name": "b.wav", "text": "\\udc00 ख"}\n')
    out = tmp_path / "out"
    assert prepare(tmp_path / "c", out, "audiofolder", "sa", **FAST) == 0
    assert [u.id for u in read_manifest(out / "manifest.jsonl")] == ["a"]
    assert [(r.reason, str(r.source)) for r in read_rejects(out / "rejects.jsonl")] == [
        ("malformed_line", "metadata.jsonl:2")]


@pytest.mark.parametrize("data, reason, detail", [
    (riff_wav(sr=0), "unreadable_audio", "sample rate 0 Hz is not a plausible audio rate"),
    (riff_wav(sr=2**31 - 1), "unreadable_audio", "sample rate 2147483647 Hz is not a plausible audio rate"),
    (riff_wav(channels=0), "unreadable_audio", "Channel count is zero"),
    (riff_wav()[:40], "unreadable_audio", "No 'data' chunk"),  # cut inside its header
    (riff_wav(samples=np.full(8000, np.inf), float32=True), "nan_samples", "8000 NaN/infinite samples"),
    (riff_wav(sr=10**6, samples=speechlike(0.5)[:40]), "zero_length", "not one sample at 16000 Hz"),
], ids=["rate0", "rate2**31-1", "no_channels", "cut_header", "infinite", "40_samples_at_1MHz"])  # fmt: skip
def test_a_damaged_header_is_one_reject_naming_the_file_and_the_others_go_on(tmp_path, data, reason, detail):
    # a rate of 0 or 2**31 - 1 ended the whole run ("zero-size array to reduction operation maximum"),
    # naming no file and writing no output
    corpus = cv(tmp_path / "cv", {"a.wav": None, "bad.wav": data, "c.wav": None})
    before = tree_digest(tmp_path / "cv")
    assert cli(args(corpus, tmp_path / "out")) == 0
    (r,) = read_rejects(tmp_path / "out" / "rejects.jsonl")
    assert (r.id, r.reason, str(r.source)) == ("bad", reason, "validated.tsv:3") and detail in r.detail
    assert r.audio == str(corpus / "clips" / "bad.wav")
    assert [u.id for u in read_manifest(tmp_path / "out" / "manifest.jsonl")] == ["a", "c"]
    assert tree_digest(tmp_path / "cv") == before


@pytest.mark.parametrize("cache_format", ["flac", "none"])
def test_whatever_the_analysis_of_one_clip_raises_is_its_reject(tmp_path, monkeypatch, cache_format):
    corpus = cv(tmp_path / "cv", {"a.wav": None, "b.wav": riff_wav(samples=speechlike(0.7))})
    analyse = process.analyse

    def failing(data, sr, cfg, **kw):
        if len(data) == int(0.7 * 16000):
            raise ValueError("an unforeseen failure")
        return analyse(data, sr, cfg, **kw)

    monkeypatch.setattr(process, "analyse", failing)
    assert prepare(corpus, tmp_path / "out", "cv", "sa", cache_format=cache_format, **FAST) == 0
    (r,) = read_rejects(tmp_path / "out" / "rejects.jsonl")
    assert (r.id, r.reason) == ("b", "unreadable_audio")
    assert r.detail == f"{corpus / 'clips' / 'b.wav'}: cannot process the audio (ValueError: an unforeseen failure)"
    assert [u.id for u in read_manifest(tmp_path / "out" / "manifest.jsonl")] == ["a"]


def test_a_failure_to_split_one_long_clip_is_its_reject(tmp_path, monkeypatch):
    corpus = cv(tmp_path / "cv", {"a.wav": None, "long.wav": riff_wav(samples=speechlike(3.0))})

    def failing(*args, **kw):
        raise RuntimeError("the VAD failed")

    monkeypatch.setattr(process, "speech_regions", failing)
    assert prepare(corpus, tmp_path / "out", "cv", "sa", max_duration=2.0, **FAST) == 0
    (r,) = read_rejects(tmp_path / "out" / "rejects.jsonl")
    assert (r.id, r.reason) == ("long", "unreadable_audio")
    assert r.detail == f"{corpus / 'clips' / 'long.wav'}: cannot process the audio (RuntimeError: the VAD failed)"


def test_a_pipe_line_that_cannot_be_split_is_a_reject(tmp_path):
    # shlex's "No closing quotation" ended the run
    utterance_clip(tmp_path / "c" / "a.wav")
    (tmp_path / "c" / "wav.scp").write_text('a a.wav\nb cat "a.wav |\n')
    (tmp_path / "c" / "text").write_text("a क\nb ख\n")
    assert prepare(tmp_path / "c", tmp_path / "out", "kaldi", "sa", allow_pipes=True, **FAST) == 0
    (r,) = read_rejects(tmp_path / "out" / "rejects.jsonl")
    assert (r.id, r.reason, str(r.source)) == ("b", "unreadable_audio", "wav.scp:2") and "No closing quotation" in r.detail


def test_a_transcript_far_longer_than_its_audio_is_rejected_and_a_short_clip_keeps_a_floor(tmp_path, capsys):
    # a 1 MB transcript on a 1.5 s clip was accepted: only training skipped it later
    root = tmp_path / "cv"
    utterance_clip(root / "clips" / "ok.wav")
    utterance_clip(root / "clips" / "huge.wav", 0.9)  # 1.5 s with its pauses, about 1.2 s once trimmed
    utterance_clip(root / "clips" / "quick.wav", 0.2)  # about 0.5 s once trimmed, 45 characters: under the floor
    sentences = {"ok.wav": "क ख", "huge.wav": "कखगघ " * 200_000, "quick.wav": "कखगघङचछजझञ " * 4 + "टठडढण"}
    (root / "validated.tsv").write_text(HEADER + "".join(f"s{i}\t{n}\t{t}\t2\t0\t\t\t\tsa\t\n"
                                                         for i, (n, t) in enumerate(sentences.items())))
    before = tree_digest(root)
    assert cli(args(root, tmp_path / "out")) == 0
    (r,) = read_rejects(tmp_path / "out" / "rejects.jsonl")
    assert (r.id, r.reason, str(r.source)) == ("huge", "text_too_long", "validated.tsv:3")
    assert r.detail.startswith("999999 characters of transcript for 1.") and "at most 50 a second" in r.detail
    assert [u.id for u in read_manifest(tmp_path / "out" / "manifest.jsonl")] == ["ok", "quick"]
    assert "text_too_long 1" in capsys.readouterr().out
    assert tree_digest(root) == before


def test_allow_pipes_help_says_it_runs_the_corpus_commands(capsys):
    with pytest.raises(SystemExit):
        cli(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("--allow-pipes run the commands written in the corpus's wav.scp (`cmd args |` lines) to get their audio: "
            "any program they name runs with your rights, without a shell; use only with a corpus you trust") in text


def test_a_corpus_in_another_script_is_told_the_script_and_the_option(tmp_path, capsys):
    # a romanized Punjabi corpus under the Gurmukhi rules said only "no utterance accepted"
    root = tmp_path / "c"
    texts = {"u1": "sifar ikk do", "u2": "tinn chaar", "u3": "panj chhe satt", "u4": "ਇੱਕ ਦੋ"}
    for uid in texts:
        utterance_clip(root / f"{uid}.wav")
    (root / "wav.scp").write_text("".join(f"{uid} {uid}.wav\n" for uid in texts))
    (root / "text").write_text("".join(f"{uid} {t}\n" for uid, t in texts.items()))
    before = tree_digest(root)
    base = ["prepare", "--format", "kaldi", "--src", str(root), "--lang", "pa", "--jobs", "1", "--no-progress",
            "--vad", "energy", "--trim-vad", "none"]
    assert cli([*base, "--out", str(tmp_path / "out")]) == 0  # u4 is accepted
    summary = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("input "))
    assert summary.endswith("rejected: foreign_script 3; most rejects are foreign_script, their letters in Latin "
                            "script (Latn, 3 rows): if the corpus writes the language so, rerun with --script Latn")
    assert cli([*base, "--out", str(tmp_path / "latn"), "--script", "Latn"]) == 0
    summary = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("input "))
    assert summary.endswith("rejected: foreign_script 1")  # the Gurmukhi row: a minority, no hint
    assert tree_digest(root) == before

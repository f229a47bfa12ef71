"""Each importer on a tiny generated corpus: rows, sources, splits, and unparseable lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dp_fixtures import clip, utterance_clip, write
from tree_fixtures import tree_digest

from data_prep.importers import CorpusError, RawRow, import_corpus
from data_prep.manifest import Reject, read_manifest, read_rejects
from data_prep.prepare import prepare
from pipeline.cli import main as cli

FAST = dict(jobs=1, vad="energy", trim_vad="none", progress=False)


def split_rows(rows):
    return [r for r in rows if isinstance(r, RawRow)], [r for r in rows if isinstance(r, Reject)]


def test_common_voice(tmp_path):
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"
    (tmp_path / "train.tsv").write_bytes(
        (header + "c1\ta.mp3\tरामः ।\t2\t0\t\t\t\tsa\t\n" + "c1\tb.mp3\ttoo\tfew\n").encode()
        + b"c2\tc.mp3\t\xff\xfe\t2\t0\t\t\t\tsa\t\n"
    )
    (tmp_path / "test.tsv").write_text(header + 'c3\td.mp3\t"quoted" सीता\t2\t0\t\t\t\tsa\t\n')
    good, bad = split_rows(import_corpus("cv", tmp_path))
    assert [(r.id, r.speaker, r.split, r.source.file, r.source.line) for r in good] == [
        ("a", "c1", "train", "train.tsv", 2), ("d", "c3", "test", "test.tsv", 2)]
    assert good[0].audio == str(tmp_path / "clips" / "a.mp3")
    assert good[1].text_raw == '"quoted" सीता'  # CV does not quote: quotes are text
    assert [(r.reason, r.source.line) for r in bad] == [("malformed_line", 3), ("not_utf8", 4)]


def test_common_voice_requires_split_files(tmp_path):
    with pytest.raises(CorpusError, match="train.tsv"):
        import_corpus("cv", tmp_path)


def test_kaldi_segments_cut_long_recordings(tmp_path):
    root = tmp_path / "k"
    write(root / "rec.wav", clip(("p", 0.2), ("s", 1.0), ("p", 0.6), ("s", 1.0), ("p", 0.2)))
    d = root / "data" / "train"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("rec rec.wav\n")
    (d / "segments").write_text("u1 rec 0.0 1.3\nu2 rec 1.6 -1\nu3 nope 0 1\nu4 rec 2 1\n")
    (d / "text").write_text("u1 क ख\nu2 ग घ\nu3 च\nu4 छ\n")
    (d / "utt2spk").write_text("u1 s1\nu2 s1\n")
    good, bad = split_rows(import_corpus("kaldi", root))
    assert [(r.id, r.offset, r.duration, r.speaker) for r in good] == [("u1", 0.0, 1.3, "s1"), ("u2", 1.6, None, "s1")]
    assert [(r.id, r.reason) for r in bad] == [("u3", "missing_audio"), ("u4", "malformed_line")]
    out = tmp_path / "out"
    prepare(root, out, "kaldi", "sa", **FAST)
    utts = {u.id: u for u in read_manifest(out / "manifest.jsonl")}
    assert 1.0 <= utts["u1"].duration <= 1.3 and 1.0 <= utts["u2"].duration <= 1.4


def test_kaldi_utterance_missing_from_utt2spk_is_rejected(tmp_path):
    d = tmp_path / "k"
    for utt in ("u1", "u2"):
        utterance_clip(d / f"{utt}.wav")
    (d / "wav.scp").write_text("u1 u1.wav\nu2 u2.wav\n")
    (d / "text").write_text("u1 क\nu2 ख\n")
    (d / "utt2spk").write_text("u1 s1\n")
    good, bad = split_rows(import_corpus("kaldi", d))
    assert [(r.id, r.speaker) for r in good] == [("u1", "s1")]
    assert [(r.reason, r.id, r.text_raw, Path(r.audio).name, r.source.file, r.source.line) for r in bad] == [
        ("missing_speaker", "u2", "ख", "u2.wav", "wav.scp", 2)]
    (d / "utt2spk").unlink()  # no utt2spk at all: no speakers, every utterance kept
    good, bad = split_rows(import_corpus("kaldi", d))
    assert [(r.id, r.speaker) for r in good] == [("u1", ""), ("u2", "")] and not bad


def test_kaldi_needs_one_data_dir(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "wav.scp").write_text("")
    with pytest.raises(CorpusError, match="several"):
        import_corpus("kaldi", tmp_path)


def test_audiofolder_csv_with_split_folders(tmp_path):
    for split, name in (("train", "x.wav"), ("validation", "y.wav")):
        utterance_clip(tmp_path / split / name)
    (tmp_path / "train" / "metadata.csv").write_text(
        'file_name,transcription,speaker_id\nx.wav,"रामः, वनं",s1\nbad.wav\n')
    (tmp_path / "validation" / "metadata.csv").write_text("file_name,sentence\ny.wav,सीता\n")
    good, bad = split_rows(import_corpus("audiofolder", tmp_path))
    assert [(r.id, r.split, r.speaker, r.text_raw) for r in good] == [
        ("train-x", "train", "s1", "रामः, वनं"), ("validation-y", "dev", "", "सीता")]
    assert [(r.reason, r.source.file, r.source.line) for r in bad] == [("malformed_line", "train/metadata.csv", 3)]


def test_audiofolder_jsonl(tmp_path):
    utterance_clip(tmp_path / "a" / "x.flac")
    lines = [json.dumps({"file_name": "a/x.flac", "text": "क", "speaker": "s"}, ensure_ascii=False), "{oops",
             json.dumps({"file_name": "a/z.flac"})]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    good, bad = split_rows(import_corpus("audiofolder", tmp_path))
    assert [(r.id, r.speaker, r.split) for r in good] == [("a-x", "s", "")]
    assert [r.reason for r in bad] == ["malformed_line", "malformed_line"]


def test_folder(tmp_path):
    utterance_clip(tmp_path / "spk1" / "u1.wav")
    (tmp_path / "spk1" / "u1.txt").write_text("रामः\nवनं गच्छति\n")
    utterance_clip(tmp_path / "u2.flac")
    (tmp_path / "u2.txt").write_bytes(b"\xff bad")
    utterance_clip(tmp_path / "u3.wav")
    (tmp_path / "orphan.txt").write_text("क")
    (tmp_path / ".hidden").mkdir()
    utterance_clip(tmp_path / ".hidden" / "h.wav")
    rows = import_corpus("folder", tmp_path)
    good, bad = split_rows(rows)
    assert [(r.id, r.speaker, r.text_raw, r.source.file) for r in good] == [("spk1-u1", "spk1", "रामः वनं गच्छति",
                                                                              "spk1/u1.txt")]
    assert [(r.reason, r.id) for r in bad] == [("not_utf8", "u2"), ("missing_text", "u3"), ("missing_audio", "orphan")]


def test_folder_follows_symlinks_and_rejects_what_a_link_cannot_give(tmp_path, capsys):
    # a speaker folder that was a symlink was skipped without a word: "input 1 = accepted 1 [OK]"
    root = tmp_path / "c"
    utterance_clip(root / "spk1" / "a.wav")
    (root / "spk1" / "a.txt").write_text("क")
    for name in ("x", "y", "z"):  # the linked speaker's clips live outside the corpus folder
        utterance_clip(tmp_path / "elsewhere" / "spk2" / f"{name}.wav")
        (tmp_path / "elsewhere" / "spk2" / f"{name}.txt").write_text("ख")
    (root / "spk2").symlink_to(tmp_path / "elsewhere" / "spk2", target_is_directory=True)
    (root / "spk1" / "b.wav").symlink_to(root / "spk1" / "a.wav")  # a linked clip, with its own transcript
    (root / "spk1" / "b.txt").write_text("ग")
    (root / "spk1" / "up").symlink_to(root, target_is_directory=True)  # a loop: must not hang
    (root / "spk1" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (root / "spk3").symlink_to(tmp_path / "no_folder", target_is_directory=True)
    before = tree_digest(tmp_path)
    good, bad = split_rows(import_corpus("folder", root))
    assert [(r.id, r.speaker, r.audio) for r in good] == [
        ("spk1-a", "spk1", str(root / "spk1" / "a.wav")), ("spk1-b", "spk1", str(root / "spk1" / "b.wav")),
        *[(f"spk2-{n}", "spk2", str(root / "spk2" / f"{n}.wav")) for n in ("x", "y", "z")]]  # fmt: skip
    assert [(r.reason, r.detail) for r in bad] == [
        ("missing_audio", f"spk1/gone.wav: a symlink to {tmp_path / 'nowhere.wav'}, which does not exist"),
        ("symlink_loop", f"spk1/up: a symlink to {root}, a folder it lies in: not followed (its files are read "
                         "where they lie)"),
        ("missing_audio", f"spk3: a symlink to {tmp_path / 'no_folder'}, which does not exist")]  # fmt: skip
    assert cli(["prepare", "--format", "folder", "--src", str(root), "--lang", "sa", "--out", str(tmp_path / "out"),
                "--jobs", "1", "--no-progress", "--vad", "energy", "--trim-vad", "none"]) == 0  # fmt: skip
    assert "input 8 = accepted 5 + rejected 3 [OK]" in capsys.readouterr().out
    assert tree_digest(tmp_path, skip=tmp_path / "out") == before


def test_folder_end_to_end_with_stereo_44k(tmp_path):
    root = tmp_path / "c"
    y = clip(("p", 0.3), ("s", 1.0), ("p", 0.3), sr=44100)
    write(root / "a.wav", np.stack([y, 0.5 * y], axis=1), 44100)
    (root / "a.txt").write_text("Hello, World!")
    out = tmp_path / "out"
    prepare(root, out, "folder", "en", **FAST)
    (u,) = read_manifest(out / "manifest.jsonl")
    assert (u.text, u.text_raw, u.sample_rate, u.channels) == ("hello world", "Hello, World!", 16000, 1)
    assert {"resampled", "downmixed", "trimmed"} <= set(u.flags)


def test_rel_by_string_equals_pathlib():
    from pathlib import Path

    from data_prep.importers.base import rel

    roots = ["/c/root", "/c/root/", "/c//root", "/c/./root", "/", "/c/ro", "c/root"]
    paths = ["/c/root/clips/a.mp3", "/c/root/a.mp3", "/c/root", "/c/root/", "/c/root//clips/a.mp3",
             "/c/root/./a.mp3", "/c/root/clips/../a.mp3", "/c/root/a.mp3/.", "/c/rootx/a.mp3", "/c/ro/a.mp3",
             "/elsewhere/a.mp3", "//c/root/a.mp3", "c/root/a.mp3"]

    def reference(path, root):
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            return str(path)

    for root in roots:
        for path in paths:
            assert rel(path, root) == reference(path, root), (path, root)


def test_kaldi_segment_times_that_are_not_finite_are_malformed_lines(tmp_path):
    # float() takes "nan", "inf" and 1e400; as times they stopped the whole run in the decoder
    utterance_clip(tmp_path / "r.wav", 2.0)
    (tmp_path / "wav.scp").write_text("r r.wav\n")
    segs = {"ok": "r 0.1 1.5", "a": "r nan 1.0", "b": "r 0 nan", "c": "r 0 inf", "d": "r inf -1", "e": "r 0 1e400"}
    (tmp_path / "segments").write_text("".join(f"{k} {v}\n" for k, v in segs.items()))
    (tmp_path / "text").write_text("".join(f"{k} क\n" for k in segs))
    good, bad = split_rows(import_corpus("kaldi", tmp_path))
    assert [r.id for r in good] == ["ok"]
    assert [(r.id, r.reason, r.source.line) for r in bad] == [
        ("a", "malformed_line", 2), ("b", "malformed_line", 3), ("c", "malformed_line", 4),
        ("d", "malformed_line", 5), ("e", "malformed_line", 6)]


def test_kaldi_malformed_line_of_an_utterance_is_its_only_reject(tmp_path):
    # its transcript is not reported again as "a transcript but no audio entry"
    utterance_clip(tmp_path / "r.wav", 2.0)
    (tmp_path / "wav.scp").write_text("r r.wav\n")
    (tmp_path / "segments").write_text("ok r 0.1 1.5\nfew r 0\n")
    (tmp_path / "text").write_text("ok क\nfew ख\n")
    good, bad = split_rows(import_corpus("kaldi", tmp_path))
    assert [r.id for r in good] == ["ok"]
    assert [(r.id, r.reason, r.source.file, r.text_raw) for r in bad] == [("few", "malformed_line", "segments", "ख")]


def test_audiofolder_csv_quoted_field_may_span_lines(tmp_path):
    # valid CSV: a quoted transcript holding a newline is one record, named by its first line;
    # it was cut at the newline (kept truncated, or two malformed lines)
    for name in ("a", "b", "c"):
        utterance_clip(tmp_path / f"{name}.wav")
    (tmp_path / "metadata.csv").write_bytes(
        'file_name,transcription\na.wav,"रामः\nवनं ""गच्छति"""\nb.wav,सीता\n'.encode()
        + b'c.wav,"\xff\nx"\nd.wav,"never closed\n')
    good, bad = split_rows(import_corpus("audiofolder", tmp_path))
    assert [(r.id, r.text_raw, r.source.line) for r in good] == [("a", 'रामः\nवनं "गच्छति"', 2), ("b", "सीता", 4)]
    assert [(r.reason, r.source.line) for r in bad] == [("not_utf8", 5), ("malformed_line", 7)]


def test_audiofolder_jsonl_lone_surrogate_or_non_string_transcript_is_malformed(tmp_path):
    # a "\ud800" escape decodes to a lone surrogate, which stopped the run when the manifest was written
    utterance_clip(tmp_path / "a.wav")
    lines = ['{"file_name": "a.wav", "text": "\\ud800 क"}', '{"file_name": "a.wav", "text": ["क"]}',
             '{"file_name": "a.wav", "text": 5}', '{"file_name": "a.wav", "text": "\\u0915"}']
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    good, bad = split_rows(import_corpus("audiofolder", tmp_path))
    assert [(r.text_raw, r.source.line) for r in good] == [("क", 4)]
    assert [(r.reason, r.source.line) for r in bad] == [("malformed_line", 1), ("malformed_line", 2),
                                                         ("malformed_line", 3)]
    assert "surrogate" in bad[0].detail and "not a string" in bad[1].detail


def test_folder_non_utf8_file_names_are_rejected_and_upper_case_txt_is_read(tmp_path):
    import os
    import shutil

    utterance_clip(tmp_path / "spk" / "A.WAV")
    (tmp_path / "spk" / "A.TXT").write_text("रामः")
    bad_name = os.fsencode(tmp_path / "spk") + b"/b\xff"
    shutil.copy(tmp_path / "spk" / "A.WAV", bad_name + b".wav")
    with open(bad_name + b".txt", "w") as f:
        f.write("क")
    with open(bad_name + b"2.txt", "w") as f:  # an orphan transcript with such a name
        f.write("क")
    good, bad = split_rows(import_corpus("folder", tmp_path))
    assert [(r.id, r.text_raw, r.source.file) for r in good] == [("spk-A", "रामः", "spk/A.TXT")]
    assert [(r.reason, r.source.file) for r in bad] == [("not_utf8", "spk/b\\xff.wav"), ("not_utf8", "spk/b\\xff2.txt")]
    out = tmp_path.parent / f"{tmp_path.name}-out"
    assert prepare(tmp_path, out, "folder", "sa", **FAST) == 0  # the rejects file can hold them
    assert [r.source.file for r in read_rejects(out / "rejects.jsonl")] == ["spk/b\\xff.wav", "spk/b\\xff2.txt"]

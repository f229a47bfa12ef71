"""Each importer on a tiny generated corpus: rows, sources, splits, and unparseable lines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dp_fixtures import clip, utterance_clip, write

from data_prep.importers import CorpusError, RawRow, import_corpus
from data_prep.manifest import Reject, read_manifest
from data_prep.prepare import prepare

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

"""``prepare --format hf``: Hugging Face datasets on disk (Parquet / Arrow files with an Audio column)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pyarrow", exc_type=ImportError)  # ImportError: the installed NumPy is older than it needs

from dp_fixtures import clip, hf_parquet, wav_bytes  # noqa: E402
from tree_fixtures import tree_digest  # noqa: E402

from data_prep.importers import CorpusError, HFColumns, RawRow, import_corpus  # noqa: E402
from data_prep.manifest import Reject, read_manifest, read_rejects  # noqa: E402
from pipeline.cli import main as cli  # noqa: E402


def _speech(seed: float = 1.0) -> bytes:
    return wav_bytes(clip(("p", 0.3), ("s", seed), ("p", 0.3)))


def cv_like(root: Path) -> Path:
    """Common Voice's columns: train (two files, one row undecodable, one with no text) and test."""
    hf_parquet(root / "data/train-00000-of-00002.parquet", [
        {"audio": {"bytes": _speech(1.0), "path": "cv_1.mp3"}, "sentence": "रामः वनं गच्छति", "client_id": "s1"},
        {"audio": {"bytes": b"not audio at all", "path": "cv_2.mp3"}, "sentence": "सीता", "client_id": "s1"},
        {"audio": {"bytes": _speech(1.2), "path": "cv_3.mp3"}, "sentence": None, "client_id": "s2"},
    ])
    hf_parquet(root / "data/train-00001-of-00002.parquet", [
        {"audio": {"bytes": _speech(0.9), "path": "cv_4.mp3"}, "sentence": "लक्ष्मणः", "client_id": "s2"},
    ])
    hf_parquet(root / "data/test-00000-of-00001.parquet", [
        {"audio": {"bytes": _speech(1.1), "path": "cv_5.mp3"}, "sentence": "हनुमान्", "client_id": "s3"},
    ])
    hf_parquet(root / "data/other-00000-of-00001.parquet", [
        {"audio": {"bytes": _speech(1.1), "path": "cv_6.mp3"}, "sentence": "भरतः", "client_id": "s4"},
    ])
    return root


def test_hf_rows_splits_sources_and_detected_columns(tmp_path):
    rows = import_corpus("hf", cv_like(tmp_path))
    good = [r for r in rows if isinstance(r, RawRow)]
    bad = [r for r in rows if isinstance(r, Reject)]
    assert [(r.id, r.speaker, r.split, str(r.source)) for r in good] == [
        ("cv_1", "s1", "train", "data/train-00000-of-00002.parquet:1"),
        ("cv_2", "s1", "train", "data/train-00000-of-00002.parquet:2"),
        ("cv_4", "s2", "train", "data/train-00001-of-00002.parquet:1"),
        ("cv_5", "s3", "test", "data/test-00000-of-00001.parquet:1")]  # "other" only when asked for
    assert good[1].embedded.index == 1 and good[1].audio == str(tmp_path / "data/train-00000-of-00002.parquet")
    assert [(r.reason, str(r.source)) for r in bad] == [("malformed_line", "data/train-00000-of-00002.parquet:3")]
    other = import_corpus("hf", tmp_path, HFColumns(split="other"))
    assert [(r.id, r.split) for r in other] == [("cv_6", "")]
    with pytest.raises(CorpusError, match="no split 'dev'"):
        import_corpus("hf", tmp_path, HFColumns(split="dev"))
    with pytest.raises(CorpusError, match="no text column 'words'"):
        import_corpus("hf", tmp_path, HFColumns(text="words"))


def test_hf_fleurs_columns_and_audio_paths(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips/f2.wav").write_bytes(_speech(1.0))
    hf_parquet(tmp_path / "validation.parquet", [
        {"audio": {"bytes": _speech(1.0), "path": None}, "transcription": "रामः", "speaker_id": 7},
        {"audio": {"bytes": None, "path": "clips/f2.wav"}, "transcription": "सीता", "speaker_id": 8},
    ])
    rows = import_corpus("hf", tmp_path)
    assert [(r.id, r.speaker, r.split, r.embedded is None) for r in rows] == [
        ("validation-0", "7", "dev", False), ("f2", "8", "dev", True)]
    assert rows[1].audio == str(tmp_path / "clips/f2.wav")


def test_hf_prepare_accounts_for_every_row_and_names_the_undecodable_one(tmp_path):
    src = cv_like(tmp_path / "corpus")
    before = tree_digest(src)
    out = tmp_path / "out"
    rc = cli(["prepare", "--format", "hf", "--src", str(src), "--lang", "sa", "--out", str(out), "--jobs", "1",
              "--vad", "energy", "--trim-vad", "none", "--no-progress", "--split-by", "corpus"])
    assert rc == 0
    acc = json.loads((out / "accounting.json").read_text())
    assert acc["input_rows"] == 5 == acc["accepted_rows"] + acc["rejected_rows"]
    assert acc["rejected_by_reason"] == {"malformed_line": 1, "unreadable_audio": 1}
    rejects = {r.reason: r for r in read_rejects(out / "rejects.jsonl")}
    assert str(rejects["unreadable_audio"].source) == "data/train-00000-of-00002.parquet:2"
    assert "train-00000-of-00002.parquet:2: cannot decode audio" in rejects["unreadable_audio"].detail
    utts = {u.id: u for u in read_manifest(out / "manifest.jsonl")}
    assert sorted(utts) == ["cv_1", "cv_4", "cv_5"]
    assert utts["cv_4"].source_audio == "data/train-00001-of-00002.parquet:1"
    assert (utts["cv_1"].split, utts["cv_5"].split, utts["cv_1"].speaker) == ("train", "test", "s1")
    assert 1.0 < utts["cv_1"].duration < 1.7
    assert tree_digest(src) == before
    # the columns are settings: another choice is refused on the prepared folder
    rc = cli(["prepare", "--format", "hf", "--src", str(src), "--lang", "sa", "--out", str(out), "--jobs", "1",
              "--no-progress", "--vad", "energy", "--trim-vad", "none", "--split-by", "corpus", "--split", "train"])
    assert rc == 2


def test_hf_columns_only_with_format_hf(tmp_path, capsys):
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv/train.tsv").write_text("path\tsentence\n")
    rc = cli(["prepare", "--format", "cv", "--src", str(tmp_path / "cv"), "--lang", "sa", "--out", str(tmp_path / "o"),
              "--text-column", "x", "--no-progress"])
    assert rc == 2 and "are for --format hf, not cv" in capsys.readouterr().err


def test_export_dataset_round_trip_and_import_again(tmp_path):
    datasets = pytest.importorskip("datasets", exc_type=ImportError)
    import numpy as np

    src = cv_like(tmp_path / "corpus")
    data = tmp_path / "data"
    args = ["--lang", "sa", "--jobs", "1", "--vad", "energy", "--trim-vad", "none", "--no-progress",
            "--split-by", "corpus"]
    assert cli(["prepare", "--format", "hf", "--src", str(src), "--out", str(data), *args]) == 0
    before = tree_digest(data)
    out = tmp_path / "hf"
    assert cli(["export-dataset", "--data", str(data), "--out", str(out)]) == 0
    assert tree_digest(data) == before
    loaded = datasets.load_from_disk(str(out)).cast_column("audio", datasets.Audio(decode=False))
    for name, split in (("train", "train"), ("test", "test")):
        utts = read_manifest(data / f"{split}.jsonl")
        rows = list(loaded[name])
        assert [(r["id"], r["text"], r["speaker"]) for r in rows] == [(u.id, u.text, u.speaker) for u in utts]
        for r, u in zip(rows, utts):
            import io

            import soundfile as sf

            y, sr = sf.read(io.BytesIO(r["audio"]["bytes"]), dtype="float32")
            assert sr == 16000 and np.array_equal(y, u.load_audio(data))
    # written again over its own folder; refused over a folder it did not make, or inside the data
    assert cli(["export-dataset", "--data", str(data), "--out", str(out)]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("keep")
    assert cli(["export-dataset", "--data", str(data), "--out", str(tmp_path / "mine")]) == 2
    assert cli(["export-dataset", "--data", str(data), "--out", str(data / "hf")]) == 2
    assert (tmp_path / "mine/notes.txt").read_text() == "keep"
    # the export is a Hugging Face dataset that prepare imports again: same ids, texts, speakers, splits
    again = tmp_path / "again"
    assert cli(["prepare", "--format", "hf", "--src", str(out), "--out", str(again), *args]) == 0
    for split in ("train", "test"):
        assert [(u.id, u.text, u.speaker) for u in read_manifest(again / f"{split}.jsonl")] == [
            (u.id, u.text, u.speaker) for u in read_manifest(data / f"{split}.jsonl")]


def test_hf_damaged_files_are_one_line_errors_naming_them(tmp_path):
    hf_parquet(tmp_path / "a/train.parquet", [{"audio": {"bytes": _speech(), "path": "x.wav"}, "text": "रामः"}])
    data = (tmp_path / "a/train.parquet").read_bytes()
    (tmp_path / "a/train.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError, match=r"train.parquet: not a readable parquet data file"):
        import_corpus("hf", tmp_path / "a")
    (tmp_path / "b/train").mkdir(parents=True)
    (tmp_path / "b/dataset_dict.json").write_text('{"splits": ["train"]}')
    (tmp_path / "b/train/state.json").write_text("{not json")
    with pytest.raises(CorpusError, match=r"train/state.json: not a datasets save_to_disk file"):
        import_corpus("hf", tmp_path / "b")


def test_hf_rows_in_reference_mode_are_cached(tmp_path):
    # audio inside a data file has no file a record could point into: its clip is cached as FLAC
    src = cv_like(tmp_path / "corpus")
    out = tmp_path / "out"
    assert cli(["prepare", "--format", "hf", "--src", str(src), "--lang", "sa", "--out", str(out), "--jobs", "1",
                "--vad", "energy", "--trim-vad", "none", "--no-progress", "--split-by", "corpus",
                "--cache-format", "none"]) == 0
    utts = read_manifest(out / "manifest.jsonl")
    assert len(utts) == 3 and all(u.audio.endswith(".flac") and u.load_audio(out).size for u in utts)

"""Reference mode (``prepare --cache-format none``): no audio written, same samples as the FLAC cache.

Tolerance of the sample comparison. A FLAC cache sample is
``rint(x * g * 32767) / 32768`` (``to_pcm16`` scales by 32767, libsndfile reads
int16 back divided by 32768); the reference record gives ``x * g``. The
difference is at most 0.5 LSB of rounding plus ``|x g| / 32768`` of scale, and
``|x g| <= 0.95`` (the level normalization's peak limit): 1.45 LSB. On top,
float32 rounding of the resampler over a different window (~1e-7, times the
gain) -- hence :data:`TOL`. Anything the window loading got wrong (an MP3 seek,
a resampler edge) is orders of magnitude larger (see the naive-window check).

One known exception: a row that is itself a window of a recording (Kaldi
``segments``, here ``u_cut`` at 0.55 s of a 44.1 kHz file). ``prepare`` decodes
and resamples that window alone in both modes, so the FLAC entry starts with
the resampler's transient (13 samples here); the reference record is read
with margins and has the recording's true samples there. Only :data:`EDGE`
samples at its ends are exempt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from dp_fixtures import clip, kaldi_zoo, utterance_clip, write

from data_prep import audio as A
from data_prep.manifest import ManifestError, Utterance, read_manifest, read_rejects
from data_prep.merge import merge
from data_prep.prepare import prepare
from data_prep.validate import inside

FAST = dict(jobs=1, max_duration=2.0, min_duration=0.3, vad="energy", trim_vad="none", progress=False)
REF = dict(FAST, cache_format="none")
TOL = (0.5 + 0.95) / 32768 + 2e-6
EDGE = 32  # 2 ms at each end of a clip cut out of a recording (see the module docstring)
SAME = ("manifest.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl", "rejects.jsonl", "accounting.json",
        "splits.json", "vocab.json", "oov.json", "stats.json", "stats.md", "prepare.json")


def varied_corpus(root: Path) -> Path:
    """A Kaldi corpus (with ``segments``) whose clips exercise every way a window can go wrong.

    16 kHz WAV with a DC offset, 44.1 kHz stereo FLAC, 16 and 44.1 kHz MP3 (seeks
    and resampling edges), a clip cut out of a recording at 0.55 s, and a long
    clip that is split in two at its pause.
    """
    a = root / "audio"
    shape = (("p", 0.37), ("s", 1.1), ("p", 0.41))
    write(a / "dc.wav", clip(*shape) * 0.2 + 0.04)
    write(a / "st.flac", np.stack([clip(*shape, sr=44100)] * 2, axis=1), 44100)
    write(a / "m16.mp3", clip(*shape), format="MP3")
    write(a / "m44.mp3", clip(*shape, sr=44100), 44100, format="MP3")
    write(a / "rec.wav", clip(("s", 0.6), ("p", 0.5), ("s", 0.9), ("p", 0.4), sr=44100), 44100)
    write(a / "long.mp3", clip(("p", .2), ("s", 1.2), ("p", .5), ("s", 1.2), ("p", .2)), format="MP3")
    recs = {"dc": "dc.wav", "st": "st.flac", "m16": "m16.mp3", "m44": "m44.mp3", "rec": "rec.wav",
            "long": "long.mp3"}
    segs = {"u_dc": ("dc", 0, 1.88), "u_st": ("st", 0, 1.88), "u_m16": ("m16", 0, 1.88),
            "u_m44": ("m44", 0, 1.88), "u_cut": ("rec", 0.55, 2.4), "u_long": ("long", 0, 3.3)}
    texts = {"u_dc": "रामः वनं गच्छति", "u_st": "सीता गृहे अस्ति", "u_m16": "बालकः पठति", "u_m44": "गजः चलति",
             "u_cut": "नदी वहति", "u_long": "प्रथमं वाक्यम् अस्ति । द्वितीयं वाक्यम् अस्ति ।"}
    (root / "wav.scp").write_text("".join(f"{k} audio/{v}\n" for k, v in recs.items()))
    (root / "segments").write_text("".join(f"{u} {r} {t0} {t1}\n" for u, (r, t0, t1) in segs.items()))
    (root / "text").write_text("".join(f"{u} {t}\n" for u, t in texts.items()))
    (root / "utt2spk").write_text("".join(f"{u} s{i % 3}\n" for i, u in enumerate(texts)))
    return root


@pytest.fixture(scope="module")
def varied(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(corpus, FLAC-mode output, reference-mode output)."""
    base = tmp_path_factory.mktemp("varied")
    corpus = varied_corpus(base / "corpus")
    assert prepare(corpus, base / "flac", "kaldi", "sa", **FAST) == 0
    assert prepare(corpus, base / "ref", "kaldi", "sa", **REF) == 0
    return corpus, base / "flac", base / "ref"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    return kaldi_zoo(tmp_path_factory.mktemp("zoo") / "corpus")


@pytest.fixture(scope="module")
def zoo_flac(zoo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo_flac")
    assert prepare(zoo, out, "kaldi", "sa", **FAST) == 0
    return out


@pytest.fixture(scope="module")
def zoo_ref(zoo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo_ref")
    assert prepare(zoo, out, "kaldi", "sa", **REF) == 0
    return out


def snapshot(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in (*SAME, "durations.png")}


def by_id(out: Path) -> dict[str, Utterance]:
    return {u.id: u for u in read_manifest(out / "manifest.jsonl")}


def test_reference_records_load_the_flac_cache_samples(varied):
    corpus, flac_out, ref_out = varied
    flac, ref = by_id(flac_out), by_id(ref_out)
    assert sorted(flac) == sorted(ref) == sorted(
        ["u_dc", "u_st", "u_m16", "u_m44", "u_cut", "u_long-1", "u_long-2"])
    for uid, f in flac.items():
        r = ref[uid]
        assert (r.text, r.flags, r.split, r.speaker) == (f.text, f.flags, f.split, f.speaker)
        assert abs(r.duration - f.duration) <= 5e-5  # the cache's duration is rounded to 0.1 ms
        x, y = f.load_audio(flac_out), r.load_audio(ref_out)
        assert abs(len(x) - len(y)) <= 1, uid  # the rounded duration may cost the cache one sample
        n = min(len(x), len(y))
        e = EDGE if uid == "u_cut" else 0
        assert np.abs(x[e : n - e] - y[e : n - e]).max() <= TOL, uid
        assert np.abs(x[:n] - y[:n]).max() <= 0.01, uid
        if "segment" not in " ".join(f.flags):  # the whole cached clip: exactly as many samples
            assert sf.info(f.audio_path(flac_out)).frames == len(y), uid
    assert "dc_offset" in ref["u_dc"].flags and abs(ref["u_dc"].dc_offset - 0.04) < 1e-3
    assert {"resampled", "downmixed"} <= set(ref["u_st"].flags)
    assert (ref["u_st"].sample_rate, ref["u_st"].channels) == (44100, 2)
    assert ref["u_cut"].offset >= 0.55  # the trim point, counted from the start of the recording


def test_a_naive_window_of_the_source_would_not_match(varied):
    """The check above has teeth: seeking and resampling only the window is off by far more than TOL."""
    _, flac_out, ref_out = varied
    worst = 0.0
    for uid in ("u_m44", "u_st", "u_cut"):
        f, r = by_id(flac_out)[uid], by_id(ref_out)[uid]
        x = f.load_audio(flac_out)
        naive = (A.load_audio(r.audio, r.offset, r.duration) - np.float32(r.dc_offset)) * np.float32(r.gain)
        n = min(len(x), len(naive))
        worst = max(worst, float(np.abs(x[:n] - naive[:n]).max()))
    assert worst > 4 * TOL  # these windows start in quiet padding; inside speech it is ~1e-2 (below)


def test_reference_mode_writes_no_audio_and_points_inside_the_root(varied):
    corpus, _, ref_out = varied
    files = [p for p in (ref_out / "cache").rglob("*") if p.is_file()]
    assert files and all(p.parent.name == "ref" and p.suffix == ".jsonl" for p in files)
    for u in read_manifest(ref_out / "manifest.jsonl"):
        assert Path(u.audio).is_absolute() and inside(u.audio, str(corpus))
        assert u.gain != 1.0 and u.source_audio.startswith("audio/")


def test_segmented_long_clip_points_into_the_source(varied):
    corpus, flac_out, ref_out = varied
    ref, flac = by_id(ref_out), by_id(flac_out)
    s1, s2 = ref["u_long-1"], ref["u_long-2"]
    assert s1.audio == s2.audio == str((corpus / "audio/long.mp3").resolve())
    assert s1.text == "प्रथमं वाक्यं अस्ति" and s2.text == "द्वितीयं वाक्यं अस्ति"
    # a cached segment's offset counts from the trimmed clip, a reference's from the source file
    trim = s1.offset - flac["u_long-1"].offset
    assert 0 < trim < 0.2 and abs(s2.offset - (trim + flac["u_long-2"].offset)) < 1e-6
    assert 1.4 < s2.offset < 2.1 and "segment:2/2" in s2.flags
    assert len(s2.load_audio()) == round(s2.duration * 16000)  # absolute path: no manifest folder needed


def test_accounting_rejects_and_splits_equal_the_flac_mode(zoo, zoo_flac, zoo_ref):
    for name in ("accounting.json", "rejects.jsonl", "splits.json", "vocab.json"):
        assert (zoo_ref / name).read_bytes() == (zoo_flac / name).read_bytes(), name
    acc = json.loads((zoo_ref / "accounting.json").read_text())
    assert acc["input_rows"] == acc["accepted_rows"] + acc["rejected_rows"]
    assert acc["rejected_rows"] == len(read_rejects(zoo_ref / "rejects.jsonl"))
    utts = read_manifest(zoo_ref / "manifest.jsonl")
    assert acc["utterances"] == len(utts) == acc["accepted_rows"] + acc["rows_split_into_segments"]
    assert [(u.id, u.split) for u in utts] == [(u.id, u.split) for u in read_manifest(zoo_flac / "manifest.jsonl")]
    reasons = {r.id: r.reason for r in read_rejects(zoo_ref / "rejects.jsonl")}
    assert reasons["x_outside"] == "path_outside_root" and reasons["x_long"] == "too_long"
    stats = json.loads((zoo_ref / "stats.json").read_text())
    assert stats["total"]["utterances"] == len(utts)


def test_rerun_reads_the_journal_and_survives_a_torn_one(zoo, zoo_ref, tmp_path, monkeypatch):
    import data_prep.process as P

    before = snapshot(zoo_ref)
    real_decode = P._decode
    monkeypatch.setattr(P, "_decode", lambda *a: (_ for _ in ()).throw(AssertionError("decoded although cached")))
    assert prepare(zoo, zoo_ref, "kaldi", "sa", **REF) == 0
    assert snapshot(zoo_ref) == before
    # kill -9 mid-run: a journal with its second half gone and a torn last line
    out = tmp_path / "out"
    monkeypatch.undo()
    assert prepare(zoo, out, "kaldi", "sa", **REF) == 0
    first = snapshot(out)
    (journal,) = (out / "cache" / "ref").glob("*.jsonl")
    lines = journal.read_bytes().splitlines(keepends=True)
    keep = len(lines) // 2
    journal.write_bytes(b"".join(lines[:keep]) + lines[keep][:20])
    decoded = []
    monkeypatch.setattr(P, "_decode", lambda row, cfg: decoded.append(row.id) or real_decode(row, cfg))
    (out / "manifest.jsonl").unlink()
    assert prepare(zoo, out, "kaldi", "sa", **REF) == 0
    assert snapshot(out) == first
    assert 0 < len(decoded) <= len(lines) - keep


def test_journal_lines_lost_with_their_batch_are_redone(zoo, zoo_ref, tmp_path, monkeypatch):
    """Journal lines go out once per batch of rows: a kill loses the batch in flight, whose clips a rerun redoes."""
    import data_prep.process as P
    from data_prep.refcache import RefCache

    real_flush, real_decode = RefCache.flush, P._decode
    flushed, lost = [], []

    def lossy_flush(self):  # every other batch "killed" before its write
        if len(flushed) % 2:
            lost.extend(obj["key"] for obj in self._pending if "meta" in obj)
            self._pending = []
        flushed.append(1)
        real_flush(self)

    out = tmp_path / "out"
    monkeypatch.setattr("data_prep.prepare.BATCH", 2)
    monkeypatch.setattr(RefCache, "flush", lossy_flush)
    assert prepare(zoo, out, "kaldi", "sa", **REF) == 0
    assert lost and len(flushed) > 2
    monkeypatch.setattr(RefCache, "flush", real_flush)
    decoded = []
    monkeypatch.setattr(P, "_decode", lambda row, cfg: decoded.append(row.id) or real_decode(row, cfg))
    (out / "manifest.jsonl").unlink()
    assert prepare(zoo, out, "kaldi", "sa", **REF) == 0
    assert snapshot(out) == snapshot(zoo_ref)
    assert len(decoded) == len(set(lost))


def test_shards_then_merge_equal_single_run(zoo, zoo_ref, tmp_path):
    out = tmp_path / "sharded"
    for i in range(3):
        assert prepare(zoo, out, "kaldi", "sa", num_shards=3, shard_index=i, **REF) == 0
    assert merge(out) == 0
    assert snapshot(out) == snapshot(zoo_ref)
    assert len(list((out / "cache" / "ref").glob("*.jsonl"))) == 3  # one journal per shard run


def test_pipes_fall_back_to_the_flac_cache(zoo, tmp_path):
    out = tmp_path / "out"
    assert prepare(zoo, out, "kaldi", "sa", allow_pipes=True, **REF) == 0
    utts = by_id(out)
    assert utts["x_pipe"].audio.startswith("cache/") and utts["x_pipe"].audio.endswith(".flac")
    assert Path(utts["a1"].audio).is_absolute()
    ref_a1, pipe = utts["a1"].load_audio(out), utts["x_pipe"].load_audio(out)  # the same audio, both ways
    assert len(ref_a1) == len(pipe) and np.abs(ref_a1 - pipe).max() <= TOL


def test_old_manifests_without_gain_load_as_before(tmp_path):
    flac = write(tmp_path / "cache" / "a.flac", clip(("s", 1.0)), subtype="PCM_16")
    old = {"v": 1, "id": "a", "audio": "cache/a.flac", "duration": 0.5, "text": "क", "offset": 0.25,
           "source": {"file": "x", "line": 1}, "flags": []}
    (tmp_path / "m.jsonl").write_text(json.dumps(old) + "\n")
    (u,) = read_manifest(tmp_path / "m.jsonl")
    assert (u.gain, u.dc_offset) == (1.0, 0.0)
    assert np.array_equal(u.load_audio(tmp_path), A.load_audio(flac, 0.25, 0.5))
    assert u.to_json()["v"] == 2 and u.to_json()["gain"] == 1.0
    (tmp_path / "new.jsonl").write_text(json.dumps({**old, "v": 3}) + "\n")
    with pytest.raises(ManifestError, match=r"new\.jsonl:1: .*version 3"):
        read_manifest(tmp_path / "new.jsonl")


def test_flac_mode_records_load_exactly_as_before(zoo_flac):
    """Utterance.load_audio replaced ``load_audio(u.audio_path(d), u.offset, u.duration or None)``: same samples."""
    for u in read_manifest(zoo_flac / "manifest.jsonl"):
        old = A.load_audio(u.audio_path(zoo_flac), u.offset, u.duration or None)
        assert np.array_equal(u.load_audio(zoo_flac), old), u.id


def test_load_audio_subtracts_dc_then_applies_gain(tmp_path):
    y = clip(("s", 0.5)) + 0.1
    write(tmp_path / "a.wav", y, subtype="FLOAT")
    u = Utterance(id="a", audio="a.wav", duration=0.25, offset=0.125, text="क", gain=2.0, dc_offset=0.1)
    got = u.load_audio(tmp_path)
    assert np.allclose(got, (y[2000:6000] - np.float32(0.1)) * np.float32(2.0), atol=1e-7)
    assert len(Utterance(id="b", audio="a.wav", duration=0, text="क").load_audio(tmp_path)) == len(y)


@pytest.mark.parametrize("sr, fmt", [(44100, "WAV"), (16000, "MP3"), (44100, "MP3"), (22050, "FLAC")])
def test_load_window_equals_slicing_the_whole_decode(tmp_path, sr, fmt):
    path = write(tmp_path / f"a.{fmt.lower()}", clip(("s", 0.7), ("p", 0.3), ("s", 0.9), sr=sr), sr, format=fmt)
    whole = A.load_audio(path)
    naive_worst = 0.0
    for offset, duration in ((0.0, 0.5), (0.0123, 0.8), (0.61, 0.9), (1.2, None), (0.3, 5.0)):
        s = round(offset * 16000)
        expected = whole[s:] if duration is None else whole[s : s + round(duration * 16000)]
        got = A.load_window(path, offset, duration)
        assert len(got) == len(expected)
        assert np.abs(got - expected).max() <= 5e-7, (offset, duration)
        naive = A.load_audio(path, offset, duration)  # seek + resample the window alone
        n = min(len(naive), len(expected))
        naive_worst = max(naive_worst, float(np.abs(naive[:n] - expected[:n]).max()))
    if sr != 16000:  # a resampled window alone has edge transients (and an MP3 seek its own)
        assert naive_worst > 1e-3


def test_bench_times_the_reference_mode(tmp_path, capsys):
    from benchmarks.prepare_throughput import main, table

    rows = "".join(f"s{i % 2}\tu{i}.wav\tक ख\t2\t0\t\t\t\tsa\t\n" for i in range(6))
    (tmp_path / "train.tsv").write_text("client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents"
                                        "\tlocale\tsegment\n" + rows)
    for i in range(6):
        utterance_clip(tmp_path / "clips" / f"u{i}.wav")
    args = ["--src", str(tmp_path), "--jobs", "1", "--cache-formats", "flac,none", "--tmp", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prepare_none"]["cache_mb"] < 0.01 < report["prepare_flac"]["cache_mb"]
    assert report["prepare_none"]["cold_over_bare"] > 0
    lines = table(report, ["flac", "none"]).splitlines()
    assert lines[4].startswith("| bare decode") and lines[6].startswith("| `prepare --cache-format none` | ")


def test_cli_cache_format_none_and_unknown_format(zoo, zoo_ref, tmp_path, capsys):
    from pipeline.cli import main as cli

    base = ["prepare", "--format", "kaldi", "--src", str(zoo), "--lang", "sa", "--jobs", "2", "--no-progress",
            "--vad", "energy", "--trim-vad", "none", "--max-duration", "2"]
    assert cli([*base, "--out", str(tmp_path / "o"), "--cache-format", "none"]) == 0
    assert all(Path(u.audio).is_absolute() for u in read_manifest(tmp_path / "o" / "manifest.jsonl"))
    assert list((tmp_path / "o" / "cache" / "ref").glob("*.jsonl"))  # written by the pool's workers
    assert snapshot(tmp_path / "o") == snapshot(zoo_ref)  # 2 processes, batches of rows: the same outputs
    with pytest.raises(ValueError, match="unknown --cache-format 'mp3'"):
        prepare(zoo, tmp_path / "p", "kaldi", "sa", cache_format="mp3", **FAST)


def test_utterance_replace_equals_dataclasses_replace():
    import dataclasses

    from data_prep.manifest import Source

    u = Utterance(id="a", audio="x.flac", duration=1.5, text="क", source=Source("f", 3), flags=("trimmed",))
    for changes in ({}, {"split": "dev"}, {"offset": 0.25, "duration": 0.5, "flags": ("trimmed", "segment:1/2")}):
        new = u.replace(**changes)
        assert new == dataclasses.replace(u, **changes) and type(new) is Utterance and new is not u
        assert new.to_json() == dataclasses.replace(u, **changes).to_json()
    assert u.split == "" and u.offset == 0.0  # the original is untouched
    with pytest.raises(TypeError, match="bogus"):
        u.replace(bogus=1)

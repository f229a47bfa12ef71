"""Audio conditioning: mono, 16 kHz, DC, trimming, level, FLAC cache."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from dp_fixtures import clip, riff_wav, silence, speechlike

from data_prep import audio as A
from data_prep.importers.base import RawRow
from data_prep.manifest import Source
from data_prep.process import ProcessConfig, _peak_from_bounds, analyse, cached_audio, condition, run_pipe


def cfg(tmp_path, **kw) -> ProcessConfig:
    return ProcessConfig(out_dir=str(tmp_path / "out"), root=str(tmp_path), rules="sa", language="sa",
                         trim_vad="none", **kw)


def test_condition_fixes_rate_channels_dc_silence_and_level(tmp_path):
    y = clip(("p", 0.5), ("s", 1.0), ("p", 0.5), sr=44100) * 0.05 + 0.03  # quiet, DC offset
    data = np.stack([y, y], axis=1)
    pcm, flags, _ = condition(data, 44100, cfg(tmp_path))
    assert pcm.dtype == np.int16
    out = pcm / 32767.0
    assert {"downmixed", "resampled", "dc_offset", "trimmed"} <= set(flags)
    assert abs(len(out) / 16000 - 1.3) < 0.05  # 1 s of speech + 2 x 0.15 s padding
    assert abs(float(out.mean())) < 2e-3
    speech_db = 20 * np.log10(np.sqrt(np.mean(out[4000:-4000] ** 2)))
    assert abs(speech_db - (-20)) < 1.5 and np.abs(out).max() <= 0.95 + 1e-6


def test_clipping_is_flagged_not_rejected(tmp_path):
    y = np.clip(speechlike(1.0, amp=3.0), -1, 1)[:, None]
    out, flags, _ = condition(y, 16000, cfg(tmp_path))
    assert "clipping" in flags and len(out) > 0


def test_silent_and_low_snr_clips_are_kept_whole_and_flagged(tmp_path):
    out, flags, _ = condition(np.zeros((16000, 1), np.float32), 16000, cfg(tmp_path))
    assert len(out) == 16000 and "low_snr" in flags
    noisy = (speechlike(1.0, amp=0.01) + np.random.default_rng(0).normal(0, 0.01, 16000)).astype(np.float32)
    out, flags, _ = condition(noisy[:, None], 16000, cfg(tmp_path))
    assert "low_snr" in flags and len(out) == 16000


def test_trim_keeps_padding_around_speech():
    y = clip(("p", 1.0), ("s", 0.5), ("p", 1.0))
    start, end = A.trim_bounds(y, 16000, pad_s=0.1)
    assert abs(start / 16000 - 0.9) < 0.03 and abs(end / 16000 - 1.6) < 0.03
    assert A.trim_bounds(silence(1.0) * 0, 16000) is None


def test_flac_cache_is_16bit_and_reused(tmp_path, monkeypatch):
    path = tmp_path / "a.wav"
    sf.write(path, clip(("p", .3), ("s", 1.0), ("p", .3), sr=22050), 22050)
    row = RawRow(id="a", audio=str(path), text_raw="क", source=Source("x", 1))
    c = cfg(tmp_path)
    rel, meta = cached_audio(row, c)
    assert rel.startswith("cache/") and rel.endswith(".flac")
    info = sf.info(tmp_path / "out" / rel)
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert meta["source_sr"] == 22050 and "resampled" in meta["flags"]
    import data_prep.process as P

    monkeypatch.setattr(P, "_decode", lambda *a: (_ for _ in ()).throw(AssertionError("not cached")))
    assert cached_audio(row, c) == (rel, meta)
    # another window of the same file is another cache entry
    monkeypatch.undo()
    rel2, _ = cached_audio(RawRow(id="a", audio=str(path), text_raw="क", source=Source("x", 1), offset=0.2), c)
    assert rel2 != rel


def test_run_pipe_chains_stages_without_shell(tmp_path):
    assert run_pipe("printf abc | tr a-c x-z |", 10) == b"xyz"
    assert run_pipe("echo $HOME;ls |", 10) == b"$HOME;ls\n"  # no expansion, no command separator


# -- the fast paths give the same bytes as the plain ones --


def test_condition_in_place_equals_copying_and_leaves_input_alone_by_default(tmp_path):
    rng = np.random.default_rng(3)
    cases = [
        (clip(("p", 0.4), ("s", 0.7), ("p", 0.3))[:, None] + 0.02, 16000),
        (np.stack([clip(("p", .3), ("s", .5), sr=44100)] * 2, axis=1), 44100),
        (np.clip(rng.normal(0, 2, (16001, 1)), -1, 1).astype(np.float32), 16000),
        (np.zeros((321, 1), np.float32), 16000),
    ]
    for data, sr in cases:
        before = data.copy()
        plain = condition(data, sr, cfg(tmp_path))
        assert np.array_equal(data, before)
        scratch = data.copy()
        fast = condition(scratch, sr, cfg(tmp_path), overwrite=True, bounds=(float(data.min()), float(data.max())))
        assert plain[0].tobytes() == fast[0].tobytes() and plain[1:] == fast[1:]


def test_analyse_with_the_extremes_at_hand_equals_plain(tmp_path):
    """``bounds`` and ``at`` (where the minimum and maximum lie) change nothing, in place or not."""
    rng = np.random.default_rng(7)
    # the extremes outside the trimmed clip: clicks in the leading pause of a loud square wave
    # in noise (22 dB SNR), too short to lift their frames over the noise floor + 6 dB
    spiked = rng.normal(0, 0.04, 32000)
    spiked[8000:24000] += 0.5 * np.sign(np.sin(2 * np.pi * 200 * np.arange(16000) / 16000))
    spiked[1000], spiked[1500] = 0.8, -0.8
    spiked = spiked.astype(np.float32)[:, None]
    assert analyse(spiked.copy(), 16000, cfg(tmp_path)).start > 1500
    cases = [
        (clip(("p", 0.4), ("s", 0.7), ("p", 0.3))[:, None] + 0.02, 16000),
        (spiked, 16000),
        (np.stack([clip(("p", .3), ("s", .5), sr=44100)] * 2, axis=1), 44100),
        (clip(("p", .3), ("s", .5), sr=22050)[:, None], 22050),
        (np.clip(rng.normal(0, 2, (16001, 1)), -1, 1).astype(np.float32), 16000),
        (np.zeros((321, 1), np.float32), 16000),
    ]
    fields = ("start", "stop", "dc", "gain_db", "top", "flags", "snr")
    for data, sr in cases:
        plain = analyse(data.copy(), sr, cfg(tmp_path))
        flat = data.reshape(-1)
        at = (int(flat.argmin()), int(flat.argmax()))
        fast = analyse(data.copy(), sr, cfg(tmp_path), overwrite=True, bounds=(float(flat[at[0]]), float(flat[at[1]])),
                       at=at)
        assert [getattr(plain, f) for f in fields] == [getattr(fast, f) for f in fields]
        assert plain.y.tobytes() == fast.y.tobytes()


def test_clip_peak_from_the_extremes_is_bit_exact():
    rng = np.random.default_rng(8)
    for _ in range(500):
        n = int(rng.integers(1, 3000))
        x = (rng.normal(0, rng.uniform(1e-4, 1.0), n) + rng.uniform(-0.2, 0.2)).astype(np.float32)
        at = (int(x.argmin()), int(x.argmax()))
        y, dc = A.remove_dc(x.copy(), overwrite=True)
        start = int(rng.integers(0, n))
        stop = int(rng.integers(start + 1, n + 1))
        got = _peak_from_bounds((float(x[at[0]]), float(x[at[1]])), at, dc, (start, stop))
        if start <= min(at) and max(at) < stop:
            assert type(got) is float and got == A.peak_abs(y[start:stop])
        else:
            assert got is None


def test_frame_db_pads_only_the_last_frame_like_zero_padding():
    rng = np.random.default_rng(4)
    for n in (0, 1, 319, 320, 321, 16000, 16007):
        y = rng.normal(0, 0.1, n).astype(np.float32)
        padded = np.pad(y, (0, (-n) % 320)).reshape(-1, 320)
        ref = (10 * np.log10(np.maximum(np.einsum("ij,ij->i", padded, padded) / 320, 1e-20))).astype(np.float32)
        assert A.frame_db(y, 16000).tobytes() == ref.tobytes()


def test_to_pcm16_with_known_peak_and_in_place_matches_plain():
    rng = np.random.default_rng(5)
    y = rng.normal(0, 0.3, 5000).astype(np.float32)
    for gain_db in (-6.0, 0.0, 12.0):  # 12 dB drives samples past full scale: clipping must still happen
        ref = A.to_pcm16(y, gain_db)
        assert np.array_equal(A.to_pcm16(y.copy(), gain_db, overwrite=True, top=A.peak_abs(y)), ref)
    assert A.to_pcm16(y, 12.0).max() == 32767 and A.to_pcm16(y, 12.0).min() == -32768


def test_cache_file_carries_its_meta_in_the_comment_tag(tmp_path):
    pcm = (np.random.default_rng(6).normal(0, 3000, 20000)).astype(np.int16)
    long_meta = '{"flags": ["' + "x" * 6000 + '"]}'  # beyond the first 4 KiB read
    for fmt in A.CACHE_FORMATS:
        path = tmp_path / f"a.{fmt}"
        for comment in ('{"duration": 1.25}', long_meta):
            A.write_flac(path, pcm, 16000, fmt, comment=comment)
            assert A.read_comment(path) == comment
            assert np.array_equal(sf.read(path, dtype="int16")[0], pcm)
        A.write_flac(path, pcm, 16000, fmt)
        assert A.read_comment(path) is None
    (tmp_path / "junk.flac").write_bytes(b"fLaC\x84\xff\xff")  # truncated header
    assert A.read_comment(tmp_path / "junk.flac") is None
    assert A.read_comment(tmp_path / "missing.flac") is None


def test_a_cached_clip_is_one_file_and_the_old_sidecar_layout_is_still_read(tmp_path, monkeypatch):
    import json

    import data_prep.process as P

    path = tmp_path / "a.wav"
    sf.write(path, clip(("p", .3), ("s", 1.0), ("p", .3)), 16000)
    row = RawRow(id="a", audio=str(path), text_raw="क", source=Source("x", 1))
    c = cfg(tmp_path)
    rel, meta = cached_audio(row, c)
    assert [p.name for p in (tmp_path / "out" / "cache").rglob("*") if p.is_file()] == [rel.split("/")[-1]]
    monkeypatch.setattr(P, "_decode", lambda *a: (_ for _ in ()).throw(AssertionError("not cached")))
    assert cached_audio(row, c) == (rel, meta)
    # layout before the tag: FLAC without comment + <key>.json with the meta
    flac = tmp_path / "out" / rel
    A.write_flac(flac, sf.read(flac, dtype="int16")[0], 16000)
    flac.with_suffix(".json").write_text(json.dumps(meta))
    assert cached_audio(row, c) == (rel, meta)


def test_cache_writes_from_threads_and_forked_processes_do_not_mix(tmp_path):
    import multiprocessing as mp
    from concurrent.futures import ThreadPoolExecutor

    clips = [(np.random.default_rng(k).normal(0, 3000, 8000 + 500 * k)).astype(np.int16) for k in range(8)]
    A.write_flac(tmp_path / "parent.flac", clips[0])  # the parent's scratch file exists before the fork

    def write(k: int) -> None:
        A.write_flac(tmp_path / f"{k}.flac", clips[k], comment=str(k))

    with ThreadPoolExecutor(4) as ex:
        list(ex.map(write, range(8)))
    with mp.get_context("fork").Pool(2) as pool:
        pool.map(_write_numbered, [(tmp_path, k) for k in range(8, 12)])
    for k in range(8):
        assert np.array_equal(sf.read(tmp_path / f"{k}.flac", dtype="int16")[0], clips[k])
        assert A.read_comment(tmp_path / f"{k}.flac") == str(k)
    for k in range(8, 12):
        assert sf.read(tmp_path / f"{k}.flac", dtype="int16")[0].size == 1000 * k


def _write_numbered(item: tuple) -> None:
    folder, k = item
    A.write_flac(folder / f"{k}.flac", np.full(1000 * k, k, np.int16))


def test_levels_and_mean_equal_the_plain_numpy_expressions():
    """remove_dc, frame_db and level_gain_db skip np.mean's Python layers and work in place: same bits."""
    rng = np.random.default_rng(9)
    for k in range(300):
        n = int(rng.integers(1, 50000)) if k % 4 else int(rng.integers(1, 700))
        y = (rng.normal(0, rng.choice([1e-5, 1e-2, 0.3]), n) + rng.uniform(-0.1, 0.1)).astype(
            (np.float32, np.float64)[k % 2])
        if k % 5 == 0:
            y[: n // 2] = 0
        assert A._mean(y) == y.mean() and type(A._mean(y)) is type(y.mean())
        out, dc = A.remove_dc(y.copy())
        assert dc == float(y.mean()) and out.tobytes() == (y - float(y.mean())).astype(np.float32).tobytes()
        m = 320
        full = n // m * m
        padded = np.zeros((-(-n // m), m), y.dtype)
        padded.reshape(-1)[:n] = y
        sums = np.concatenate([np.einsum("ij,ij->i", padded[: full // m], padded[: full // m]),
                               np.einsum("ij,ij->i", padded[full // m :], padded[full // m :])])
        db = (10 * np.log10(np.maximum(sums / m, 1e-20))).astype(np.float32)
        assert A.frame_db(y, 16000).tobytes() == db.tobytes()
        act = A.active_frames(db)
        levels = db[act] if act.any() else db
        speech_db = float(10 * np.log10(np.mean(10 ** (levels.astype(np.float64) / 10)) + 1e-20))
        expected = min(-20.0 - speech_db, 30.0)
        top = A.peak_abs(y)
        if top > 0:
            expected = min(expected, 20 * np.log10(0.95 / top))
        assert A.level_gain_db(y, 16000, db=db) == expected
    assert A._mean(np.arange(5, dtype=np.int16)) == 2.0  # other dtypes: np.mean itself


@pytest.mark.parametrize("sr", [0, 1, 2**31 - 1])
def test_every_reader_refuses_an_absurd_rate_naming_the_file(tmp_path, sr):
    # what transcribe (load_audio), decode and training (load_window) and a Kaldi pipe (read_audio_bytes) read
    path = tmp_path / "x.wav"
    path.write_bytes(riff_wav(sr=sr))
    for read in (A.load_audio, A.load_window, A.read_audio):
        with pytest.raises(A.AudioError, match=f"^{path}: sample rate {sr} Hz is not a plausible audio rate"):
            read(path)
    with pytest.raises(A.AudioError, match=f"^pipe x: (sample rate {sr} Hz|cannot decode audio)"):
        A.read_audio_bytes(path.read_bytes(), "pipe x")

"""Audio conditioning: mono, 16 kHz, DC, trimming, level, FLAC cache."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from dp_fixtures import clip, silence, speechlike

from data_prep import audio as A
from data_prep.importers.base import RawRow
from data_prep.manifest import Source
from data_prep.process import ProcessConfig, cached_audio, condition, run_pipe


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

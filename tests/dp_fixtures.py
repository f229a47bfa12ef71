"""Generated audio and tiny corpora for the data-prep tests (imported by tests/test_dp_*.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def speechlike(dur: float, sr: int = SR, freq: float = 220.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise: loud, steady 'speech' for energy detectors."""
    t = np.arange(int(round(dur * sr))) / sr
    rng = np.random.default_rng(seed)
    y = sum(np.sin(2 * np.pi * freq * k * t) / k for k in (1, 2, 3)) * amp / 1.8
    return (y + rng.normal(0, 0.003, t.size)).astype(np.float32)


def silence(dur: float, sr: int = SR, seed: int = 1) -> np.ndarray:
    """Quiet background noise (about -60 dBFS)."""
    return np.random.default_rng(seed).normal(0, 0.001, int(round(dur * sr))).astype(np.float32)


def clip(*parts: tuple[str, float], sr: int = SR) -> np.ndarray:
    """Concatenate ('s', dur) speech and ('p', dur) pause parts."""
    return np.concatenate([speechlike(d, sr, seed=i) if kind == "s" else silence(d, sr, seed=i)
                           for i, (kind, d) in enumerate(parts)])


def write(path: Path, y: np.ndarray, sr: int = SR, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, **kw)
    return path


def riff_wav(sr: int = SR, channels: int = 1, samples: np.ndarray | None = None, *, float32: bool = False,
             data_size: int | None = None) -> bytes:
    """A WAV file's bytes with its header written field by field, so that it may say what no writer
    would: a rate of 0 or 2**31 - 1 Hz, no channels, a data chunk larger than the file.

    ``samples`` (default 0.5 s of speech-like sound) are written as 16-bit PCM, or as 32-bit floats.
    """
    y = speechlike(0.5) if samples is None else samples
    data = y.astype("<f4").tobytes() if float32 else (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()
    bits = 32 if float32 else 16
    block = max(channels, 1) * bits // 8
    fmt = struct.pack("<HHIIHH", 3 if float32 else 1, channels, sr, sr * block % 2**32, block, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def utterance_clip(path: Path, speech: float = 1.0, sr: int = SR, **kw) -> Path:
    """Pause, speech, pause: a typical short utterance."""
    return write(path, clip(("p", 0.3), ("s", speech), ("p", 0.3), sr=sr), sr, **kw)


def kaldi_zoo(root: Path) -> Path:
    """A Kaldi corpus with one row for every reject reason, plus good rows of 3 speakers.

    Rows and their fate (with --max-duration 2 --min-duration 0.3 --vad energy):
    a1..a3, b1, c1 good; b2 44.1 kHz stereo (resampled, downmixed); c2 split in 2;
    x_missing, x_garbage, x_empty, x_nan, x_silent, x_short, x_long, x_longtext, x_emptytext, x_latin,
    x_outside, x_pipe, x_notext -> one reason each; plus duplicate, malformed,
    non-UTF-8 lines and an orphan transcript.
    """
    a = root / "audio"
    for name, spk in (("a1", 0), ("a2", 0), ("a3", 0), ("b1", 1), ("c1", 2)):
        utterance_clip(a / f"{name}.wav", 0.8 + 0.1 * spk)
    write(a / "b2.flac", np.stack([clip(("p", .3), ("s", 1.0), ("p", .3), sr=44100)] * 2, axis=1), 44100)
    write(a / "c2.wav", clip(("p", .2), ("s", 1.2), ("p", .5), ("s", 1.2), ("p", .2)))
    (a / "garbage.wav").write_bytes(b"RIFF\x00\x00not really audio")
    write(a / "empty.wav", np.zeros(0, dtype=np.float32))
    nan = speechlike(0.8)
    nan[100] = np.nan
    write(a / "nan.wav", nan, subtype="FLOAT")
    write(a / "silent.wav", np.zeros(16000, dtype=np.float32))
    write(a / "short.wav", speechlike(0.1))
    write(a / "long.wav", speechlike(3.0))
    utterance_clip(root.parent / "outside.wav")
    wav = [
        "a1 audio/a1.wav", "a2 audio/a2.wav", "a3 audio/a3.wav", "b1 audio/b1.wav", "b2 audio/b2.flac",
        "c1 audio/c1.wav", "c2 audio/c2.wav", "x_missing audio/nope.wav", "x_garbage audio/garbage.wav",
        "x_empty audio/empty.wav", "x_nan audio/nan.wav", "x_silent audio/silent.wav", "x_short audio/short.wav", "x_long audio/long.wav",
        "x_longtext audio/a2.wav",
        "x_emptytext audio/a1.wav", "x_latin audio/a1.wav", "x_outside ../outside.wav",
        "x_pipe cat audio/a1.wav |", "x_notext audio/a1.wav", "a1 audio/a2.wav", "x_malformed", "x_nospeaker audio/a1.wav",
    ]
    texts = {
        "a1": "रामः वनं गच्छति ।", "a2": "सीता गृहे अस्ति", "a3": "अहो दौर्भाग्यम्।", "b1": "बालकः पठति",
        "b2": "गजः चलति", "c1": "नदी वहति", "c2": "प्रथमं वाक्यम् अस्ति । द्वितीयं वाक्यम् अस्ति ।",
        "x_missing": "क", "x_garbage": "ख", "x_empty": "ग", "x_nan": "घ", "x_silent": "ङ", "x_short": "च", "x_long": "छ ज",
        "x_longtext": "क " * 200,  # some 400 characters for 1.1 s of audio
        "x_emptytext": "।", "x_latin": "abc", "x_outside": "ट", "x_pipe": "ठ", "x_orphan": "ड",
        "x_nospeaker": "ढ",
    }
    spk = {"a": "spkA", "b": "spkB", "c": "spkC"}
    d = root / "data" / "all"
    d.mkdir(parents=True)
    (d / "wav.scp").write_text("\n".join(wav) + "\n")
    text = "".join(f"{k} {v}\n" for k, v in texts.items()).encode() + b"x_bad " + b"\xff\xfe\n"
    (d / "text").write_bytes(text)
    (d / "utt2spk").write_text("".join(f"{k} {spk.get(k[0], 'spkX')}\n" for k in texts if k != "x_nospeaker"))
    return root


def wav_bytes(y: np.ndarray, sr: int = SR, format: str = "WAV") -> bytes:
    """An audio file's bytes (what a Hugging Face Audio column stores)."""
    import io

    buf = io.BytesIO()
    sf.write(buf, y, sr, format=format)
    return buf.getvalue()


def hf_parquet(path: Path, rows: list[dict], row_group_size: int = 2) -> Path:
    """A Parquet data file as Hugging Face writes one: ``audio`` a struct of bytes and path, the
    other keys of ``rows`` plain columns (small row groups, so that reads cross them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    columns = {k: [r.get(k) for r in rows] for k in rows[0]}
    table = pa.table({k: pa.array(v, type=audio) if k == "audio" else pa.array(v) for k, v in columns.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path

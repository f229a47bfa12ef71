"""Decoding and resampling audio: any format soundfile/librosa read, any rate, any channels.

``load_audio`` is the single way the project reads audio, in data prep, in
transcription and in training, so every stage hears the same samples.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import soxr

TARGET_SR = 16000


class AudioError(RuntimeError):
    """Audio that cannot be read; the message names the file."""


def read_audio(path: str | os.PathLike, offset: float = 0.0, duration: float | None = None) -> tuple[np.ndarray, int]:
    """Decode ``path`` (optionally a window) to float32 of shape (frames, channels) and its rate."""
    path = os.fspath(path)
    try:
        with sf.SoundFile(path) as f:
            sr = f.samplerate
            start = int(round(offset * sr))
            if start:
                f.seek(min(start, f.frames))
            frames = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)
        return data, sr
    except (sf.LibsndfileError, RuntimeError, TypeError) as sf_error:
        # Formats libsndfile does not know (e.g. some m4a/webm) go through librosa/audioread.
        try:
            import librosa

            y, sr = librosa.load(path, sr=None, mono=False, offset=offset, duration=duration, dtype=np.float32)
        except Exception as e:  # noqa: BLE001 - any decoder failure is an unreadable file
            raise AudioError(f"{path}: cannot decode audio ({sf_error}; {e})") from e
        y = np.atleast_2d(y)
        return np.ascontiguousarray(y.T), int(sr)
    except FileNotFoundError as e:
        raise AudioError(f"{path}: file not found") from e


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array."""
    return data.mean(axis=1) if data.ndim == 2 else data


def resample(y: np.ndarray, sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """High-quality resampling with soxr (never a hand-written resampler)."""
    if sr == target_sr:
        return y.astype(np.float32, copy=False)
    return soxr.resample(y, sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(
    path: str | os.PathLike, offset: float = 0.0, duration: float | None = None, sr: int = TARGET_SR
) -> np.ndarray:
    """Mono float32 samples at ``sr`` Hz. Raises :class:`AudioError` naming the file."""
    if not os.path.exists(path):
        raise AudioError(f"{os.fspath(path)}: file not found")
    data, file_sr = read_audio(path, offset, duration)
    return resample(to_mono(data), file_sr, sr)


# -- Conditioning for data prep (decode -> mono -> 16 kHz -> DC -> trim -> level) --

#: Frame length for energy measurements (trimming, pause detection).
FRAME_S = 0.02


def read_audio_bytes(data: bytes, name: str = "<pipe>") -> tuple[np.ndarray, int]:
    """Decode an in-memory audio file (e.g. a Kaldi pipe's stdout) to (frames, channels) and its rate."""
    import io

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            return f.read(dtype="float32", always_2d=True), f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(f"{name}: cannot decode audio ({e})") from e


def clipped_fraction(data: np.ndarray, level: float = 0.999) -> float:
    """Fraction of samples at (or beyond) full scale: a sign the recording clipped."""
    if not data.size or (float(data.max()) < level and float(data.min()) > -level):
        return 0.0  # two cheap reductions settle the usual case
    return float(np.count_nonzero(np.abs(data) >= level)) / data.size


def remove_dc(y: np.ndarray) -> tuple[np.ndarray, float]:
    """Subtract the mean; returns the signal and the offset that was removed."""
    mean = float(y.mean()) if y.size else 0.0
    return (y - mean).astype(np.float32, copy=False), mean


def frame_db(y: np.ndarray, sr: int, frame_s: float = FRAME_S) -> np.ndarray:
    """RMS level in dBFS of consecutive non-overlapping frames (the last partial frame included)."""
    n = max(1, int(round(frame_s * sr)))
    pad = (-len(y)) % n
    frames = np.pad(y, (0, pad)).reshape(-1, n) if pad else y.reshape(-1, n)
    power = np.einsum("ij,ij->i", frames, frames) / n  # float32 is plenty for levels in dB
    return (10 * np.log10(np.maximum(power, 1e-20))).astype(np.float32)


def noise_floor_db(db: np.ndarray) -> float:
    """Background level estimate: the 10th percentile of frame levels."""
    if not db.size:
        return -200.0
    k = int(0.1 * (db.size - 1))
    return float(np.partition(db, k)[k])


def active_frames(db: np.ndarray, rel_db: float = -35.0, floor_db: float = -55.0, snr_margin_db: float = 6.0
                  ) -> np.ndarray:
    """Frames louder than ``rel_db`` below the loudest frame, ``snr_margin_db`` above the
    noise floor and an absolute floor (all three, so neither hiss nor a quiet room counts)."""
    if db.size == 0:
        return np.zeros(0, dtype=bool)
    return db > max(float(db.max()) + rel_db, noise_floor_db(db) + snr_margin_db, floor_db)


def snr_db(y: np.ndarray, sr: int, db: np.ndarray | None = None) -> float:
    """Loudest frame over the noise floor: below ~20 dB an energy threshold cannot tell speech from noise."""
    db = frame_db(y, sr) if db is None else db
    return float(db.max()) - noise_floor_db(db) if db.size else 0.0


def pad_bounds(first: int, last: int, n: int, sr: int, pad_s: float) -> tuple[int, int]:
    """Sample range [first - pad, last + pad) clipped to [0, n)."""
    pad = int(round(pad_s * sr))
    return max(0, first - pad), min(n, last + pad)


def trim_bounds(
    y: np.ndarray, sr: int, pad_s: float = 0.15, frame_s: float = FRAME_S, db: np.ndarray | None = None
) -> tuple[int, int] | None:
    """Sample range [start, end) without leading/trailing silence, keeping ``pad_s`` around speech.

    Energy based: cheap (~1000x faster than a neural VAD) and safe because of the
    padding, but only trustworthy when :func:`snr_db` is high enough. ``db`` may
    pass precomputed :func:`frame_db` levels (same ``frame_s``).
    Returns None when no frame is active (a silent clip), so the caller can flag it.
    """
    act = active_frames(frame_db(y, sr, frame_s) if db is None else db)
    idx = np.flatnonzero(act)
    if idx.size == 0:
        return None
    n = int(round(frame_s * sr))
    return pad_bounds(int(idx[0]) * n, (int(idx[-1]) + 1) * n, len(y), sr, pad_s)


def level_gain_db(
    y: np.ndarray, sr: int, target_db: float = -20.0, peak: float = 0.95, max_gain_db: float = 30.0,
    db: np.ndarray | None = None,
) -> float:
    """Gain (dB) that gives active frames ``target_db`` RMS without the peak exceeding ``peak``.

    Capped at ``max_gain_db`` so noise-only clips are not blown up. ``db`` may
    pass :func:`frame_db` levels measured before trimming (trimming removes only
    inactive frames, so the speech level is the same).
    """
    if y.size == 0:
        return 0.0
    db = frame_db(y, sr) if db is None else db
    act = active_frames(db)
    levels = db[act] if act.any() else db
    speech_db = float(10 * np.log10(np.mean(10 ** (levels.astype(np.float64) / 10)) + 1e-20))
    gain_db = min(target_db - speech_db, max_gain_db)
    top = float(max(y.max(), -y.min()))
    if top > 0:
        gain_db = min(gain_db, 20 * np.log10(peak / top))
    return gain_db


def normalize_level(
    y: np.ndarray, sr: int, target_db: float = -20.0, peak: float = 0.95, max_gain_db: float = 30.0,
    db: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """The signal scaled by :func:`level_gain_db`, and that gain in dB."""
    gain_db = level_gain_db(y, sr, target_db, peak, max_gain_db, db)
    return (y * np.float32(10 ** (gain_db / 20))).astype(np.float32, copy=False), gain_db


def to_pcm16(y: np.ndarray, gain_db: float = 0.0) -> np.ndarray:
    """Float samples (times ``gain_db``) to int16, rounded and clipped, in one buffer."""
    z = y * np.float32(32767.0 * 10 ** (gain_db / 20))
    np.rint(z, out=z)
    np.clip(z, -32768, 32767, out=z)
    return z.astype(np.int16)


CACHE_FORMATS = ("flac", "wav")


def write_flac(path: str | os.PathLike, y: np.ndarray, sr: int = TARGET_SR, format: str = "flac") -> None:
    """Write 16-bit FLAC (or WAV) through a temporary file and an atomic rename.

    ``y`` is float in [-1, 1] or already int16 (:func:`to_pcm16`).

    Encoded in memory at the fastest FLAC level (libsndfile's many small
    header writes to a file cost more than the encoding) and written in one go.
    No fsync: this is a regenerable cache; the rename alone keeps a killed run
    from leaving a partial file under the final name.
    """
    import io

    pcm = y if y.dtype == np.int16 else to_pcm16(y)
    buf = io.BytesIO()
    if format == "flac":
        sf.write(buf, pcm, sr, subtype="PCM_16", format="FLAC", compression_level=0.0)
    elif format == "wav":  # ~10x cheaper to write than FLAC, ~2.6x the disk
        sf.write(buf, pcm, sr, subtype="PCM_16", format="WAV")
    else:
        raise ValueError(f"unknown cache format {format!r}; known: {CACHE_FORMATS}")
    write_bytes_atomic(path, buf.getvalue())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary name in the target folder, then rename (no fsync; see write_flac)."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    tmp = f"{folder}/.{os.path.basename(path)}.{os.getpid()}.tmp"
    try:
        try:
            f = open(tmp, "wb")
        except FileNotFoundError:  # mkdir only when needed: one stat fewer per file
            os.makedirs(folder, exist_ok=True)
            f = open(tmp, "wb")
        with f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

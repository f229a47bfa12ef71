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

"""Decoding and resampling audio: any format soundfile/librosa read, any rate, any channels.

``load_audio`` is the single way the project reads audio, in data prep, in
transcription and in training, so every stage hears the same samples.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

TARGET_SR = 16000


class AudioError(RuntimeError):
    """Audio that cannot be read; the message names the file.

    Every failure to decode one clip is this error, whatever the decoder raised (a
    damaged header, an absurd rate, no channels, NaN samples, memory), so that a
    caller can set the clip aside and go on with the others.
    """


#: Sample rates a real recording can have; a header outside them is damaged (0 Hz, 2**31 - 1 Hz),
#: and resampling from it would make no samples or billions of them.
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 1_000_000


@contextlib.contextmanager
def clip_errors(path: str) -> Iterator[None]:
    """Turn whatever decoding ``path`` raises into an :class:`AudioError` naming it."""
    try:
        yield
    except AudioError:
        raise
    except FileNotFoundError as e:
        raise AudioError(f"{path}: file not found") from e
    except Exception as e:  # noqa: BLE001 - a damaged file can make any decoder step fail
        raise AudioError(f"{path}: cannot decode audio ({type(e).__name__}: {e or 'no detail'})") from e


def check_format(path: str, sr: int, channels: int) -> None:
    """Raise :class:`AudioError` for a rate or channel count no recording has (a damaged header)."""
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: sample rate {sr} Hz is not a plausible audio rate (accepted: "
                         f"{MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz); is the header damaged?")
    if channels < 1:
        raise AudioError(f"{path}: the header says {channels} channels")


def check_finite(path: str, y: np.ndarray) -> np.ndarray:
    """``y``, or :class:`AudioError` when a sample is NaN or infinite (a float file gone bad)."""
    if y.size and not (math.isfinite(y.min()) and math.isfinite(y.max())):  # both propagate NaN
        raise AudioError(f"{path}: {int((~np.isfinite(y)).sum())} NaN/infinite samples")
    return y


#: What libsndfile raises for a file it cannot open or read: another decoder may still read it.
_SOUNDFILE_ERRORS = (sf.LibsndfileError, RuntimeError, TypeError)


def read_audio(path: str | os.PathLike, offset: float = 0.0, duration: float | None = None) -> tuple[np.ndarray, int]:
    """Decode ``path`` (optionally a window) to float32 of shape (frames, channels) and its rate."""
    path = os.fspath(path)
    with clip_errors(path):
        try:
            with sf.SoundFile(path) as f:
                sr = f.samplerate
                check_format(path, sr, f.channels)
                start = int(round(offset * sr))
                if start:
                    f.seek(min(start, f.frames))
                frames = -1 if duration is None else int(round(duration * sr))
                data = f.read(frames=frames, dtype="float32", always_2d=True)
            return data, sr
        except AudioError:
            raise
        except _SOUNDFILE_ERRORS as sf_error:
            return _read_other(path, offset, duration, sf_error)


def _read_other(path: str, offset: float, duration: float | None, sf_error: Exception) -> tuple[np.ndarray, int]:
    """Formats libsndfile does not know (e.g. some m4a/webm), through librosa/audioread."""
    try:
        import librosa

        with warnings.catch_warnings():  # its fallback and deprecation warnings: the error says it all
            warnings.simplefilter("ignore")
            y, sr = librosa.load(path, sr=None, mono=False, offset=offset, duration=duration, dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - any decoder failure is an unreadable file
        raise AudioError(f"{path}: cannot decode audio ({sf_error}{f'; {e}' if str(e) else ''})") from e
    y = np.atleast_2d(y)
    check_format(path, int(sr), y.shape[0])
    return np.ascontiguousarray(y.T), int(sr)


def to_mono(data: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array (a view of the only channel when mono)."""
    if data.ndim != 2:
        return data
    # averaging one channel copies it for nothing: the mean of one value is that value
    return data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)


def resample(y: np.ndarray, sr: int, target_sr: int = TARGET_SR) -> np.ndarray:
    """High-quality resampling with soxr (never a hand-written resampler)."""
    if sr == target_sr:
        return y.astype(np.float32, copy=False)
    return soxr.resample(y, sr, target_sr, quality="HQ").astype(np.float32, copy=False)


def load_audio(
    path: str | os.PathLike, offset: float = 0.0, duration: float | None = None, sr: int = TARGET_SR
) -> np.ndarray:
    """Mono float32 samples at ``sr`` Hz. Raises :class:`AudioError` naming the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: file not found")
    data, file_sr = read_audio(path, offset, duration)
    with clip_errors(path):
        return check_finite(path, resample(to_mono(data), file_sr, sr))


#: Decoded before a window of a lossy file and dropped. An MP3 seek lands without the bit
#: reservoir and overlap of the frames before it, so its first ~80 ms come out wrong (up to
#: 0.9 of full scale measured on the Sanskrit CV clips); 0.2 s left 3 of 1,744 seeks off,
#: 0.3 s made all 4,641 tried sample-exact. Also keeps the resampler's start transient out.
SEEK_PREROLL_S = 0.5
#: Decoded after a window that is resampled and dropped: the resampler's end transient.
RESAMPLE_TAIL_S = 0.1
#: Formats whose seeks may not be sample-exact (libsndfile's lossy decoders).
LOSSY_FORMATS = frozenset({"MP3", "OGG"})


def window_frames(offset: float, duration: float | None, file_sr: int, sr: int, lossy: bool
                  ) -> tuple[int, int, int, int]:
    """(first source frame, source frames or -1 for all, output samples to drop, to keep or -1).

    The window is placed on the ``sr`` grid, as slicing the whole file's resampled
    samples would place it. Reading starts ``SEEK_PREROLL_S`` earlier, snapped back to
    an instant that lies on both the file's and the output's sample grid, so the
    resampled samples fall on the same instants as the whole file's.
    """
    start = int(round(offset * sr))
    keep = -1 if duration is None else int(round(duration * sr))
    if not lossy and file_sr == sr:
        return start, keep, 0, keep
    g = math.gcd(file_sr, sr)
    step_in, step_out = file_sr // g, sr // g  # one instant common to both grids, in frames of each
    first_out = max(0, start - int(SEEK_PREROLL_S * sr)) // step_out * step_out
    first = first_out // step_out * step_in
    if keep < 0:
        return first, -1, start - first_out, -1
    tail = int(RESAMPLE_TAIL_S * sr) if file_sr != sr else 0
    frames = math.ceil((start + keep + tail) * file_sr / sr) - first
    return first, frames, start - first_out, keep


def load_window(
    path: str | os.PathLike, offset: float = 0.0, duration: float | None = None, sr: int = TARGET_SR
) -> np.ndarray:
    """Mono float32 at ``sr`` of [offset, offset + duration): the whole file decoded and resampled, then sliced.

    What a manifest record that points into a source file needs (``prepare
    --cache-format none``): ``prepare`` measured the trim and the level on the whole
    clip, so a window must give those samples, which a plain seek into an MP3 or a
    resampled window does not at its edges. Decodes only the window plus margins;
    for a PCM/FLAC file already at ``sr`` it is exactly :func:`load_audio`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: file not found")
    with clip_errors(path):
        try:
            with sf.SoundFile(path) as f:
                file_sr, lossy = f.samplerate, f.format in LOSSY_FORMATS
                check_format(path, file_sr, f.channels)
                first, frames, drop, keep = window_frames(offset, duration, file_sr, sr, lossy)
                if first:
                    f.seek(min(first, f.frames))
                data = f.read(frames=frames, dtype="float32", always_2d=True)
        except AudioError:
            raise
        except _SOUNDFILE_ERRORS:
            # what only librosa reads is decoded from the start anyway (read_audio's fallback)
            return load_audio(path, offset, duration, sr)
        y = check_finite(path, resample(to_mono(data), file_sr, sr))
    if drop == 0 and (keep < 0 or keep >= len(y)):
        return y
    return y[drop:] if keep < 0 else y[drop : drop + keep]


def audio_duration(path: str | os.PathLike) -> float | None:
    """Seconds of audio from the header alone (no decoding); None where soundfile cannot read it.

    For an MP3 libsndfile may estimate the length; a caller that must be exact decodes.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: file not found")
    try:
        with sf.SoundFile(path) as f:
            check_format(path, f.samplerate, f.channels)
            return f.frames / f.samplerate
    except AudioError:
        raise
    except _SOUNDFILE_ERRORS:
        return None


def stream_audio(path: str | os.PathLike, block_s: float = 30.0, sr: int = TARGET_SR) -> Iterator[np.ndarray]:
    """The whole file as consecutive mono float32 blocks at ``sr`` (about ``block_s`` seconds each).

    Memory stays flat in the file's length: soundfile decodes a block at a time and soxr
    resamples the stream. The samples agree with :func:`load_audio`'s up to the resampler's
    rounding (what a level meter or a VAD reads, not a bit-exact copy). A format only
    librosa reads is decoded whole first. Raises :class:`AudioError` naming the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioError(f"{path}: file not found")
    with clip_errors(path):
        try:
            f = sf.SoundFile(path)
        except _SOUNDFILE_ERRORS:
            y = load_audio(path, sr=sr)
            step = max(1, int(block_s * sr))
            for i in range(0, len(y), step):
                yield y[i : i + step]
            return
        with f:
            check_format(path, f.samplerate, f.channels)
            stream = None if f.samplerate == sr else soxr.ResampleStream(f.samplerate, sr, 1, dtype="float32")
            frames = max(1, int(block_s * f.samplerate))
            while True:
                data = f.read(frames=frames, dtype="float32", always_2d=True)
                last = len(data) < frames
                y = np.ascontiguousarray(to_mono(data), dtype=np.float32)
                if stream is not None:
                    y = stream.resample_chunk(y, last=last)
                if len(y):
                    yield check_finite(path, y)
                if last:
                    return


# -- Conditioning for data prep (decode -> mono -> 16 kHz -> DC -> trim -> level) --

#: Frame length for energy measurements (trimming, pause detection).
FRAME_S = 0.02


def read_audio_bytes(data: bytes, name: str = "<pipe>") -> tuple[np.ndarray, int]:
    """Decode an in-memory audio file (e.g. a Kaldi pipe's stdout) to (frames, channels) and its rate."""
    with clip_errors(name):
        with sf.SoundFile(io.BytesIO(data)) as f:
            check_format(name, f.samplerate, f.channels)
            return f.read(dtype="float32", always_2d=True), f.samplerate


def clipped_fraction(data: np.ndarray, level: float = 0.999, *, bounds: tuple[float, float] | None = None
                     ) -> float:
    """Fraction of samples at (or beyond) full scale: a sign the recording clipped.

    ``bounds`` may pass ``(data.min(), data.max())`` when the caller has them already.
    """
    if not data.size:
        return 0.0
    lo, hi = (float(data.min()), float(data.max())) if bounds is None else bounds
    if hi < level and lo > -level:
        return 0.0  # two cheap reductions settle the usual case
    return float(np.count_nonzero(np.abs(data) >= level)) / data.size


def _mean(y: np.ndarray) -> np.floating:
    """``y.mean()``, the same value: for float32 and float64, numpy's sum divided by the count
    as ``np.mean`` divides it, without the Python layers of ``np.mean`` (~4 us a call)."""
    if y.dtype != np.float32 and y.dtype != np.float64:
        return y.mean()
    total = np.add.reduce(y, axis=None)
    return total.dtype.type(total / y.size)


def remove_dc(y: np.ndarray, *, overwrite: bool = False) -> tuple[np.ndarray, float]:
    """Subtract the mean; returns the signal and the offset that was removed.

    ``overwrite=True`` subtracts in place (``y`` must be float32 and writable): same
    values, without a copy of the whole clip.
    """
    mean = float(_mean(y)) if y.size else 0.0
    if overwrite and y.dtype == np.float32:
        return np.subtract(y, mean, out=y), mean
    return (y - mean).astype(np.float32, copy=False), mean


def frame_db(y: np.ndarray, sr: int, frame_s: float = FRAME_S) -> np.ndarray:
    """RMS level in dBFS of consecutive non-overlapping frames (the last partial frame included)."""
    n = max(1, int(round(frame_s * sr)))
    full = len(y) // n * n
    frames = y[:full].reshape(-1, n)
    # float32 is plenty for levels in dB
    sums = np.einsum("ij,ij->i", frames, frames)
    if full < len(y):  # zero-pad only the last partial frame, not a copy of the whole clip
        last = np.zeros((1, n), dtype=y.dtype)
        last[0, : len(y) - full] = y[full:]
        sums = np.concatenate([sums, np.einsum("ij,ij->i", last, last)])
    power = sums / n
    # 10 * log10(max(power, 1e-20)) as float32, in place (power is a new array)
    np.maximum(power, 1e-20, out=power)
    np.log10(power, out=power)
    power *= 10
    return power.astype(np.float32, copy=False)


def noise_floor_db(db: np.ndarray) -> float:
    """Background level estimate: the 10th percentile of frame levels."""
    if not db.size:
        return -200.0
    k = int(0.1 * (db.size - 1))
    return float(np.partition(db, k)[k])


def active_frames(db: np.ndarray, rel_db: float = -35.0, floor_db: float = -55.0, snr_margin_db: float = 6.0,
                  *, loudest: float | None = None, floor: float | None = None) -> np.ndarray:
    """Frames louder than ``rel_db`` below the loudest frame, ``snr_margin_db`` above the
    noise floor and an absolute floor (all three, so neither hiss nor a quiet room counts).

    ``loudest`` and ``floor`` may pass ``float(db.max())`` and :func:`noise_floor_db` of
    ``db`` when the caller has them already.
    """
    if db.size == 0:
        return np.zeros(0, dtype=bool)
    loudest = float(db.max()) if loudest is None else loudest
    floor = noise_floor_db(db) if floor is None else floor
    return db > max(loudest + rel_db, floor + snr_margin_db, floor_db)


def snr_db(y: np.ndarray, sr: int, db: np.ndarray | None = None) -> float:
    """Loudest frame over the noise floor: below ~20 dB an energy threshold cannot tell speech from noise."""
    db = frame_db(y, sr) if db is None else db
    return float(db.max()) - noise_floor_db(db) if db.size else 0.0



def pad_bounds(first: int, last: int, n: int, sr: int, pad_s: float) -> tuple[int, int]:
    """Sample range [first - pad, last + pad) clipped to [0, n)."""
    pad = int(round(pad_s * sr))
    return max(0, first - pad), min(n, last + pad)


def trim_bounds(
    y: np.ndarray, sr: int, pad_s: float = 0.15, frame_s: float = FRAME_S, db: np.ndarray | None = None,
    *, act: np.ndarray | None = None,
) -> tuple[int, int] | None:
    """Sample range [start, end) without leading/trailing silence, keeping ``pad_s`` around speech.

    Energy based: cheap (~1000x faster than a neural VAD) and safe because of the
    padding, but only trustworthy when :func:`snr_db` is high enough. ``db`` may
    pass precomputed :func:`frame_db` levels (same ``frame_s``), ``act`` their
    :func:`active_frames`.
    Returns None when no frame is active (a silent clip), so the caller can flag it.
    """
    if act is None:
        act = active_frames(frame_db(y, sr, frame_s) if db is None else db)
    idx = np.flatnonzero(act)
    if idx.size == 0:
        return None
    n = int(round(frame_s * sr))
    return pad_bounds(int(idx[0]) * n, (int(idx[-1]) + 1) * n, len(y), sr, pad_s)


def level_gain_db(
    y: np.ndarray, sr: int, target_db: float = -20.0, peak: float = 0.95, max_gain_db: float = 30.0,
    db: np.ndarray | None = None, *, top: float | None = None, act: np.ndarray | None = None,
) -> float:
    """Gain (dB) that gives active frames ``target_db`` RMS without the peak exceeding ``peak``.

    Capped at ``max_gain_db`` so noise-only clips are not blown up. ``db`` may
    pass :func:`frame_db` levels measured before trimming (trimming removes only
    inactive frames, so the speech level is the same), ``act`` their
    :func:`active_frames`; ``top`` may pass :func:`peak_abs` of ``y``.
    """
    if y.size == 0:
        return 0.0
    db = frame_db(y, sr) if db is None else db
    act = active_frames(db) if act is None else act
    levels = db[act] if act.any() else db
    power = levels.astype(np.float64)  # 10 ** (levels / 10) in float64, in place in a new array
    power /= 10
    np.power(10, power, out=power)
    speech_db = float(10 * np.log10(_mean(power) + 1e-20))
    gain_db = min(target_db - speech_db, max_gain_db)
    top = peak_abs(y) if top is None else top
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


def peak_abs(y: np.ndarray) -> float:
    """Largest absolute sample value (two reductions, no ``abs`` copy)."""
    return float(max(y.max(), -y.min())) if y.size else 0.0


def to_pcm16(y: np.ndarray, gain_db: float = 0.0, *, overwrite: bool = False, top: float | None = None
             ) -> np.ndarray:
    """Float samples (times ``gain_db``) to int16, rounded and clipped.

    ``overwrite=True`` scales ``y`` in place (it must be float and writable);
    ``top`` may pass :func:`peak_abs` of ``y``. Neither changes the result.
    """
    scale = np.float32(32767.0 * 10 ** (gain_db / 20))
    z = np.multiply(y, scale, out=y if overwrite and y.dtype.kind == "f" else None)
    np.rint(z, out=z)
    # Rounding is monotonic and symmetric, so no sample exceeds rint(top * scale): when that
    # fits, clipping is a no-op and its pass over the clip (slower than the rest) is skipped.
    bound = None if top is None else float(np.rint(z.dtype.type(top) * z.dtype.type(scale)))
    if bound is None or not bound <= 32767:
        np.clip(z, -32768, 32767, out=z)
    return z.astype(np.int16)


CACHE_FORMATS = ("flac", "wav")


def write_flac(path: str | os.PathLike, y: np.ndarray, sr: int = TARGET_SR, format: str = "flac", *,
               comment: str | None = None) -> None:
    """Write 16-bit FLAC (or WAV) through a temporary file and an atomic rename.

    ``y`` is float in [-1, 1] or already int16 (:func:`to_pcm16`). ``comment`` is
    stored in the file's comment tag (FLAC Vorbis comment, WAV INFO/ICMT), where
    :func:`read_comment` finds it without decoding.

    Encoded in memory at the fastest FLAC level (libsndfile's many small
    header writes to a file cost more than the encoding) and written in one go.
    No fsync: this is a regenerable cache; the rename alone keeps a killed run
    from leaving a partial file under the final name.
    """
    if format not in CACHE_FORMATS:
        raise ValueError(f"unknown cache format {format!r}; known: {CACHE_FORMATS}")
    pcm = y if y.dtype == np.int16 else to_pcm16(y)
    kw = {"compression_level": 0.0} if format == "flac" else {}  # WAV: ~10x cheaper to write, ~2.6x the disk
    target, fd = _scratch_file()
    with sf.SoundFile(target, "w", sr, 1, subtype="PCM_16", format=format.upper(), closefd=False, **kw) as f:
        if comment is not None:
            f.comment = comment  # before any audio: FLAC writes its tags in the header
        f.write(pcm)
    if fd is None:
        data = target.getvalue()
    else:
        data = os.pread(fd, os.lseek(fd, 0, os.SEEK_END), 0)
    write_bytes_atomic(path, data)


class _Memfd:
    """An in-memory file owned by one process and thread (closed with it)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.fd = os.memfd_create("audio-cache", os.MFD_CLOEXEC)

    def __del__(self) -> None:
        os.close(self.fd)


_SCRATCH = threading.local()


def _scratch_file() -> tuple[int | io.BytesIO, int | None]:
    """(target for sf.SoundFile, its fd or None): an emptied in-memory file of this thread.

    A memfd lets libsndfile write with plain syscalls; an ``io.BytesIO`` costs one
    Python callback per small write (~90 per clip, ~10 % of the FLAC encoding).
    The pid check keeps forked workers from sharing their parent's memfd.
    """
    if not hasattr(os, "memfd_create"):  # not Linux
        return io.BytesIO(), None
    mem = getattr(_SCRATCH, "mem", None)
    if mem is None or mem.pid != os.getpid():
        mem = _SCRATCH.mem = _Memfd()
    os.ftruncate(mem.fd, 0)
    os.lseek(mem.fd, 0, os.SEEK_SET)
    return mem.fd, mem.fd


def read_comment(path: str | os.PathLike) -> str | None:
    """The comment tag :func:`write_flac` stored, read from the header alone (no decoding).

    None when the file is missing, is neither FLAC nor WAV, or has no comment.
    Reads the FLAC metadata blocks (Vorbis comment ``COMMENT=``) or the RIFF
    chunks before ``data`` (``LIST``/``INFO``/``ICMT``); about 5x cheaper than
    opening the file with libsndfile, which matters when a rerun checks every clip.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            if head[:4] == b"fLaC":
                return _flac_comment(f, head)
            if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
                return _wav_comment(f, head)
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return None


def _more(f, buf: bytes, need: int) -> bytes:
    """``buf`` (the file's first bytes) extended to at least ``need`` bytes if the file has them."""
    return buf + f.read(need - len(buf)) if need > len(buf) else buf


def _flac_comment(f, buf: bytes) -> str | None:
    pos, last = 4, False
    while not last:
        buf = _more(f, buf, pos + 4)
        last, kind, size = bool(buf[pos] & 0x80), buf[pos] & 0x7F, int.from_bytes(buf[pos + 1 : pos + 4], "big")
        pos += 4
        if kind == 4:  # VORBIS_COMMENT: little-endian lengths, entries "KEY=value"
            block = _more(f, buf, pos + size)[pos : pos + size]
            i = 4 + int.from_bytes(block[:4], "little")  # skip the vendor string
            count, i = int.from_bytes(block[i : i + 4], "little"), i + 4
            for _ in range(count):
                n = int.from_bytes(block[i : i + 4], "little")
                key, _, value = block[i + 4 : i + 4 + n].partition(b"=")
                if key.upper() == b"COMMENT":
                    return value.decode("utf-8")
                i += 4 + n
            return None
        pos += size
    return None


def _wav_comment(f, buf: bytes) -> str | None:
    pos = 12
    while True:
        buf = _more(f, buf, pos + 8)
        if len(buf) < pos + 8:
            return None
        cid, size = buf[pos : pos + 4], int.from_bytes(buf[pos + 4 : pos + 8], "little")
        if cid == b"data":
            return None  # tags come before the audio when libsndfile writes them
        if cid == b"LIST":
            chunk = _more(f, buf, pos + 8 + size)[pos + 8 : pos + 8 + size]
            i = 4 if chunk[:4] == b"INFO" else size
            while i + 8 <= len(chunk):
                sid, n = chunk[i : i + 4], int.from_bytes(chunk[i + 4 : i + 8], "little")
                if sid == b"ICMT":
                    return chunk[i + 8 : i + 8 + n].split(b"\0", 1)[0].decode("utf-8")
                i += 8 + n + (n & 1)
        pos += 8 + size + (size & 1)


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

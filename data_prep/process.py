"""Turning one input row into utterances or a reject: the work done in parallel.

Audio goes through decode -> mono -> 16 kHz (soxr HQ) -> DC removal -> energy
trim of leading/trailing silence -> level normalization, and is written once to
a 16-bit FLAC cache ``cache/<k[:2]>/<k>.flac`` under the output folder. ``k``
is a hash of the source's identity (resolved path, size, mtime; or the pipe
command), the window (offset, duration) and :data:`AUDIO_VERSION` plus the
processing parameters, so a rerun (after ``kill -9`` too) skips every clip
whose FLAC exists, and a changed source or recipe gets a new key. What the
manifest needs (duration, flags, source rate and channels, SNR) is JSON in the
FLAC's own comment tag, so a clip is ONE file, written atomically (temp +
rename): creating files is the costliest system call of a cold run. A sidecar
``<k>.json`` exists only for an audio-level reject (no FLAC) and for the VAD
speech regions of clips over the limit; caches written before the tag (meta in
the sidecar) are still read. Text checks and split planning are cheap and are
redone on every run.

Reference mode (``--cache-format none``) runs the same analysis but writes no
audio: the record points at the source file itself, with the trim as
``offset``/``duration`` and the level and DC removal as ``gain``/``dc_offset``,
which :meth:`~data_prep.manifest.Utterance.load_audio` applies, so it gives
the FLAC entry's samples without its int16 rounding. The per-clip meta goes to
append-only journals instead of tags (:mod:`data_prep.refcache`); long clips
are split into windows of the source. Kaldi pipes have no file to point into,
so their clips are still cached as FLAC.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import shlex
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep import audio as A
from data_prep.importers.base import RawRow, Row, rel
from data_prep.importers.hf import read_embedded
from data_prep.manifest import Reject, Utterance
from data_prep.refcache import ref_cache
from data_prep.segment import plan_split, speech_regions
from data_prep.text.normalize import get_normalizer
from data_prep.validate import check_text, check_text_rate, realpath, reject, screen_row

#: Bump when the audio processing changes, so caches are rebuilt.
AUDIO_VERSION = "audio-v2"
CACHE_DIR = "cache"
#: ``--cache-format none``: no audio is written; records point into the source (reference mode)
REFERENCE = "none"
#: What ``--cache-format`` accepts.
CACHE_CHOICES = (*A.CACHE_FORMATS, REFERENCE)
CLIP_FRACTION = 1e-3  # flag clipping above 0.1 % of samples at full scale
DC_FLAG = 0.01  # flag a DC offset above 1 % of full scale
MIN_SNR_DB = 20.0  # below this, energy trimming is unsure and the VAD decides

RowResult = list[Utterance] | Reject


class OutputError(RuntimeError):
    """The output folder cannot be written (disk full, permissions): the run stops, since no row is to blame."""


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    # an OSError here would otherwise pass for the row's own (reject unreadable_audio), row after row
    try:
        yield
    except OSError as e:
        raise OutputError(f"{path}: cannot write the cache: {e}") from e


@dataclass(frozen=True)
class ProcessConfig:
    """Everything a worker needs; picklable and part of the run's record (prepare.json)."""

    out_dir: str
    root: str
    rules: str
    language: str
    min_duration: float = 0.3
    max_duration: float = 30.0
    vad: str = "auto"  # pauses for splitting long clips: auto | silero | energy
    allow_pipes: bool = False
    allow_outside_root: bool = False
    pipe_timeout_s: float = 600.0
    target_db: float = -20.0
    trim_pad_s: float = 0.15
    trim_vad: str = "silero"  # for low-SNR clips: "silero" or "none" (keep whole)
    cache_format: str = "flac"  # or "wav": faster to write, bigger; or "none" (REFERENCE): no audio written


def run_pipe(command: str, timeout: float, cwd: str | None = None) -> bytes:
    """Run a Kaldi ``cmd args | [cmd2 ... |]`` pipe WITHOUT a shell and return its stdout.

    The line is tokenized with :func:`shlex.split` and stages separated by ``|``
    tokens are chained with :class:`subprocess.Popen`, so no shell syntax
    (``;``, ``$()``, redirections) is ever interpreted. It runs in ``cwd`` (the
    corpus root), against which relative paths in the command are meant.
    """
    tokens = shlex.split(command.rstrip().removesuffix("|"))
    stages: list[list[str]] = [[]]
    for tok in tokens:
        if tok == "|":
            stages.append([])
        else:
            stages[-1].append(tok)
    if any(not s for s in stages):
        raise A.AudioError(f"{command!r}: empty stage in pipe")
    procs: list[subprocess.Popen] = []
    stdin = None
    try:
        for argv in stages:
            p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
            if stdin is not None:
                stdin.close()  # so the previous stage gets SIGPIPE if this one exits
            procs.append(p)
            stdin = p.stdout
        out, err = procs[-1].communicate(timeout=timeout)
        for p in procs[:-1]:
            p.wait(timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        for p in procs:
            p.kill()
        raise A.AudioError(f"{command!r}: pipe failed: {e}") from e
    bad = [p.returncode for p in procs if p.returncode]
    if bad:
        raise A.AudioError(f"{command!r}: pipe exited with status {bad[0]}: {err.decode(errors='replace')[:200]}")
    return out


def audio_key(row: RawRow, cfg: ProcessConfig, real: str | None = None, st: os.stat_result | None = None) -> str:
    """Cache key of a row's processed audio (see the module docstring); ``real`` may pass the resolved
    path, ``st`` its ``os.stat``."""
    if row.is_pipe:
        ident: list = ["pipe", row.audio]
    else:
        st = os.stat(row.audio) if st is None else st
        ident = [real or os.path.realpath(row.audio), st.st_size, st.st_mtime_ns]
        if row.embedded is not None:  # one row of a data file
            ident.append([row.embedded.column, row.embedded.index])
    params = [AUDIO_VERSION, A.TARGET_SR, cfg.target_db, cfg.trim_pad_s, cfg.trim_vad, MIN_SNR_DB, cfg.cache_format]
    blob = json.dumps([params, ident, row.offset, row.duration])
    return hashlib.sha1(blob.encode()).hexdigest()


def audio_name(row: RawRow) -> str:
    """How messages name a row's audio: its file, or for audio stored in a data file the file and row
    (counted from 1, as the row's source names it)."""
    return row.audio if row.embedded is None else f"{row.audio}:{row.embedded.index + 1}"


def _decode(row: RawRow, cfg: ProcessConfig) -> tuple[np.ndarray, int]:
    """A row's audio as (frames, channels) and its rate; :class:`~data_prep.audio.AudioError` whatever fails."""
    if row.embedded is not None:
        name = audio_name(row)
        with A.clip_errors(name):
            return A.read_audio_bytes(read_embedded(row.audio, row.embedded), name)
    if not row.is_pipe:
        return A.read_audio(row.audio, row.offset, row.duration)
    with A.clip_errors(row.audio):  # e.g. a pipe line shlex cannot split
        data, sr = A.read_audio_bytes(run_pipe(row.audio, cfg.pipe_timeout_s, cfg.root), row.audio)
        start = int(round(row.offset * sr))
        stop = None if row.duration is None else start + int(round(row.duration * sr))
        return data[start:stop], sr


def trim(y: np.ndarray, db: np.ndarray, snr: float, cfg: ProcessConfig, flags: list[str], *,
         act: np.ndarray | None = None) -> tuple[int, int] | None:
    """Bounds of the clip without leading/trailing silence (None: nothing sounds like speech).

    Energy first (cheap); when the clip's SNR is too low for an energy threshold
    to be trusted, the Silero VAD decides (``trim_vad="silero"``) or the clip is
    kept whole (``"none"``) and flagged ``low_snr``. ``act`` may pass
    :func:`~data_prep.audio.active_frames` of ``db``.
    """
    sr = A.TARGET_SR
    if snr >= MIN_SNR_DB:
        return A.trim_bounds(y, sr, pad_s=cfg.trim_pad_s, db=db, act=act)
    flags.append("low_snr")
    if cfg.trim_vad != "silero":
        return (0, len(y))
    regions = speech_regions(y, sr, "silero")
    if not regions:
        return None
    return A.pad_bounds(int(regions[0][0] * sr), int(regions[-1][1] * sr), len(y), sr, cfg.trim_pad_s)


@dataclass(frozen=True)
class Conditioning:
    """What conditioning decided for one clip: the FLAC cache applies it, reference mode records it."""

    y: np.ndarray  # mono 16 kHz, DC removed, NOT trimmed or scaled
    start: int  # trimmed clip = y[start:stop] (samples)
    stop: int
    dc: float  # mean removed before measuring
    gain_db: float
    top: float  # peak_abs(y[start:stop])
    flags: list[str]
    snr: float


def analyse(data: np.ndarray, sr: int, cfg: ProcessConfig, *, overwrite: bool = False,
            bounds: tuple[float, float] | None = None, at: tuple[int, int] | None = None) -> Conditioning:
    """Mono 16 kHz with DC removed, and the trim, level, flags and SNR measured on it.

    ``overwrite=True`` lets the steps work in place in ``data`` (the caller's decoded
    buffer) instead of copying the clip at each step; ``bounds`` may pass
    ``(data.min(), data.max())`` and ``at`` where they lie (``data.argmin()``,
    ``data.argmax()``). None of them changes the result.
    """
    flags = []
    if data.shape[1] > 1:
        flags.append("downmixed")
    if A.clipped_fraction(data, bounds=bounds) > CLIP_FRACTION:
        flags.append("clipping")
    y = A.to_mono(data)
    if sr != A.TARGET_SR:
        flags.append("resampled")
    y = A.resample(y, sr, A.TARGET_SR)
    # a downmix or a resampling made a new array: scratch space even if data is not
    scratch = overwrite or not np.may_share_memory(y, data)
    y, dc = A.remove_dc(y, overwrite=scratch)
    if abs(dc) > DC_FLAG:
        flags.append("dc_offset")
    # frame levels, their loudest frame, noise floor and active frames: measured once
    # for the SNR, the trimming and the level (as snr_db, trim_bounds and level_gain_db would)
    db = A.frame_db(y, A.TARGET_SR)
    loudest, floor = float(db.max()), A.noise_floor_db(db)
    snr, act = loudest - floor, A.active_frames(db, loudest=loudest, floor=floor)
    span = trim(y, db, snr, cfg, flags, act=act)
    if span is None:
        flags.append("silent")
        span = (0, len(y))
    elif span != (0, len(y)):
        flags.append("trimmed")
    clip = y[span[0] : span[1]]
    top = None
    if bounds is not None and at is not None and data.shape[1] == 1 and sr == A.TARGET_SR:
        top = _peak_from_bounds(bounds, at, dc, span)
    if top is None:
        top = A.peak_abs(clip)
    gain_db = A.level_gain_db(clip, A.TARGET_SR, target_db=cfg.target_db, db=db, top=top, act=act)
    return Conditioning(y, span[0], span[1], dc, gain_db, top, flags, snr)


def _peak_from_bounds(bounds: tuple[float, float], at: tuple[int, int], dc: float, span: tuple[int, int]
                      ) -> float | None:
    """``peak_abs(y[start:stop])`` without a pass over the clip, or None when it cannot be had so.

    For a mono 16 kHz float32 clip, ``y[i]`` is ``float32(data[i] - dc)``: rounding is
    monotonic, so when the samples where ``data`` has its minimum and maximum (``at``)
    both lie in the span, the clip's extremes are those two values minus ``dc``,
    rounded the same way (bit-exact; tests/test_dp_audio.py checks it).
    """
    (lo, hi), (i_lo, i_hi), (start, stop) = bounds, at, span
    if not (start <= i_lo < stop and start <= i_hi < stop):
        return None
    m = np.float32(dc)
    return float(max(np.float32(hi) - m, -(np.float32(lo) - m)))


def condition(data: np.ndarray, sr: int, cfg: ProcessConfig, *, overwrite: bool = False,
              bounds: tuple[float, float] | None = None) -> tuple[np.ndarray, list[str], float]:
    """Mono 16 kHz, DC removed, silence trimmed, level normalized, as int16; the flags; the SNR.

    :func:`analyse` with its decisions applied (arguments as there).
    """
    c = analyse(data, sr, cfg, overwrite=overwrite, bounds=bounds)
    # c.y is ours (remove_dc worked in scratch space or made a copy), so scale it in place
    return A.to_pcm16(c.y[c.start : c.stop], c.gain_db, overwrite=True, top=c.top), c.flags, c.snr


def _write_meta(path: Path, meta: dict) -> None:
    with _writing(path):
        A.write_bytes_atomic(path, (json.dumps(meta, sort_keys=True) + "\n").encode())


def _read_json(path: Path) -> dict | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):  # missing, or not ours
        return None
    return meta if isinstance(meta, dict) else None


def cached_meta(audio: Path) -> dict | None:
    """The cache entry of ``audio`` (a cached clip's path): its meta, or None if not (completely) cached.

    Looked up in the clip's own comment tag, else in the sidecar: an audio-level
    reject, or a clip cached before the meta moved into the tag.
    """
    tag = A.read_comment(audio)
    if tag is not None:
        try:
            meta = json.loads(tag)
        except ValueError:
            meta = None
        if isinstance(meta, dict) and "duration" in meta:
            return meta
    meta = _read_json(audio.with_suffix(".json"))
    if meta is not None and ("reject" in meta or ("duration" in meta and audio.is_file())):
        return meta
    return None


def _decode_audio(row: RawRow, cfg: ProcessConfig) -> tuple[np.ndarray, int] | dict:
    """A row's audio decoded (samples, rate), or the reject meta when it cannot be decoded or is empty."""
    try:
        data, sr = _decode(row, cfg)
    except A.AudioError as e:
        return {"reject": ["unreadable_audio", str(e)]}
    if data.size == 0:
        return {"reject": ["zero_length", "audio decodes to no samples (or the segment lies past its end)"]}
    return data, sr


def _analyse_decoded(decoded: tuple[np.ndarray, int] | dict, cfg: ProcessConfig, name: str
                     ) -> tuple[dict, Conditioning | None]:
    """(meta, conditioning) of audio :func:`_decode_audio` gave; (reject meta, None) when it is unusable.

    Whatever the analysis of one clip raises is that clip's reject (``name``: its audio, for the
    detail), never the end of the run: no file's content may stop a corpus.
    """
    if isinstance(decoded, dict):
        return decoded, None
    try:
        return _analyse_samples(*decoded, cfg)
    except Exception as e:  # noqa: BLE001 - see above
        return {"reject": ["unreadable_audio", f"{name}: cannot process the audio ({type(e).__name__}: {e})"]}, None


def _analyse_samples(data: np.ndarray, sr: int, cfg: ProcessConfig) -> tuple[dict, Conditioning | None]:
    """:func:`_analyse_decoded` of decoded samples ``data`` at ``sr`` Hz."""
    if len(data) * A.TARGET_SR < sr:  # resampling would leave nothing to measure
        return {"reject": ["zero_length", f"{len(data)} samples at {sr} Hz: not one sample at {A.TARGET_SR} Hz"]}, None
    # the minimum and the maximum propagate NaN (argmin/argmax point at the first one) and show
    # infinities: they screen the samples and, passed on, settle clipping without an isfinite
    # mask of the whole clip, and (where they lie) the trimmed clip's peak without a pass over it
    flat = data.reshape(-1)
    at = (int(flat.argmin()), int(flat.argmax()))
    lo, hi = float(flat[at[0]]), float(flat[at[1]])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return {"reject": ["nan_samples", f"{int((~np.isfinite(data)).sum())} NaN/infinite samples"]}, None
    if lo == hi:  # quiet noise only gets the "silent" flag; this clip holds no sound at all
        return {"reject": ["silent_audio", f"every sample is {lo:g}: digital silence, no speech to transcribe"]}, None
    c = analyse(data, sr, cfg, overwrite=True, bounds=(lo, hi), at=at)
    meta = {"duration": round((c.stop - c.start) / A.TARGET_SR, 4), "flags": c.flags, "source_sr": sr,
            "source_channels": int(data.shape[1]), "snr_db": round(c.snr, 1)}
    return meta, c


def _process_audio(row: RawRow, cfg: ProcessConfig) -> tuple[dict, Conditioning | None]:
    """(meta, conditioning) of a row's audio, decoded now; (reject meta, None) when it is unusable."""
    return _analyse_decoded(_decode_audio(row, cfg), cfg, audio_name(row))


def _cache_entry(row: RawRow, cfg: ProcessConfig, real: str | None = None, st: os.stat_result | None = None
                 ) -> str:
    """The cache entry of a row's clip, relative to the output folder (arguments as for :func:`audio_key`)."""
    key = audio_key(row, cfg, real, st)
    return f"{CACHE_DIR}/{key[:2]}/{key}.{cfg.cache_format}"


def _store_clip(audio: Path, meta: dict, c: Conditioning | None, cfg: ProcessConfig) -> dict:
    """Write a processed clip's cache entry ``audio`` (or the sidecar of a reject); returns ``meta``."""
    if c is not None:
        # c.y is ours (decoded for this clip), so it is scaled in place
        pcm = A.to_pcm16(c.y[c.start : c.stop], c.gain_db, overwrite=True, top=c.top)
        # one file per clip: the meta rides in the clip's comment tag, written atomically with it
        with _writing(audio):
            A.write_flac(audio, pcm, A.TARGET_SR, cfg.cache_format, comment=json.dumps(meta, sort_keys=True))
    else:
        _write_meta(audio.with_suffix(".json"), meta)
    return meta


def cached_audio(row: RawRow, cfg: ProcessConfig, real: str | None = None, st: os.stat_result | None = None
                 ) -> tuple[str, dict]:
    """(FLAC path relative to the output folder, its meta), processing the audio unless cached
    (``real``, ``st``: as for :func:`audio_key`)."""
    relpath = _cache_entry(row, cfg, real, st)
    audio = Path(cfg.out_dir) / relpath
    meta = cached_meta(audio)
    if meta is None:
        meta = _store_clip(audio, *_process_audio(row, cfg), cfg)
    return relpath, meta


@functools.lru_cache(maxsize=16)
def _cache_dir(out_dir: str) -> str:
    """``out_dir``'s cache folder, as :func:`~data_prep.prepare.run_rows` names it to :func:`ref_cache`."""
    return os.fspath(Path(out_dir) / CACHE_DIR)


def referenced_audio(row: RawRow, cfg: ProcessConfig, real: str, key: str | None = None) -> tuple[str, dict]:
    """(cache key, meta) of a row's clip in reference mode: from the journal, else decoded now.

    The meta holds what a record needs to cut and scale the source at load time:
    ``start`` (trimmed samples at 16 kHz), ``duration`` (exact, not rounded, so the
    record's window has the cached clip's sample count), ``gain`` (linear) and
    ``dc_offset``. Nothing is written but one journal line (:mod:`data_prep.refcache`).
    ``real`` is the resolved path of ``row.audio``; ``key`` may pass its :func:`audio_key`.
    """
    key = audio_key(row, cfg, real) if key is None else key
    meta = ref_cache(_cache_dir(cfg.out_dir)).meta.get(key)
    if meta is None:
        meta = _store_reference(key, *_process_audio(row, cfg), cfg)
    return key, meta


def _store_reference(key: str, meta: dict, c: Conditioning | None, cfg: ProcessConfig) -> dict:
    """Complete a referenced clip's meta from its conditioning and journal it; returns the meta."""
    if c is not None:
        meta.update(duration=(c.stop - c.start) / A.TARGET_SR, start=c.start,
                    gain=float(10 ** (c.gain_db / 20)), dc_offset=c.dc)
    ref_cache(_cache_dir(cfg.out_dir)).put_meta(key, meta)
    return meta


def reference_fields(row: RawRow, meta: dict, real: str) -> dict:
    """The Utterance fields of a reference-mode record: the source file itself, cut and scaled at load time.

    The path is ``real``, the resolved one that :func:`audio_key` hashed and the
    root check passed, so a load reads the very file prepare measured. The offset
    is exact to the 16 kHz sample (1/16000 s has 7 decimals; rounding only hides
    float noise).
    """
    return {"audio": real, "offset": round(row.offset + meta["start"] / A.TARGET_SR, 7),
            "gain": meta["gain"], "dc_offset": meta["dc_offset"], "sample_rate": meta["source_sr"],
            "channels": meta["source_channels"]}


def _vad_for(meta: dict, cfg: ProcessConfig) -> str:
    """``vad="auto"``: the energy detector when the clip's SNR lets it be trusted, else Silero
    (~50x slower, and importing torch costs seconds per process)."""
    if cfg.vad != "auto":
        return cfg.vad
    return "energy" if meta.get("snr_db", 0.0) >= MIN_SNR_DB else "silero"


def _regions(y: np.ndarray, vad: str) -> list[list[float]]:
    return [[round(s, 3), round(e, 3)] for s, e in speech_regions(y, A.TARGET_SR, vad)]


def _speech(relpath: str, meta: dict, cfg: ProcessConfig) -> list:
    """VAD speech regions of a cached clip, computed once and kept in its sidecar ``<key>.json``."""
    vad = _vad_for(meta, cfg)
    audio = Path(cfg.out_dir) / relpath
    side = _read_json(audio.with_suffix(".json")) or {}  # also a sidecar from before meta tags
    speech = side.setdefault("speech", {})
    if vad not in speech:
        speech[vad] = _regions(A.load_audio(audio), vad)
        _write_meta(audio.with_suffix(".json"), side)
    return [tuple(r) for r in speech[vad]]


def _reference_speech(key: str, clip: Utterance, meta: dict, cfg: ProcessConfig) -> list:
    """VAD speech regions of a referenced clip (``clip``: its whole record), computed once and journaled."""
    vad = _vad_for(meta, cfg)
    cache = ref_cache(_cache_dir(cfg.out_dir))
    regions = cache.speech.get(key, {}).get(vad)
    if regions is None:
        regions = _regions(clip.load_audio(cfg.out_dir), vad)
        cache.put_speech(key, vad, regions)
    return [tuple(r) for r in regions]


@dataclass
class _Checked:
    """A row that passed every check before its audio, and what the later steps need."""

    row: RawRow
    text: str
    real: str | None  # row.audio resolved (None for a pipe)
    st: os.stat_result | None  # its os.stat
    reference: bool  # a record pointing into the source (reference mode, not a pipe)
    key: str = ""  # reference: the audio key (its journal entry)
    relpath: str = ""  # otherwise: the cache entry
    meta: dict | None = None  # the audio's meta (see cached_audio, referenced_audio)


def _check(row: Row, cfg: ProcessConfig) -> Reject | _Checked:
    """The checks before any audio is touched: security screen, text, the file."""
    if isinstance(row, Reject):
        return row
    # resolved once, for the root check, the cache key and (reference mode) the record
    real = None if row.is_pipe else realpath(row.audio)
    bad = screen_row(row, cfg.root, cfg.allow_pipes, cfg.allow_outside_root, real=real)
    if bad:
        return bad
    text, bad = check_text(row, get_normalizer(cfg.rules))
    if bad:
        return bad
    st = None
    if not row.is_pipe:  # os.path.isfile, keeping the stat for the cache key
        try:
            st = os.stat(row.audio)
        except (OSError, ValueError):
            pass
        if st is None or not stat.S_ISREG(st.st_mode):
            return reject(row, "missing_audio", f"{row.audio}: file not found")
        if st.st_size == 0:  # said plainly, not as two decoders' failures to find a format
            return reject(row, "zero_length", f"{row.audio}: the file is empty (0 bytes)")
    # a pipe (or audio inside a data file) has no audio file a record could point into: in reference
    # mode its clip is cached as FLAC
    reference = cfg.cache_format == REFERENCE and not row.is_pipe and row.embedded is None
    return _Checked(row, text, real, st, reference, key=audio_key(row, cfg, real, st) if reference else "")


def _audio_cfg(c: _Checked, cfg: ProcessConfig) -> ProcessConfig:
    """The settings ``c``'s audio is processed with: a pipe's clip in reference mode is cached as FLAC."""
    return cfg if c.reference or cfg.cache_format != REFERENCE else dataclasses.replace(cfg, cache_format="flac")


def _unreadable(c: _Checked, e: OSError) -> Reject:
    # e.g. the file vanished or became unreadable after the checks
    return reject(c.row, "unreadable_audio", f"{c.row.audio}: {e}")


def _audio(c: _Checked, cfg: ProcessConfig) -> Reject | None:
    """Fill in ``c``'s audio meta (decoding the audio unless cached); a reject if the file cannot be read."""
    try:
        if c.reference:
            c.key, c.meta = referenced_audio(c.row, cfg, c.real, c.key)
        else:
            c.relpath, c.meta = cached_audio(c.row, _audio_cfg(c, cfg), c.real, c.st)
    except OSError as e:
        return _unreadable(c, e)
    return None


#: Decoded audio (bytes) after which :func:`process_rows` analyses the clips decoded so far: small enough
#: for them to be still in the CPU's L2 cache (a whole batch of 8 clips, 3.2 MB, measured 1-2 % slower).
GROUP_BYTES = 1 << 20


def _lookup(c: _Checked, cfg: ProcessConfig) -> str:
    """Look ``c``'s clip up in the cache (``c.meta`` is set if it is there); returns its entry
    (the journal key in reference mode, else the cache path). ``cfg``: :func:`_audio_cfg`."""
    if c.reference:
        c.meta = ref_cache(_cache_dir(cfg.out_dir)).meta.get(c.key)
        return c.key
    c.relpath = _cache_entry(c.row, cfg, c.real, c.st)
    c.meta = cached_meta(Path(cfg.out_dir) / c.relpath)
    return c.relpath


def _finish(c: _Checked, decoded: tuple[np.ndarray, int] | dict, cfg: ProcessConfig) -> None:
    """Analyse ``c``'s decoded clip, store what the cache keeps of it and set ``c.meta``
    (:func:`referenced_audio` and :func:`cached_audio` after their decode)."""
    meta, cond = _analyse_decoded(decoded, cfg, audio_name(c.row))
    if c.reference:
        c.meta = _store_reference(c.key, meta, cond, cfg)
    else:
        c.meta = _store_clip(Path(cfg.out_dir) / c.relpath, meta, cond, cfg)


def _audio_rows(checked: list[Reject | _Checked], cfg: ProcessConfig) -> None:
    """:func:`_audio` on every checked row of a batch (a reject replaces a row whose file cannot be read).

    The clips that are not cached yet are decoded one after the other, then analysed
    (and stored) one after the other, in row order, a group of about
    :data:`GROUP_BYTES` of decoded audio at a time: the decoder's code and tables
    stay in the CPU caches between two decodes, and so does the analysis code
    (one clip at a time, the reference mode's rows took 4-5 % more CPU on the
    Sanskrit train split, FLAC's 1 %). A row whose clip an earlier row of the
    group is computing takes it from the cache afterwards.
    """
    group: list[tuple[int, _Checked, ProcessConfig, tuple[np.ndarray, int] | dict]] = []
    computing: set[str] = set()
    waiting: list[int] = []
    held = 0

    def finish_group() -> None:
        group.reverse()
        while group:  # popped: each clip's samples are freed once it is done
            i, c, ccfg, decoded = group.pop()
            try:
                _finish(c, decoded, ccfg)
            except OSError as e:
                checked[i] = _unreadable(c, e)
        computing.clear()

    for i, c in enumerate(checked):
        if not isinstance(c, _Checked):
            continue
        ccfg = _audio_cfg(c, cfg)
        try:
            entry = _lookup(c, ccfg)
            if c.meta is not None:
                continue
            if entry in computing:
                waiting.append(i)
                continue
            decoded = _decode_audio(c.row, ccfg)
        except OSError as e:
            checked[i] = _unreadable(c, e)
            continue
        group.append((i, c, ccfg, decoded))
        computing.add(entry)
        held += 0 if isinstance(decoded, dict) else decoded[0].nbytes
        if held > GROUP_BYTES:
            finish_group()
            held = 0
    finish_group()
    for i in waiting:
        checked[i] = _audio(checked[i], cfg) or checked[i]


def _records(c: _Checked, cfg: ProcessConfig) -> RowResult:
    """A checked row with its audio meta -> its utterances (several if split) or one reject."""
    row, meta, reference = c.row, c.meta, c.reference
    if "reject" in meta:
        return reject(row, *meta["reject"])
    duration = meta["duration"]
    base = Utterance(
        id=row.id,
        duration=duration,
        text=c.text,
        text_raw=row.text_raw,
        speaker=row.speaker,
        language=cfg.language,
        source=row.source,
        source_audio=row.audio if row.is_pipe else rel(audio_name(row), cfg.root),
        split=row.split,
        flags=tuple(meta["flags"]),
        **(reference_fields(row, meta, c.real) if reference else {"audio": c.relpath}),
    )
    if duration < cfg.min_duration:
        return reject(row, "too_short", f"{duration:.2f} s after trimming < --min-duration {cfg.min_duration}")
    bad = check_text_rate(row, c.text, duration)
    if bad:
        return bad
    if duration <= cfg.max_duration:
        return [base]
    norm = get_normalizer(cfg.rules)
    speech = _reference_speech(c.key, base, meta, cfg) if reference else _speech(c.relpath, meta, cfg)
    pieces = plan_split(speech, duration, row.text_raw, norm, cfg.max_duration, cfg.min_duration)
    if pieces is None:
        return reject(row, "too_long", f"{duration:.2f} s > --max-duration {cfg.max_duration} and no pause "
                      "matches a text boundary (see data_prep/segment.py)")
    n = len(pieces)
    return [
        base.replace(
            id=f"{row.id}-{k}",
            # a cached clip starts at 0; a reference starts at its trim point in the source
            offset=round(base.offset + p.start, 7) if reference else p.start,
            duration=round(p.end - p.start, 4),
            text=norm.normalize(p.text_raw),
            text_raw=p.text_raw,
            flags=(*base.flags, f"segment:{k}/{n}"),
        )
        for k, p in enumerate(pieces, 1)
    ]


def _records_or_reject(c: _Checked, cfg: ProcessConfig) -> RowResult:
    """:func:`_records`, or the row's reject when they fail (e.g. the VAD that splits a long clip, on a
    strange clip): one clip never stops the run. An output that cannot be written does (:class:`OutputError`)."""
    try:
        return _records(c, cfg)
    except OutputError:
        raise
    except Exception as e:  # noqa: BLE001 - see above
        return reject(c.row, "unreadable_audio", f"{c.row.audio}: cannot process the audio ({type(e).__name__}: {e})")


def process_rows(rows: list[Row], cfg: ProcessConfig) -> list[RowResult]:
    """Input rows -> for each, its utterances (several if split) or one reject. Never raises on bad data.

    The same as :func:`process_row` on each row, done step by step over the batch:
    the checks of every row, then each row's audio (a few decodes, then their
    analyses: :func:`_audio_rows`), then the records, then one journal write
    (reference mode). Python code run between two decodes runs
    from cold CPU caches, 2-5x slower than the same code run row after row (the
    text checks, the cache key, the records, the journal lines).
    """
    checked = [_check(row, cfg) for row in rows]
    _audio_rows(checked, cfg)
    results = [_records_or_reject(c, cfg) if isinstance(c, _Checked) else c for c in checked]
    if cfg.cache_format == REFERENCE:
        ref_cache(_cache_dir(cfg.out_dir)).flush()
    return results


def process_row(row: Row, cfg: ProcessConfig) -> RowResult:
    """One input row -> its utterances (several if split) or one reject. Never raises on bad data."""
    return process_rows([row], cfg)[0]


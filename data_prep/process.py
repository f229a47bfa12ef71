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
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep import audio as A
from data_prep.importers.base import RawRow, Row, rel
from data_prep.manifest import Reject, Utterance
from data_prep.segment import plan_split, speech_regions
from data_prep.text.normalize import get_normalizer
from data_prep.validate import check_text, reject, screen_row

#: Bump when the audio processing changes, so caches are rebuilt.
AUDIO_VERSION = "audio-v2"
CACHE_DIR = "cache"
CLIP_FRACTION = 1e-3  # flag clipping above 0.1 % of samples at full scale
DC_FLAG = 0.01  # flag a DC offset above 1 % of full scale
MIN_SNR_DB = 20.0  # below this, energy trimming is unsure and the VAD decides

RowResult = list[Utterance] | Reject


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
    cache_format: str = "flac"  # or "wav": faster to write, bigger


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


def audio_key(row: RawRow, cfg: ProcessConfig) -> str:
    """Cache key of a row's processed audio (see the module docstring)."""
    if row.is_pipe:
        ident: list = ["pipe", row.audio]
    else:
        st = os.stat(row.audio)
        ident = [os.path.realpath(row.audio), st.st_size, st.st_mtime_ns]
    params = [AUDIO_VERSION, A.TARGET_SR, cfg.target_db, cfg.trim_pad_s, cfg.trim_vad, MIN_SNR_DB, cfg.cache_format]
    blob = json.dumps([params, ident, row.offset, row.duration])
    return hashlib.sha1(blob.encode()).hexdigest()


def _decode(row: RawRow, cfg: ProcessConfig) -> tuple[np.ndarray, int]:
    if not row.is_pipe:
        return A.read_audio(row.audio, row.offset, row.duration)
    data, sr = A.read_audio_bytes(run_pipe(row.audio, cfg.pipe_timeout_s, cfg.root), row.audio)
    start = int(round(row.offset * sr))
    stop = None if row.duration is None else start + int(round(row.duration * sr))
    return data[start:stop], sr


def trim(y: np.ndarray, db: np.ndarray, snr: float, cfg: ProcessConfig, flags: list[str]) -> tuple[int, int] | None:
    """Bounds of the clip without leading/trailing silence (None: nothing sounds like speech).

    Energy first (cheap); when the clip's SNR is too low for an energy threshold
    to be trusted, the Silero VAD decides (``trim_vad="silero"``) or the clip is
    kept whole (``"none"``) and flagged ``low_snr``.
    """
    sr = A.TARGET_SR
    if snr >= MIN_SNR_DB:
        return A.trim_bounds(y, sr, pad_s=cfg.trim_pad_s, db=db)
    flags.append("low_snr")
    if cfg.trim_vad != "silero":
        return (0, len(y))
    regions = speech_regions(y, sr, "silero")
    if not regions:
        return None
    return A.pad_bounds(int(regions[0][0] * sr), int(regions[-1][1] * sr), len(y), sr, cfg.trim_pad_s)


def condition(data: np.ndarray, sr: int, cfg: ProcessConfig, *, overwrite: bool = False,
              bounds: tuple[float, float] | None = None) -> tuple[np.ndarray, list[str], float]:
    """Mono 16 kHz, DC removed, silence trimmed, level normalized, as int16; the flags; the SNR.

    ``overwrite=True`` lets the steps work in place in ``data`` (the caller's decoded
    buffer) instead of copying the clip at each step; ``bounds`` may pass
    ``(data.min(), data.max())``. Neither changes the result.
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
    db = A.frame_db(y, A.TARGET_SR)  # measured once for SNR, trimming and level
    snr = A.snr_db(y, A.TARGET_SR, db)
    span = trim(y, db, snr, cfg, flags)
    if span is None:
        flags.append("silent")
    elif span != (0, len(y)):
        y = y[span[0] : span[1]]
        flags.append("trimmed")
    top = A.peak_abs(y)
    gain_db = A.level_gain_db(y, A.TARGET_SR, target_db=cfg.target_db, db=db, top=top)
    # y is ours now (remove_dc worked in scratch space or made a copy), so scale it in place
    return A.to_pcm16(y, gain_db, overwrite=True, top=top), flags, snr


def _write_meta(path: Path, meta: dict) -> None:
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


def cached_audio(row: RawRow, cfg: ProcessConfig) -> tuple[str, dict]:
    """(FLAC path relative to the output folder, its meta), processing the audio unless cached."""
    key = audio_key(row, cfg)
    relpath = f"{CACHE_DIR}/{key[:2]}/{key}.{cfg.cache_format}"
    audio = Path(cfg.out_dir) / relpath
    meta = cached_meta(audio)
    if meta is not None:
        return relpath, meta
    try:
        data, sr = _decode(row, cfg)
    except A.AudioError as e:
        meta = {"reject": ["unreadable_audio", str(e)]}
    else:
        # min and max propagate NaN and show infinities: they screen the samples and,
        # passed on, settle clipping, without an isfinite mask of the whole clip
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
        if data.size == 0:
            meta = {"reject": ["zero_length", "audio decodes to no samples (or the segment lies past its end)"]}
        elif not (math.isfinite(lo) and math.isfinite(hi)):
            meta = {"reject": ["nan_samples", f"{int((~np.isfinite(data)).sum())} NaN/infinite samples"]}
        else:
            y, flags, snr = condition(data, sr, cfg, overwrite=True, bounds=(lo, hi))
            meta = {"duration": round(len(y) / A.TARGET_SR, 4), "flags": flags, "source_sr": sr,
                    "source_channels": int(data.shape[1]), "snr_db": round(snr, 1)}
            # one file per clip: the meta rides in the clip's comment tag, written atomically with it
            A.write_flac(audio, y, A.TARGET_SR, cfg.cache_format, comment=json.dumps(meta, sort_keys=True))
            return relpath, meta
    _write_meta(audio.with_suffix(".json"), meta)
    return relpath, meta


def _speech(relpath: str, meta: dict, cfg: ProcessConfig) -> list:
    """VAD speech regions of a cached clip, computed once and kept in its sidecar ``<key>.json``.

    ``vad="auto"``: the energy detector when the clip's SNR lets it be trusted,
    else Silero (~50x slower, and importing torch costs seconds per process).
    """
    vad = cfg.vad
    if vad == "auto":
        vad = "energy" if meta.get("snr_db", 0.0) >= MIN_SNR_DB else "silero"
    audio = Path(cfg.out_dir) / relpath
    side = _read_json(audio.with_suffix(".json")) or {}  # also a sidecar from before meta tags
    speech = side.setdefault("speech", {})
    if vad not in speech:
        y = A.load_audio(audio)
        speech[vad] = [[round(s, 3), round(e, 3)] for s, e in speech_regions(y, A.TARGET_SR, vad)]
        _write_meta(audio.with_suffix(".json"), side)
    return [tuple(r) for r in speech[vad]]


def process_row(row: Row, cfg: ProcessConfig) -> RowResult:
    """One input row -> its utterances (several if split) or one reject. Never raises on bad data."""
    if isinstance(row, Reject):
        return row
    bad = screen_row(row, cfg.root, cfg.allow_pipes, cfg.allow_outside_root)
    if bad:
        return bad
    norm = get_normalizer(cfg.rules)
    text, bad = check_text(row, norm)
    if bad:
        return bad
    if not row.is_pipe and not os.path.isfile(row.audio):
        return reject(row, "missing_audio", f"{row.audio}: file not found")
    try:
        relpath, meta = cached_audio(row, cfg)
    except OSError as e:  # e.g. the file vanished or became unreadable after the checks above
        return reject(row, "unreadable_audio", f"{row.audio}: {e}")
    if "reject" in meta:
        return reject(row, *meta["reject"])
    duration = meta["duration"]
    base = Utterance(
        id=row.id,
        audio=relpath,
        duration=duration,
        text=text,
        text_raw=row.text_raw,
        speaker=row.speaker,
        language=cfg.language,
        source=row.source,
        source_audio=row.audio if row.is_pipe else rel(row.audio, cfg.root),
        split=row.split,
        flags=tuple(meta["flags"]),
    )
    if duration < cfg.min_duration:
        return reject(row, "too_short", f"{duration:.2f} s after trimming < --min-duration {cfg.min_duration}")
    if duration <= cfg.max_duration:
        return [base]
    pieces = plan_split(_speech(relpath, meta, cfg), duration, row.text_raw, norm, cfg.max_duration,
                        cfg.min_duration)
    if pieces is None:
        return reject(row, "too_long", f"{duration:.2f} s > --max-duration {cfg.max_duration} and no pause "
                      "matches a text boundary (see data_prep/segment.py)")
    n = len(pieces)
    return [
        base.replace(
            id=f"{row.id}-{k}",
            offset=p.start,
            duration=round(p.end - p.start, 4),
            text=norm.normalize(p.text_raw),
            text_raw=p.text_raw,
            flags=(*base.flags, f"segment:{k}/{n}"),
        )
        for k, p in enumerate(pieces, 1)
    ]


# -- process-pool plumbing: the config is sent once per worker, not once per row --

_CFG: ProcessConfig | None = None


def init_worker(cfg: ProcessConfig) -> None:
    """Pool initializer."""
    global _CFG
    _CFG = cfg


def work(item: tuple[int, Row]) -> tuple[int, RowResult]:
    """Pool task: (row index, row) -> (row index, result)."""
    i, row = item
    assert _CFG is not None, "init_worker was not called"
    return i, process_row(row, _CFG)

"""Speech regions of a recording of any length, read block by block: memory flat in its length.

A :class:`SpeechScanner` is fed consecutive 16 kHz blocks (from
:func:`data_prep.audio.stream_audio`) and keeps only what is small: the mean power
of every 10 ms frame (for cutting a long stretch of speech at its quietest point)
and, with the Silero VAD, one speech probability per 32 ms. At the end it gives a
:class:`Scan`: the duration, the speech regions and those powers.

- ``energy``: the detector of :func:`data_prep.segment.energy_speech`, whose
  thresholds depend on the whole recording's loudest frame and noise floor; they
  are applied once the last block is in, so the regions are the same as on the
  whole array.
- ``silero``: Silero's model runs on many stretches of the recording at once (one
  batch row each, with a second of the audio before it to settle the model's state;
  its probabilities are dropped), about ten times faster on a CPU than one chunk at
  a time; the probabilities then go through Silero's own
  ``get_speech_timestamps_from_probs`` with :data:`data_prep.segment.SILERO_SETTINGS`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.audio import FRAME_S, TARGET_SR, active_frames
from data_prep.segment import SILERO_SETTINGS, VADS, Region, regions_from_active, silero_model

#: Frame of the powers a long stretch of speech is cut by (its quietest frame).
POWER_FRAME_S = 0.01
SILERO_CHUNK = 512  # samples per probability at 16 kHz
SILERO_BLOCK = 250 * SILERO_CHUNK  # samples per batch row (8 s)
SILERO_WARMUP = 32 * SILERO_CHUNK  # audio before each row, to settle the model's state (1 s)
SILERO_ROWS = 32  # rows per call: 256 s of audio, 16 MB


@dataclass(frozen=True)
class Scan:
    """What a pass over a recording found: its length, its speech, its level over time."""

    duration: float  # seconds
    regions: list[Region]  # speech regions (seconds), in order
    power: np.ndarray  # mean power of each POWER_FRAME_S frame

    def quietest(self, lo: float, hi: float) -> float:
        """The centre (seconds) of the quietest POWER_FRAME_S frame that lies within [lo, hi]."""
        first = int(np.ceil(lo / POWER_FRAME_S))
        last = min(int(hi / POWER_FRAME_S), len(self.power))  # frames [first, last) end by hi
        if last <= first:
            return (lo + hi) / 2
        return (first + int(np.argmin(self.power[first:last])) + 0.5) * POWER_FRAME_S


class _Powers:
    """Mean power of consecutive POWER_FRAME_S frames of a stream (the last frame zero-padded)."""

    def __init__(self, sr: int):
        self.frame = int(round(POWER_FRAME_S * sr))
        self.rest = np.zeros(0, np.float32)
        self.parts: list[np.ndarray] = []

    def feed(self, y: np.ndarray) -> None:
        y = np.concatenate([self.rest, y]) if len(self.rest) else y
        full = len(y) // self.frame * self.frame
        frames = y[:full].reshape(-1, self.frame)
        self.parts.append(np.einsum("ij,ij->i", frames, frames) / self.frame)
        self.rest = y[full:].copy()

    def finish(self) -> np.ndarray:
        if len(self.rest):
            self.parts.append(np.array([np.dot(self.rest, self.rest) / self.frame], np.float32))
            self.rest = np.zeros(0, np.float32)
        return np.concatenate(self.parts).astype(np.float32) if self.parts else np.zeros(0, np.float32)


def energy_regions(power: np.ndarray, duration: float) -> list[Region]:
    """:func:`data_prep.segment.energy_speech`'s regions from 10 ms powers (pairs make its 20 ms frames)."""
    pair = int(round(FRAME_S / POWER_FRAME_S))
    padded = np.concatenate([power, np.zeros(-len(power) % pair, np.float32)])
    frame_power = padded.reshape(-1, pair).mean(axis=1)
    db = 10 * np.log10(np.maximum(frame_power, 1e-20)).astype(np.float32)
    return regions_from_active(active_frames(db), duration)


class SileroProbs:
    """Silero's speech probability of every 32 ms chunk of a stream, many stretches per model call."""

    def __init__(self) -> None:
        self.model = silero_model()
        self.before = np.zeros(SILERO_WARMUP, np.float32)  # the audio before the buffer (silence at the start)
        self.buffer: list[np.ndarray] = []
        self.buffered = 0
        self.probs: list[np.ndarray] = []

    def feed(self, y: np.ndarray) -> None:
        self.buffer.append(np.asarray(y, np.float32))
        self.buffered += len(y)
        if self.buffered >= SILERO_ROWS * SILERO_BLOCK:
            audio = np.concatenate(self.buffer)
            whole = len(audio) // (SILERO_ROWS * SILERO_BLOCK) * SILERO_ROWS * SILERO_BLOCK
            self._run(audio[:whole])
            self.buffer, self.buffered = [audio[whole:]], len(audio) - whole

    def finish(self) -> np.ndarray:
        if self.buffered:
            self._run(np.concatenate(self.buffer))
            self.buffer, self.buffered = [], 0
        return np.concatenate(self.probs) if self.probs else np.zeros(0, np.float32)

    def _run(self, audio: np.ndarray) -> None:
        """Probabilities of ``audio`` (whole blocks, or the stream's end), appended in order."""
        import torch

        with_before = np.concatenate([self.before, audio])
        starts = range(0, len(audio), SILERO_BLOCK)
        rows = [with_before[s : s + SILERO_WARMUP + SILERO_BLOCK] for s in starts]
        width = -(-max(len(r) for r in rows) // SILERO_CHUNK) * SILERO_CHUNK
        batch = np.zeros((len(rows), width), np.float32)
        for i, row in enumerate(rows):
            batch[i, : len(row)] = row
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a small model: threads cost more than they bring
        try:
            with torch.inference_mode():
                out = self.model.audio_forward(torch.from_numpy(batch), TARGET_SR).numpy()
        finally:
            torch.set_num_threads(threads)
        skip = SILERO_WARMUP // SILERO_CHUNK
        for i, row in enumerate(rows):
            chunks = -(-(len(row) - SILERO_WARMUP) // SILERO_CHUNK)
            self.probs.append(out[i, skip : skip + chunks].astype(np.float32))
        self.before = with_before[-SILERO_WARMUP:].copy()


class SpeechScanner:
    """Feed a recording's 16 kHz blocks in order; :meth:`finish` gives its :class:`Scan`."""

    def __init__(self, vad: str = "silero", sr: int = TARGET_SR):
        if vad not in VADS or vad == "auto":
            raise ValueError(f"unknown VAD {vad!r} for a recording; known: silero, energy")
        if vad == "silero" and sr != TARGET_SR:
            raise ValueError(f"the Silero VAD reads {TARGET_SR} Hz audio, not {sr} Hz")
        self.vad, self.sr = vad, sr
        self.samples = 0
        self.powers = _Powers(sr)
        self.silero = SileroProbs() if vad == "silero" else None

    def feed(self, y: np.ndarray) -> None:
        y = np.asarray(y, np.float32)
        self.samples += len(y)
        self.powers.feed(y)
        if self.silero is not None:
            self.silero.feed(y)

    def finish(self) -> Scan:
        duration = self.samples / self.sr
        power = self.powers.finish()
        if self.silero is None:
            return Scan(duration, energy_regions(power, duration), power)
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        probs = self.silero.finish()
        stamps = get_speech_timestamps_from_probs(list(map(float, probs)), sampling_rate=self.sr,
                                                  audio_length_samples=self.samples, **SILERO_SETTINGS)
        return Scan(duration, [(s["start"] / self.sr, s["end"] / self.sr) for s in stamps], power)


def scan_array(y: np.ndarray, vad: str = "silero", sr: int = TARGET_SR) -> Scan:
    """The :class:`Scan` of samples already in memory."""
    scanner = SpeechScanner(vad, sr)
    scanner.feed(y)
    return scanner.finish()

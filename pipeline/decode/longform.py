"""Recordings of any length through any recognizer: cut at pauses, decode in batches, timed segments.

A :class:`~pipeline.decode.recognizer.Recognizer` takes arrays of at most 30 s. A
lecture or a broadcast is turned into such pieces in three steps:

1. **Scan** (:mod:`data_prep.vad_stream`): the file is read block by block (memory
   flat in its length) for its speech regions (Silero or the energy VAD) and its
   level every 10 ms. A file no longer than one piece is read whole and decoded
   whole, as before; only its level is measured (for its speech bounds, and to
   find it silent: no 10 ms frame up to :data:`SILENT_DB`).
2. **Plan** (:func:`plan_pieces`): every pause of at least ``pause_s`` ends a piece;
   a stretch still longer than a piece allows is split at its longest pause, again
   and again, and a single region of speech with no pause in it at its quietest
   10 ms within the last seconds before the limit (as
   :func:`pipeline.decode.whisper.split_long` does). Pieces with less than
   ``min_piece_s`` of speech join the nearer neighbour when the two fit in one piece
   and the pause between them is at most :data:`MAX_JOIN_PAUSE_S`. Each
   piece is decoded with up to ``pad_s`` of the silence around it, never more than
   half the pause to the next piece, so no sound is decoded twice.
3. **Decode**: pieces are read back by seeking (:func:`data_prep.audio.load_window`)
   and decoded ``batch_pieces`` at a time, across files, so short files batch as
   they always did. Each piece becomes one :class:`~pipeline.decode.transcript.Segment`
   timed by the first and last speech in it; a piece the recognizer finds no
   words in leaves no segment.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from data_prep.audio import TARGET_SR, AudioError, audio_duration, load_audio, load_window, stream_audio
from data_prep.segment import Region
from data_prep.vad_stream import Scan, SpeechScanner, scan_array
from pipeline.decode.recognizer import Recognizer
from pipeline.decode.transcript import Segment, Transcript

#: The longest piece any recognizer takes (Whisper's window).
MAX_PIECE_S = 30.0
#: How far back from a piece's limit a long region of speech is cut at its quietest frame.
CUT_SEARCH_S = 5.0
#: A short piece joins a neighbour only across a pause up to this long (not across minutes of silence).
MAX_JOIN_PAUSE_S = 2.0
#: A short file none of whose 10 ms frames reaches this level (dBFS) is silent (the energy VAD's floor).
SILENT_DB = -55.0
#: Seconds of audio read per block while scanning.
SCAN_BLOCK_S = 30.0

#: Called as a file progresses: (path, seconds of audio done, its duration).
Progress = Callable[[str, float, float], None]


@dataclass(frozen=True)
class LongformOptions:
    """How recordings are cut into pieces and decoded."""

    max_piece_s: float = MAX_PIECE_S  # longest piece decoded (silence around it included)
    pause_s: float = 0.5  # a pause at least this long always ends a piece (BENCHMARKS.md, "Recordings of any length")
    min_piece_s: float = 0.0  # a piece with less speech joins a neighbour when both fit in one piece
    pad_s: float = 0.2  # silence kept on each side of a piece's speech (at most half the pause)
    vad: str = "silero"  # silero | energy
    batch_pieces: int = 32  # pieces read and decoded together

    def __post_init__(self) -> None:
        if not 2 * self.pad_s + 1.0 <= self.max_piece_s <= MAX_PIECE_S:
            raise ValueError(f"max_piece_s must be between {2 * self.pad_s + 1.0:g} (1 s + the pads) "
                             f"and {MAX_PIECE_S:g} s, got {self.max_piece_s:g}")  # fmt: skip
        if self.pause_s <= 0 or self.min_piece_s < 0 or self.pad_s < 0 or self.batch_pieces < 1:
            raise ValueError("pause_s must be > 0; min_piece_s, pad_s >= 0; batch_pieces >= 1")
        if self.vad not in ("silero", "energy"):
            raise ValueError(f"unknown VAD {self.vad!r}; known: silero, energy")

    @property
    def speech_limit(self) -> float:
        """The most speech (first to last) one piece may span, its pads left room for."""
        return self.max_piece_s - 2 * self.pad_s


@dataclass(frozen=True)
class Piece:
    """A stretch decoded as one: the audio window [start, end) and its first and last speech (seconds)."""

    start: float
    end: float
    speech_start: float
    speech_end: float


# ----------------------------------------------------------------------------- planning


def _cut_region(region: Region, limit: float, scan: Scan) -> list[Region]:
    """A region of speech longer than ``limit`` cut at its quietest frames, each part <= ``limit``."""
    start, end = region
    search = min(CUT_SEARCH_S, limit / 2)
    parts = []
    while end - start > limit:
        cut = scan.quietest(start + limit - search, start + limit)
        parts.append((start, cut))
        start = cut
    return parts + [(start, end)]


def _fit(group: list[Region], limit: float, scan: Scan) -> list[list[Region]]:
    """``group`` (regions with short pauses) split at its longest pauses until each part spans <= ``limit``."""
    if group[-1][1] - group[0][0] <= limit:
        return [group]
    if len(group) == 1:
        return [[part] for part in _cut_region(group[0], limit, scan)]
    middle = (group[0][0] + group[-1][1]) / 2
    # the longest pause; between equal ones, the nearest the middle
    k = max(range(1, len(group)), key=lambda i: (round(group[i][0] - group[i - 1][1], 3),
                                                 -abs(group[i][0] - middle)))  # fmt: skip
    return _fit(group[:k], limit, scan) + _fit(group[k:], limit, scan)


def _join_short(parts: list[list[Region]], min_s: float, limit: float) -> list[list[Region]]:
    """Parts with less than ``min_s`` of speech joined to their nearer neighbour where the two fit."""
    parts = list(parts)
    i = 0
    while i < len(parts):
        part = parts[i]
        if part[-1][1] - part[0][0] >= min_s:
            i += 1
            continue
        choices = []
        if i > 0 and part[-1][1] - parts[i - 1][0][0] <= limit:
            choices.append((part[0][0] - parts[i - 1][-1][1], i - 1))
        if i + 1 < len(parts) and parts[i + 1][-1][1] - part[0][0] <= limit:
            choices.append((parts[i + 1][0][0] - part[-1][1], i))
        choices = [(pause, left) for pause, left in choices if pause <= MAX_JOIN_PAUSE_S]
        if not choices:
            i += 1
            continue
        _, left = min(choices)
        parts[left : left + 2] = [parts[left] + parts[left + 1]]
        i = left
    return parts


def _windows(parts: list[list[Region]], duration: float, pad: float) -> list[Piece]:
    """Each part's audio window: its speech with up to ``pad`` around it, at most half the pause on each side."""
    pieces = []
    for k, part in enumerate(parts):
        a, b = part[0][0], part[-1][1]
        before = (parts[k - 1][-1][1] + a) / 2 if k else 0.0
        after = (b + parts[k + 1][0][0]) / 2 if k + 1 < len(parts) else duration
        pieces.append(Piece(round(max(a - pad, before), 3), round(min(b + pad, after), 3), round(a, 3), round(b, 3)))
    return pieces


def plan_pieces(scan: Scan, options: LongformOptions = LongformOptions()) -> list[Piece]:
    """The pieces a recording is decoded in (see the module docstring); none when it has no speech."""
    regions = [(max(0.0, s), min(e, scan.duration)) for s, e in scan.regions]
    regions = [(s, e) for s, e in regions if e > s]
    if not regions:
        return []
    groups: list[list[Region]] = [[regions[0]]]
    for prev, region in zip(regions, regions[1:]):
        if region[0] - prev[1] >= options.pause_s:
            groups.append([region])
        else:
            groups[-1].append(region)
    limit = options.speech_limit
    parts = [part for group in groups for part in _fit(group, limit, scan)]
    if options.min_piece_s > 0:
        parts = _join_short(parts, options.min_piece_s, limit)
    return _windows(parts, scan.duration, options.pad_s)


# ----------------------------------------------------------------------------- reading


@dataclass
class FilePlan:
    """One file's pieces; ``audio`` holds the whole file when it was read whole (a short file)."""

    path: str
    duration: float
    pieces: list[Piece]
    audio: np.ndarray | None = field(default=None, repr=False)

    def piece_audio(self, piece: Piece) -> np.ndarray:
        """The samples of ``piece`` (read from the file unless the file is in memory)."""
        if self.audio is not None:
            return self.audio[int(round(piece.start * TARGET_SR)) : int(round(piece.end * TARGET_SR))]
        return load_window(self.path, piece.start, piece.end - piece.start)


def _short_plan(path: str, audio: np.ndarray) -> FilePlan:
    """A file that fits in one piece: decoded whole, as it always was. Its level only finds its speech
    bounds, and finds it silent when no 10 ms frame reaches :data:`SILENT_DB`."""
    duration = len(audio) / TARGET_SR
    scan = scan_array(audio, "energy")
    if not len(scan.power) or 10 * np.log10(max(float(scan.power.max()), 1e-20)) < SILENT_DB:
        return FilePlan(path, duration, [], audio)
    # a steady sound has no level above its own floor: then its speech is the whole file
    first, last = (scan.regions[0][0], scan.regions[-1][1]) if scan.regions else (0.0, duration)
    return FilePlan(path, duration, [Piece(0.0, round(duration, 3), round(first, 3), round(last, 3))], audio)


def plan_file(path: str | os.PathLike, options: LongformOptions = LongformOptions(),
              progress: Progress | None = None) -> FilePlan:  # fmt: skip
    """Scan ``path`` and plan its pieces. Raises :class:`~data_prep.audio.AudioError` naming it."""
    path = os.fspath(path)
    header = audio_duration(path)
    if header is None or header <= options.max_piece_s:
        audio = load_audio(path)
        if len(audio) <= options.max_piece_s * TARGET_SR:
            return _short_plan(path, audio)
        scan = scan_array(audio, options.vad)  # a long file of a format soundfile cannot seek in
        return FilePlan(path, scan.duration, plan_pieces(scan, options), audio)
    scanner = SpeechScanner(options.vad)
    for block in stream_audio(path, SCAN_BLOCK_S):
        scanner.feed(block)
        if progress is not None:
            progress(path, 0.0, header)
    scan = scanner.finish()
    return FilePlan(path, scan.duration, plan_pieces(scan, options))


# ----------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class FileResult:
    """What became of one input file."""

    path: str
    transcript: Transcript | None  # None: the file could not be read
    error: str = ""  # why not (names the file)
    no_speech: bool = False  # the VAD found no speech in it


@dataclass
class _InFlight:
    plan: FilePlan | None
    path: str
    texts: dict[int, str] = field(default_factory=dict)
    error: str = ""

    @property
    def complete(self) -> bool:
        return bool(self.error) or (self.plan is not None and len(self.texts) == len(self.plan.pieces))

    def result(self) -> FileResult:
        if self.error or self.plan is None:
            return FileResult(self.path, None, self.error)
        segments = tuple(Segment(p.speech_start, p.speech_end, self.texts[i])
                         for i, p in enumerate(self.plan.pieces) if self.texts[i])  # fmt: skip
        return FileResult(self.path, Transcript(self.path, self.plan.duration, segments),
                          no_speech=not self.plan.pieces)  # fmt: skip


def _one_line(text: str) -> str:
    return " ".join(text.split())


def transcribe_files(paths: Iterable[str | os.PathLike], recognizer: Recognizer,
                     options: LongformOptions = LongformOptions(), progress: Progress | None = None
                     ) -> Iterator[FileResult]:  # fmt: skip
    """One :class:`FileResult` per path, in order, each as soon as its last piece is decoded.

    A file that cannot be read (at the start or half way) gives a result with its error;
    the others go on. ``ValueError`` from the recognizer (an unusable option) propagates.
    """
    waiting: deque[_InFlight] = deque()
    batch: list[tuple[_InFlight, int, np.ndarray]] = []

    def decode() -> None:
        live = [(f, i, a) for f, i, a in batch if not f.error]
        batch.clear()
        if not live:
            return
        outputs = recognizer.decode_batch([a for _, _, a in live])
        for (f, i, _), (text, _tokens) in zip(live, outputs):
            f.texts[i] = _one_line(text)
        if progress is not None:
            for f in {id(f): f for f, _, _ in live}.values():
                done = max(f.plan.pieces[i].end for i in f.texts)
                progress(f.path, f.plan.duration if f.complete else done, f.plan.duration)

    def finished() -> Iterator[FileResult]:
        while waiting and waiting[0].complete:
            yield waiting.popleft().result()

    for raw in paths:
        path = os.fspath(raw)
        flight = _InFlight(None, path)
        waiting.append(flight)
        try:
            flight.plan = plan_file(path, options, progress)
            for i, piece in enumerate(flight.plan.pieces):
                batch.append((flight, i, flight.plan.piece_audio(piece)))
                if len(batch) >= options.batch_pieces:
                    decode()
                    yield from finished()
        except (AudioError, OSError) as e:
            flight.error = str(e) if path in str(e) else f"{path}: {e}"
        yield from finished()
    decode()
    yield from finished()


def transcribe_long(path: str | os.PathLike, recognizer: Recognizer, options: LongformOptions = LongformOptions(),
                    progress: Progress | None = None) -> Transcript:  # fmt: skip
    """The timed transcript of one recording of any length (:class:`~data_prep.audio.AudioError` if unreadable)."""
    (result,) = transcribe_files([path], recognizer, options, progress)
    if result.transcript is None:
        raise AudioError(result.error)
    return result.transcript


"""A timed transcript (:class:`Transcript` of :class:`Segment`) and the file formats it is written in.

Formats (:data:`FORMATS`), each rendered whole by :func:`render`:

- ``txt``: one segment's text per line;
- ``jsonl``: one JSON object per segment: ``{"file", "start", "end", "text"}`` (seconds);
- ``srt``: SubRip cues (``1``, ``00:00:01,230 --> 00:00:04,560``, text, blank line);
- ``vtt``: WebVTT (``WEBVTT`` header, cues with ``.`` before the milliseconds; ``&``, ``<``
  and ``>`` escaped as the format asks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

FORMATS = ("txt", "jsonl", "srt", "vtt")


@dataclass(frozen=True)
class Segment:
    """A stretch of a recording and what was said in it (seconds from the start)."""

    start: float
    end: float
    text: str

    def to_json(self, source: str) -> dict:
        return {"file": source, "start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


@dataclass(frozen=True)
class Transcript:
    """The timed transcript of one recording; segments in order, none overlapping, none empty."""

    source: str  # the file it was made from
    duration: float  # seconds
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        """All the words on one line."""
        return " ".join(s.text for s in self.segments)


def _clock(seconds: float, decimal: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def _cue_times(seg: Segment, decimal: str) -> str:
    end = max(seg.end, seg.start + 0.001)  # a cue must end after it starts
    return f"{_clock(seg.start, decimal)} --> {_clock(end, decimal)}"


def _vtt_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(transcript: Transcript, fmt: str) -> str:
    """The whole file of ``transcript`` in ``fmt`` (one of :data:`FORMATS`); empty for no segments
    (a WebVTT file keeps its header)."""
    segs = transcript.segments
    if fmt == "txt":
        return "".join(f"{s.text}\n" for s in segs)
    if fmt == "jsonl":
        return "".join(json.dumps(s.to_json(transcript.source), ensure_ascii=False) + "\n" for s in segs)
    if fmt == "srt":
        return "".join(f"{i}\n{_cue_times(s, ',')}\n{s.text}\n\n" for i, s in enumerate(segs, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "".join(f"{_cue_times(s, '.')}\n{_vtt_text(s.text)}\n\n" for s in segs)
    raise ValueError(f"unknown transcript format {fmt!r}; known: {', '.join(FORMATS)}")

"""Recording rows -> segment rows: each recording aligned to its transcript and cut into utterances.

Each input row of ``--format longform`` is a whole recording with its whole
transcript. This step aligns the transcript's words (:mod:`data_prep.longform.text`)
with the injected :class:`~data_prep.longform.aligner.Aligner`, cuts the words
into segments (:mod:`data_prep.longform.cut`) and turns every segment into an
input row of its own: a window (``offset``, ``duration``) of the recording with
the segment's source words as its transcript and the transcript line it starts
on as its source. Those rows then go through prepare's usual processing (checks,
conditioning, the audio cache, splits), like any corpus's rows. A segment whose
alignment score is below ``min_align_score`` becomes a ``low_alignment_score``
reject instead; a recording that cannot be read or aligned, one reject naming the
file. :class:`Recordings` keeps what the seconds accounting needs.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data_prep import audio as A
from data_prep.importers.base import RawRow, Row, rel
from data_prep.longform.aligner import AlignedWord, Aligner, AlignmentError
from data_prep.longform.cache import alignment_key, load_alignment, save_alignment
from data_prep.longform.cut import CutOptions, Segment, cut_segments
from data_prep.longform.seconds import SecondsAccount
from data_prep.longform.text import TextWord, transcript_words
from data_prep.manifest import Reject, Source
from data_prep.process import CACHE_DIR, ProcessConfig, RowResult
from data_prep.text.normalize import TextNormalizer, get_normalizer
from data_prep.validate import check_text, reject, screen_row

DEFAULT_MIN_ALIGN_SCORE = -2.0


@dataclass(frozen=True)
class LongformOptions:
    """How recordings are cut (recorded in prepare.json with the aligner's identity)."""

    max_utterance_s: float = 20.0
    min_align_score: float = DEFAULT_MIN_ALIGN_SCORE  # mean log posterior per aligned token frame
    pad_s: float = 0.2


@dataclass
class Recordings:
    """The rows the recordings became, and for each the (start, end) seconds of its recording it covers
    (None: a rejected recording, already in ``account``)."""

    rows: list[Row] = field(default_factory=list)
    spans: list[tuple[float, float] | None] = field(default_factory=list)
    account: SecondsAccount = field(default_factory=SecondsAccount)

    def seconds(self, results: list[RowResult]) -> SecondsAccount:
        """The account completed with what processing made of each row (``results``, in row order)."""
        acc = dataclasses.replace(self.account, rejected_s=self.account.rejected_s.copy())
        for res, span in zip(results, self.spans, strict=True):
            if span is None:
                continue
            if isinstance(res, Reject):
                acc.rejected_s[res.reason] += span[1] - span[0]
            else:
                acc.utterance_s += span[1] - span[0]
        return acc


def cut_recordings(rows: list[Row], aligner: Aligner, cfg: ProcessConfig, opts: LongformOptions,
                   progress: bool = True) -> Recordings:  # fmt: skip
    """Every recording row aligned and cut (rejects passed on); the rows in source order."""
    out = Recordings()
    norm = get_normalizer(cfg.rules)
    cut = CutOptions(max_s=opts.max_utterance_s, min_s=cfg.min_duration, pad_s=opts.pad_s)
    for row in tqdm(rows, desc="align", unit="recording", disable=not progress, file=sys.stderr):
        res = _recording(row, aligner, cfg, norm, cut) if isinstance(row, RawRow) else row
        if isinstance(res, Reject):
            _add_rejected_recording(out.account, res, row)
            out.rows.append(res)
            out.spans.append(None)
            continue
        words, aligned, segments, duration = res
        out.account.recordings += 1
        out.account.input_s += duration
        out.account.gap_s += duration - sum(s.duration for s in segments)
        out.account.unaligned_words += sum(bool(w.norm) and not a.aligned for w, a in zip(words, aligned))
        out.account.dropped_chars.update("".join(a.dropped for a in aligned))
        for k, seg in enumerate(segments, 1):
            out.rows.append(_segment_row(row, words, seg, k, len(segments), opts, cfg))
            out.spans.append((seg.start, seg.end))
    return out


def _add_rejected_recording(acc: SecondsAccount, rej: Reject, row: Row) -> None:
    """A rejected input row's seconds, when it has audio (a transcript without audio has none)."""
    path = row.audio if isinstance(row, RawRow) else rej.audio
    if not path:
        return
    acc.recordings += 1
    seconds = None if rej.reason == "path_outside_root" else _header_seconds(path)  # outside: not even read
    if seconds is None:
        acc.unknown_length += 1
        return
    acc.input_s += seconds
    acc.rejected_s[rej.reason] += seconds


def _header_seconds(path: str) -> float | None:
    """A file's seconds from its header, or None (missing, not audio, unreadable)."""
    try:
        return A.audio_duration(path)
    except (A.AudioError, OSError):
        return None


def _recording(row: RawRow, aligner: Aligner, cfg: ProcessConfig, norm: TextNormalizer, cut: CutOptions
               ) -> Reject | tuple[list[TextWord], list[AlignedWord], list[Segment], float]:
    """(words, their alignment, the segments, the recording's seconds), or the recording's reject."""
    bad = screen_row(row, cfg.root, cfg.allow_pipes, cfg.allow_outside_root)
    if bad:
        return bad
    _, bad = check_text(row, norm)
    if bad:
        return bad
    try:
        data, sr = A.read_audio(row.audio)
    except (A.AudioError, OSError) as e:
        return reject(row, "unreadable_audio", str(e) if row.audio in str(e) else f"{row.audio}: {e}")
    if data.size == 0:
        return reject(row, "zero_length", f"{row.audio}: audio decodes to no samples")
    duration = len(data) / sr
    words = transcript_words(row.text_raw, norm)
    try:
        aligned = _aligned(row, words, A.resample(A.to_mono(data), sr, A.TARGET_SR), aligner, cfg)
        segments = cut_segments(words, aligned, duration, cut)
    except AlignmentError as e:
        return reject(row, "alignment_failed", f"{row.audio}: cannot align the transcript: {e}")
    return words, aligned, segments, duration


def _aligned(row: RawRow, words: list[TextWord], wave, aligner: Aligner, cfg: ProcessConfig) -> list[AlignedWord]:
    """The words' alignment, from the cache or aligned now (and cached)."""
    cache_dir = Path(cfg.out_dir) / CACHE_DIR
    key = alignment_key(row.audio, row.text_raw, aligner.identity)
    aligned = load_alignment(cache_dir, key)
    if aligned is None or len(aligned) != len(words):
        aligned = aligner.align(wave, A.TARGET_SR, [w.norm for w in words])
        if len(aligned) != len(words):
            raise AlignmentError(f"the aligner gave {len(aligned)} words for {len(words)}")
        save_alignment(cache_dir, key, aligned)
    return aligned


def _segment_row(row: RawRow, words: list[TextWord], seg: Segment, k: int, n: int, opts: LongformOptions,
                 cfg: ProcessConfig) -> Row:  # fmt: skip
    """Segment ``k`` of ``n`` as an input row (a window of the recording), or its reject."""
    seg_id = f"{row.id}-{k:0{max(4, len(str(n)))}d}"
    text_raw = " ".join(w.raw for w in words[seg.first : seg.last + 1])
    source = Source(row.source.file, words[seg.first].line)
    if seg.score < opts.min_align_score:
        return Reject("low_alignment_score",
                      f"{rel(row.audio, cfg.root)} {seg.start:.2f}-{seg.end:.2f} s: alignment score {seg.score:.2f} "
                      f"< --min-align-score {opts.min_align_score:g}", source, id=seg_id, audio=row.audio,
                      text_raw=text_raw)  # fmt: skip
    return RawRow(id=seg_id, audio=row.audio, text_raw=text_raw, source=source, speaker=row.speaker,
                  offset=seg.start, duration=round(seg.duration, 4), split=row.split)

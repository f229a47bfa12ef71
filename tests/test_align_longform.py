"""Long recordings cut into utterances by forced alignment: the boundaries found, the length limit, the
score that rejects a text the audio does not say, and where every second goes."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from align_fixtures import tone_aligner, tone_recording
from ctc_fixtures import SR

from data_prep.importers import import_corpus
from data_prep.longform.cut import CutOptions, cut_segments
from data_prep.longform.recordings import LongformOptions, cut_recordings
from data_prep.longform.text import transcript_words
from data_prep.manifest import Reject
from data_prep.process import ProcessConfig
from data_prep.text.normalize import get_normalizer

LINES = ["ab cd.", "ca bd dc", "bcd a", "da b cab.", "ac db"]


def _cut(lines: list[str], said: list[str] | None = None, **opts):
    wave, bounds = tone_recording(said or lines)
    words = transcript_words("\n".join(lines), get_normalizer("en"))
    aligned = tone_aligner().align(wave, SR, [w.norm for w in words])
    return words, cut_segments(words, aligned, len(wave) / SR, CutOptions(**opts)), bounds


def test_the_sentence_boundaries_are_found_within_a_frame_or_two():
    words, segments, bounds = _cut(LINES)
    assert [" ".join(w.raw for w in words[s.first : s.last + 1]) for s in segments] == LINES
    cuts = [(a.end + b.start) / 2 for a, b in zip(segments, segments[1:])]
    assert np.abs(np.array(cuts) - np.array(bounds)).max() < 0.05
    assert all(s.score > -0.5 for s in segments)


def test_no_segment_is_longer_than_the_limit_and_cuts_take_the_longest_pause():
    line = "ab cd ba dc ab cd ba dc"
    words, segments, _ = _cut([line], max_s=2.5)
    assert len(segments) >= 2 and all(s.duration <= 2.5 for s in segments)
    assert " ".join(w.raw for s in segments for w in words[s.first : s.last + 1]) == line
    words, whole, _ = _cut([line], max_s=20.0)  # a bare word boundary is no reason to cut
    assert len(whole) == 1


@pytest.fixture
def recording(tmp_path):
    """A corpus of one recording whose third line says something else than its transcript."""
    said = [*LINES[:2], "aa aa", *LINES[3:]]
    lines = [*LINES[:2], "dd cc", *LINES[3:]]
    root = tmp_path / "corpus"
    root.mkdir()
    wave, _ = tone_recording(said)
    sf.write(root / "talk.wav", wave, SR)
    (root / "talk.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root, len(wave) / SR


def test_a_line_the_audio_does_not_say_is_rejected_and_every_second_is_accounted(recording, tmp_path):
    root, duration = recording
    rows = import_corpus("longform", root)
    cfg = ProcessConfig(out_dir=str(tmp_path / "out"), root=str(root), rules="en", language="en")
    rec = cut_recordings(rows, tone_aligner(), cfg, LongformOptions(min_align_score=-2.0), progress=False)
    rejects = [r for r in rec.rows if isinstance(r, Reject)]
    assert [(r.reason, r.text_raw, r.source.line) for r in rejects] == [("low_alignment_score", "dd cc", 3)]
    assert "talk.wav" in rejects[0].detail and "alignment score" in rejects[0].detail
    kept = [r for r in rec.rows if not isinstance(r, Reject)]
    assert [r.text_raw for r in kept] == [*LINES[:2], *LINES[3:]]
    assert all(r.offset + r.duration <= duration for r in kept)
    acc = rec.seconds([r if isinstance(r, Reject) else [] for r in rec.rows])
    assert acc.balanced and acc.input_s == pytest.approx(duration)
    assert acc.rejected_s["low_alignment_score"] > 0.5 and acc.gap_s > 1.0
    assert acc.utterance_s == pytest.approx(sum(r.duration for r in kept), abs=1e-3)
    # aligned again from the cache: the same rows
    again = cut_recordings(rows, _refusing_aligner(), cfg, LongformOptions(min_align_score=-2.0), progress=False)
    assert again.rows == rec.rows


def _refusing_aligner():
    class Refusing:
        identity = "tone-fft"

        def align(self, *args):
            raise AssertionError("aligned again although cached")

    return Refusing()


def test_characters_outside_the_vocabulary_are_dropped_from_the_target_and_kept_in_the_text():
    wave, _ = tone_recording(["ab cd"])
    words = transcript_words("ab x9 cd", get_normalizer("en"))
    aligned = tone_aligner().align(wave, SR, [w.norm for w in words])
    assert [a.aligned for a in aligned] == [True, False, True] and aligned[1].dropped == "x9"
    (seg,) = cut_segments(words, aligned, len(wave) / SR)
    assert " ".join(w.raw for w in words[seg.first : seg.last + 1]) == "ab x9 cd"


def _longform_rows(tmp_path, said: list[str], text: str):
    root = tmp_path / "corpus"
    root.mkdir()
    sf.write(root / "talk.wav", tone_recording(said)[0], SR)
    (root / "talk.txt").write_text(text, encoding="utf-8")
    cfg = ProcessConfig(out_dir=str(tmp_path / "out"), root=str(root), rules="en", language="en")
    return import_corpus("longform", root), cfg


def test_a_transcript_longer_than_its_recording_is_one_reject_naming_the_file(tmp_path):
    rows, cfg = _longform_rows(tmp_path, ["ab"], "ab cd " * 40)
    rec = cut_recordings(rows, tone_aligner(), cfg, LongformOptions(), progress=False)
    (r,) = rec.rows
    assert r.reason == "alignment_failed" and "talk.wav" in r.detail and "more than the recording" in r.detail
    acc = rec.seconds([r])
    assert acc.balanced and acc.rejected_s["alignment_failed"] == pytest.approx(acc.input_s) and acc.input_s > 1


def test_a_recording_too_long_to_align_at_once_is_refused_with_the_remedy(tmp_path, monkeypatch):
    import pipeline.align.forced as forced

    monkeypatch.setattr(forced, "MAX_TRELLIS_BYTES", 1000)
    rows, cfg = _longform_rows(tmp_path, LINES, "\n".join(LINES))
    (r,) = cut_recordings(rows, tone_aligner(), cfg, LongformOptions(), progress=False).rows
    assert r.reason == "alignment_failed" and "cut the recording" in r.detail


def test_a_broken_link_and_an_orphan_transcript_are_rejects_of_no_known_seconds(tmp_path):
    rows, cfg = _longform_rows(tmp_path, LINES, "\n".join(LINES))
    root = tmp_path / "corpus"
    (root / "gone.wav").symlink_to(root / "nowhere.wav")
    (root / "orphan.txt").write_text("ab\n", encoding="utf-8")
    rows = import_corpus("longform", root)
    rec = cut_recordings(rows, tone_aligner(), cfg, LongformOptions(), progress=False)
    reasons = [r.reason for r in rec.rows if isinstance(r, Reject)]
    assert reasons == ["missing_audio", "missing_audio"]
    acc = rec.seconds([r if isinstance(r, Reject) else [] for r in rec.rows])
    assert acc.balanced and acc.recordings == 2 and acc.unknown_length == 1  # the link; the orphan has no audio

"""Long recordings: pieces cut inside pauses, timed segments, nothing lost at the seams, flat reading."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from dp_fixtures import SR, silence, speechlike

from data_prep.audio import load_audio, stream_audio
from data_prep.segment import energy_speech
from data_prep.vad_stream import Scan, scan_array
from pipeline.decode import longform
from pipeline.decode.longform import LongformOptions, Piece, plan_file, plan_pieces, transcribe_files
from pipeline.decode.recognizer import Recognizer

FFT = 800  # 50 ms frames: 20 Hz bins


def tone_hz(label: int) -> float:
    return 200.0 + 40.0 * label


def tones_in(wave: np.ndarray) -> list[int]:
    """The labels of the tones heard in ``wave``, in order, each run once."""
    labels: list[int] = []
    for i in range(0, len(wave) - FFT + 1, FFT):
        frame = wave[i : i + FFT]
        if np.sqrt(np.mean(frame**2)) < 0.02:
            continue
        hz = np.argmax(np.abs(np.fft.rfft(frame))) * SR / FFT
        label = int(round((hz - 200.0) / 40.0))
        if not labels or labels[-1] != label:
            labels.append(label)
    return labels


def tone_recognizer(calls: list | None = None) -> Recognizer:
    """Writes the tones it hears as words ("t3 t4"), checks that no piece exceeds 30 s."""

    def decode(waves):
        assert all(len(w) <= 30 * SR for w in waves)
        if calls is not None:
            calls.append([len(w) for w in waves])
        return [(" ".join(f"t{k}" for k in tones_in(np.asarray(w))), 0) for w in waves]

    return Recognizer("fake", "tones", decode)


def recording(layout: list[tuple[str, float]]) -> tuple[np.ndarray, list[tuple[float, float, int]], list]:
    """Audio of ('s', seconds) tones, each its own label, ('p', seconds) pauses, ('dip', seconds)
    near-silences inside a tone and ('more', seconds) of the tone before the dip; the true (start, end,
    label) of each tone (a dip inside it), and the dips' (start, end)."""
    parts, tones, dips, t, label = [], [], [], 0.0, 0
    for i, (kind, dur) in enumerate(layout):
        if kind == "s":
            parts.append(speechlike(dur, freq=tone_hz(label), seed=i))
            tones.append((t, t + dur, label))
            label += 1
        elif kind in ("dip", "more"):  # the tone before goes on (after a few ms of near-silence)
            gain = 0.001 if kind == "dip" else 1.0
            parts.append((speechlike(dur, freq=tone_hz(label - 1), seed=i) * gain).astype(np.float32))
            tones[-1] = (tones[-1][0], t + dur, label - 1)
            if kind == "dip":
                dips.append((t, t + dur))
        else:
            parts.append(silence(dur, seed=i))
        t += dur
    return np.concatenate(parts), tones, dips


#: A multi-minute talk: phrases and pauses; a 37 s stretch whose pauses are all short (its longest,
#: 0.35 s, is where it must be cut); a 40 s tone with no pause but a 40 ms dip where it must be cut.
TALK = ([("p", 1.0)] + [x for i in range(12) for x in (("s", 2.0 + i % 5), ("p", 0.6 + 0.15 * (i % 4)))]
        + [x for i in range(8) for x in (("s", 4.5), ("p", 0.35 if i == 3 else 0.2))][:-1]
        + [("p", 1.2), ("s", 27.0), ("dip", 0.04), ("more", 13.0), ("p", 0.9)]
        + [x for i in range(10) for x in (("s", 1.5 + i % 3), ("p", 0.7 + 0.1 * (i % 3)))] + [("p", 1.0)])  # fmt: skip


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    y, tones, dips = recording(TALK)
    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    sf.write(path, y, SR)
    return path, y, tones, dips


def test_multi_minute_recording_is_cut_in_its_pauses_and_loses_nothing(talk):
    path, y, tones, dips = talk
    duration = len(y) / SR
    assert duration > 150
    options = LongformOptions(vad="energy")
    (result,) = transcribe_files([path], tone_recognizer(), options)
    segs = result.transcript.segments
    assert result.transcript.duration == pytest.approx(duration, abs=1e-3)
    # monotonic, inside the file, not overlapping
    assert all(0 <= s.start < s.end <= duration for s in segs)
    assert all(a.end <= b.start for a, b in zip(segs, segs[1:]))
    # every tone heard exactly once, in order; the 40 s tone in two pieces, cut at its dip
    heard = [int(w[1:]) for s in segs for w in s.text.split()]
    long_label = next(label for s, e, label in tones if e - s > 30)
    expected = [label for *_, label in tones]
    at = expected.index(long_label)
    assert heard == expected[: at + 1] + [long_label] + expected[at + 1 :]
    # no segment reaches across a pause of pause_s or more
    for (_, end, _), (start, _, _) in zip(tones, tones[1:]):
        if start - end >= options.pause_s:
            assert not any(s.start < end and s.end > start for s in segs), (end, start)
    # each segment starts and ends at true edges of speech (20 ms frames), or at the dip
    edges = [t for s, e, _ in tones for t in (s, e)] + [(a + b) / 2 for a, b in dips]
    for s in segs:
        assert min(abs(s.start - t) for t in edges) <= 0.03
        assert min(abs(s.end - t) for t in edges) <= 0.03
    # the 37 s stretch of short pauses is cut in its longest pause (0.35 s), and only there
    cluster = [(s, e) for s, e, _ in tones if e - s == pytest.approx(4.5)]
    longest = next((a[1], b[0]) for a, b in zip(cluster, cluster[1:]) if b[0] - a[1] > 0.3)
    inside = [s for s in segs if cluster[0][0] - 0.05 <= s.start and s.end <= cluster[-1][1] + 0.05]
    assert len(inside) == 2
    assert longest[0] - 0.03 <= inside[0].end and inside[1].start <= longest[1] + 0.03


def test_pieces_fit_the_window_and_every_speech_region_lies_in_exactly_one(talk):
    path, y, *_ = talk
    scan = scan_array(y, "energy")
    for options in (LongformOptions(vad="energy"), LongformOptions(vad="energy", max_piece_s=10, pause_s=2.0),
                    LongformOptions(vad="energy", min_piece_s=3.0)):  # fmt: skip
        pieces = plan_pieces(scan, options)
        assert all(p.end - p.start <= options.max_piece_s + 1e-6 for p in pieces)
        assert all(p.start <= p.speech_start < p.speech_end <= p.end for p in pieces)
        assert all(a.end <= b.start for a, b in zip(pieces, pieces[1:]))  # no sample decoded twice
        for s, e in scan.regions:
            holders = [p for p in pieces if p.speech_start < e and s < p.speech_end]
            assert holders, (s, e)
            # a region is split only where it is longer than a piece allows, and then seamlessly
            if len(holders) > 1:
                assert e - s > options.speech_limit
                assert all(a.speech_end == b.speech_start for a, b in zip(holders, holders[1:]))
            else:
                assert holders[0].speech_start <= s + 1e-3 and e - 1e-3 <= holders[0].speech_end


def test_short_pieces_join_a_neighbour():
    scan = Scan(20.0, [(1.0, 4.0), (4.8, 5.1), (7.0, 9.0), (15.0, 15.3)], np.ones(2000, np.float32))
    pieces = plan_pieces(scan, LongformOptions(vad="energy", min_piece_s=1.0))
    # the 0.3 s blip joins the phrase across the shorter pause; the lone last one is 6 s from any speech
    assert [(p.speech_start, p.speech_end) for p in pieces] == [(1.0, 5.1), (7.0, 9.0), (15.0, 15.3)]
    assert len(plan_pieces(scan, LongformOptions(vad="energy"))) == 4
    assert plan_pieces(Scan(5.0, [], np.zeros(500, np.float32))) == []


def test_pads_stay_within_half_the_pause():
    scan = Scan(10.0, [(0.05, 2.0), (2.6, 5.0), (9.0, 9.95)], np.ones(1000, np.float32))
    pieces = plan_pieces(scan, LongformOptions(vad="energy", pause_s=0.5, pad_s=0.4))
    assert pieces == [Piece(0.0, 2.3, 0.05, 2.0), Piece(2.3, 5.4, 2.6, 5.0), Piece(8.6, 10.0, 9.0, 9.95)]


def test_streamed_energy_regions_match_the_whole_array(talk):
    _, y, *_ = talk
    assert scan_array(y, "energy").regions == energy_speech(y, SR)


def test_long_file_is_read_in_windows_never_whole(talk, monkeypatch):
    path, y, *_ = talk

    def refuse(*args, **kwargs):
        raise AssertionError("a long file was loaded whole")

    monkeypatch.setattr(longform, "load_audio", refuse)
    blocks = list(stream_audio(path, 30.0))
    assert max(len(b) for b in blocks) <= 30 * SR and sum(len(b) for b in blocks) == len(y)
    plan = plan_file(path, LongformOptions(vad="energy"))
    assert plan.audio is None and plan.pieces
    piece = plan.pieces[3]
    stored = sf.read(path, dtype="float32")[0]  # 16-bit PCM
    np.testing.assert_array_equal(plan.piece_audio(piece), stored[int(round(piece.start * SR)) : int(round(piece.end * SR))])


def test_resampled_stereo_recording_gives_the_same_pieces(tmp_path):
    y, tones, _ = recording([("p", 0.5)] + [("s", 3.0), ("p", 0.8)] * 12)
    stereo = np.stack([y, y], axis=1)
    path = tmp_path / "talk44.flac"
    t = np.arange(int(len(y) * 44100 / SR)) / 44100
    sf.write(path, np.stack([np.interp(t, np.arange(len(y)) / SR, c) for c in stereo.T], axis=1), 44100)
    (result,) = transcribe_files([path], tone_recognizer(), LongformOptions(vad="energy"))
    assert [int(s.text[1:]) for s in result.transcript.segments] == [label for *_, label in tones]
    for seg, (s, e, _) in zip(result.transcript.segments, tones):
        assert seg.start == pytest.approx(s, abs=0.03) and seg.end == pytest.approx(e, abs=0.03)


def test_long_mp3_is_read_by_seeking(tmp_path, monkeypatch):
    y, tones, _ = recording([("p", 0.5)] + [("s", 2.5), ("p", 0.7)] * 12)
    path = tmp_path / "talk.mp3"
    sf.write(path, y, SR, format="MP3")
    monkeypatch.setattr(longform, "load_audio", lambda *a, **k: pytest.fail("a long MP3 was decoded whole"))
    (result,) = transcribe_files([path], tone_recognizer(), LongformOptions(vad="energy"))
    assert [int(s.text[1:]) for s in result.transcript.segments] == [label for *_, label in tones]
    for seg, (s, e, _) in zip(result.transcript.segments, tones):
        assert seg.start == pytest.approx(s, abs=0.05) and seg.end == pytest.approx(e, abs=0.05)


def test_short_file_is_decoded_whole_as_before(tmp_path):
    y, _, _ = recording([("p", 0.4), ("s", 2.0), ("p", 0.3), ("s", 1.0), ("p", 0.5)])
    path = tmp_path / "short.wav"
    sf.write(path, y, SR)
    seen = []
    rec = tone_recognizer()
    spy = Recognizer("fake", "spy", lambda waves: (seen.extend(waves), rec.decode_batch(waves))[1])
    (result,) = transcribe_files([path], spy, LongformOptions())  # silero is never run on a short file
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], load_audio(path))
    (seg,) = result.transcript.segments
    assert seg.text == "t0 t1" and seg.start == pytest.approx(0.4, abs=0.03) and seg.end == pytest.approx(3.7, abs=0.03)


def test_batch_with_unreadable_and_silent_files_goes_on(tmp_path, talk):
    path, *_ = talk
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not really audio")
    quiet_long = tmp_path / "quiet_long.wav"
    sf.write(quiet_long, silence(45.0), SR)
    zeros = tmp_path / "zeros.wav"
    sf.write(zeros, np.zeros(2 * SR, np.float32), SR)
    short = tmp_path / "short.wav"
    sf.write(short, recording([("p", 0.3), ("s", 1.0), ("p", 0.3)])[0], SR)
    calls: list = []
    paths = [bad, quiet_long, path, tmp_path / "missing.mp3", zeros, short]
    results = list(transcribe_files(paths, tone_recognizer(calls), LongformOptions(vad="energy", batch_pieces=8)))
    assert [r.path for r in results] == [str(p) for p in paths]
    assert results[0].transcript is None and str(bad) in results[0].error
    assert results[3].transcript is None and "missing.mp3" in results[3].error
    for r in (results[1], results[4]):
        assert r.no_speech and r.transcript.segments == () and r.transcript.text == ""
    assert results[2].transcript.segments and results[5].transcript.text == "t0"
    assert all(len(c) <= 8 for c in calls)


def test_a_file_that_fails_half_way_is_reported_and_the_rest_go_on(talk, monkeypatch, tmp_path):
    path, *_ = talk
    short = tmp_path / "short.wav"
    sf.write(short, recording([("p", 0.3), ("s", 1.0), ("p", 0.3)])[0], SR)
    real = longform.load_window

    def failing(p, offset, duration):
        if offset > 60:
            raise longform.AudioError(f"{p}: cannot decode audio (damaged frame)")
        return real(p, offset, duration)

    monkeypatch.setattr(longform, "load_window", failing)
    first, second = transcribe_files([path, short], tone_recognizer(), LongformOptions(vad="energy", batch_pieces=4))
    assert first.transcript is None and "damaged frame" in first.error
    assert second.transcript.text == "t0"


def test_progress_reports_seconds_up_to_the_duration(talk):
    path, y, *_ = talk
    seen = []
    transcribe_files_list = list(transcribe_files([path], tone_recognizer(), LongformOptions(vad="energy"),
                                                  progress=lambda p, done, total: seen.append((done, total))))
    assert transcribe_files_list[0].transcript is not None
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == pytest.approx(len(y) / SR, abs=1e-3)


def test_options_refuse_a_piece_longer_than_the_window():
    with pytest.raises(ValueError, match="max_piece_s"):
        LongformOptions(max_piece_s=45)
    with pytest.raises(ValueError, match="VAD"):
        LongformOptions(vad="webrtc")


def test_silero_stream_matches_the_whole_clip_detector(monkeypatch):
    from data_prep import vad_stream
    from data_prep.segment import silero_speech
    from data_prep.synth import synthesize

    parts = []
    for i, text in enumerate(["the quick brown fox", "jumps over the lazy dog", "one two three four five"]):
        parts += [synthesize(text), silence(0.4 + 0.2 * i, seed=i)]
    y = np.concatenate(parts)
    monkeypatch.setattr(vad_stream, "SILERO_BLOCK", 40 * vad_stream.SILERO_CHUNK)  # 1.3 s rows
    monkeypatch.setattr(vad_stream, "SILERO_ROWS", 3)  # several calls, each of several rows
    scanner = vad_stream.SpeechScanner("silero")
    for i in range(0, len(y), 7000):
        scanner.feed(y[i : i + 7000])
    streamed = scanner.finish().regions
    whole = silero_speech(y, SR)
    assert len(whole) >= 3 and len(streamed) == len(whole)
    for (a, b), (c, d) in zip(streamed, whole):
        assert abs(a - c) <= 0.1 and abs(b - d) <= 0.1

"""`transcribe --format txt|jsonl|srt|vtt --out-dir`: files that parse back, a batch that goes on."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf
from dp_fixtures import SR, silence
from test_longform import recording, tone_recognizer
from tree_fixtures import tree_digest

from pipeline.cli import main
from pipeline.cli import transcribe as command
from pipeline.decode.longform import LongformOptions, transcribe_files
from pipeline.decode.transcript import Segment, Transcript, render

CUE_TIME = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text: str) -> list[Segment]:
    cues = []
    for block in text.strip().split("\n\n") if text.strip() else []:
        number, times, *lines = block.split("\n")
        assert number == str(len(cues) + 1)
        m = re.fullmatch(f"{CUE_TIME} --> {CUE_TIME}", times)
        assert m and "," in times and "." not in times, times
        cues.append(Segment(_seconds(*m.groups()[:4]), _seconds(*m.groups()[4:]), "\n".join(lines)))
    return cues


def parse_vtt(text: str) -> list[Segment]:
    header, _, body = text.partition("\n\n")
    assert header == "WEBVTT"
    cues = []
    for block in body.strip().split("\n\n") if body.strip() else []:
        times, *lines = block.split("\n")
        m = re.fullmatch(f"{CUE_TIME} --> {CUE_TIME}", times)
        assert m and "." in times, times
        cue = "\n".join(lines)
        assert "-->" not in cue and "<" not in cue and not re.search(r"&(?!amp;|lt;|gt;)", cue)
        cue = cue.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        cues.append(Segment(_seconds(*m.groups()[:4]), _seconds(*m.groups()[4:]), cue))
    return cues


def parse_jsonl(text: str) -> list[tuple[str, Segment]]:
    rows = [json.loads(line) for line in text.splitlines()]
    return [(r["file"], Segment(r["start"], r["end"], r["text"])) for r in rows]


def _same(parsed: list[Segment], segments) -> None:
    assert [s.text for s in parsed] == [s.text for s in segments]
    for p, s in zip(parsed, segments):
        assert p.start == pytest.approx(s.start, abs=0.0005) and p.end == pytest.approx(s.end, abs=0.0005)


def test_render_formats_parse_back_and_escape():
    t = Transcript("x.wav", 4000.0, (Segment(0.0, 1.25, "a <b> & c"), Segment(3661.5, 3663.0, "नमः")))
    srt = render(t, "srt")
    assert "01:01:01,500 --> 01:01:03,000" in srt
    _same(parse_srt(srt), t.segments)
    vtt = render(t, "vtt")
    assert "&lt;b&gt; &amp;" in vtt
    _same(parse_vtt(vtt), t.segments)
    assert [s for _, s in parse_jsonl(render(t, "jsonl"))] == list(t.segments)
    assert render(t, "txt") == "a <b> & c\nनमः\n"
    assert render(Transcript("x", 1.0, ()), "vtt") == "WEBVTT\n\n" and render(Transcript("x", 1.0, ()), "srt") == ""
    with pytest.raises(ValueError, match="unknown transcript format"):
        render(t, "ass")


@pytest.fixture
def fake_model(monkeypatch):
    monkeypatch.setattr(command, "load_model", lambda args: tone_recognizer())


@pytest.fixture
def inputs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    long, _, _ = recording([("p", 0.5)] + [x for i in range(14) for x in (("s", 2.0 + i % 3), ("p", 0.6 + 0.1 * (i % 2)))])
    sf.write(src / "talk.wav", long, SR)
    sf.write(src / "hello.flac", recording([("p", 0.3), ("s", 1.2), ("p", 0.3)])[0], SR)
    return src


@pytest.mark.parametrize("fmt", ["srt", "vtt", "jsonl", "txt"])
def test_each_input_gets_a_file_that_parses_back(fake_model, inputs, tmp_path, fmt, capsys):
    files = [str(inputs / "talk.wav"), str(inputs / "hello.flac")]
    out = tmp_path / "out"
    rc = main(["transcribe", "--vad", "energy", "--format", fmt, "--out-dir", str(out), "--no-progress", *files])
    assert rc == 0
    assert capsys.readouterr().out == ""
    assert sorted(p.name for p in out.iterdir()) == [f"hello.{fmt}", f"talk.{fmt}"]
    expected = {r.path: r.transcript for r in transcribe_files(files, tone_recognizer(), LongformOptions(vad="energy"))}
    assert len(expected[files[0]].segments) == 14
    for path, name in zip(files, ("talk", "hello")):
        text = (out / f"{name}.{fmt}").read_text(encoding="utf-8")
        segs = expected[path].segments
        if fmt == "srt":
            _same(parse_srt(text), segs)
        elif fmt == "vtt":
            _same(parse_vtt(text), segs)
        elif fmt == "jsonl":
            rows = parse_jsonl(text)
            assert {f for f, _ in rows} == {path}
            _same([s for _, s in rows], segs)
        else:
            assert text.splitlines() == [s.text for s in segs]


def test_stdout_keeps_one_line_per_file_and_jsonl_streams_segments(fake_model, inputs, capsys):
    files = [str(inputs / "talk.wav"), str(inputs / "hello.flac")]
    assert main(["transcribe", "--vad", "energy", "--no-progress", *files]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == files
    assert lines[1] == f"{files[1]}\tt0" and len(lines[0].split("\t")[1].split()) == 14
    assert main(["transcribe", "--vad", "energy", "--format", "jsonl", "--no-progress", *files]) == 0
    rows = parse_jsonl(capsys.readouterr().out)
    assert [f for f, _ in rows] == [files[0]] * 14 + [files[1]]
    assert main(["transcribe", "--vad", "energy", "--format", "srt", "--no-progress", files[0]]) == 0
    assert len(parse_srt(capsys.readouterr().out)) == 14


def test_unreadable_and_silent_files_in_a_batch(fake_model, inputs, tmp_path, capsys):
    (inputs / "broken.wav").write_bytes(b"RIFF\x00\x00not really audio")
    sf.write(inputs / "quiet.wav", silence(40.0), SR)
    sf.write(inputs / "zeros.wav", np.zeros(SR, np.float32), SR)
    files = [str(inputs / n) for n in ("broken.wav", "quiet.wav", "talk.wav", "zeros.wav", "hello.flac")]
    before = tree_digest(inputs)
    out = tmp_path / "subs"
    rc = main(["transcribe", "--vad", "energy", "--format", "srt", "--out-dir", str(out), *files])
    err = capsys.readouterr().err
    assert rc == 1
    assert re.search(rf"cannot read {re.escape(files[0])}: ", err)
    assert f"warning: {files[1]}: no speech found" in err and f"warning: {files[3]}: no speech found" in err
    assert "4 file(s)" in err and "1 unreadable" in err and "2 empty" in err
    assert sorted(p.name for p in out.iterdir()) == ["hello.srt", "quiet.srt", "talk.srt", "zeros.srt"]
    assert (out / "quiet.srt").read_text() == "" and len(parse_srt((out / "talk.srt").read_text())) == 14
    assert tree_digest(inputs) == before


def test_outputs_never_replace_an_input(fake_model, inputs, capsys):
    odd = inputs / "talk.srt"  # an audio file with a subtitle's name
    odd.write_bytes((inputs / "hello.flac").read_bytes())
    before = tree_digest(inputs)
    rc = main(["transcribe", "--vad", "energy", "--format", "srt", "--out-dir", str(inputs),
               str(inputs / "hello.flac"), str(odd)])  # fmt: skip
    assert rc == 2
    assert "is the input" in capsys.readouterr().err
    assert tree_digest(inputs) == before


def test_refused_combinations(fake_model, inputs, tmp_path, capsys):
    files = [str(inputs / "talk.wav"), str(inputs / "hello.flac")]
    assert main(["transcribe", "--format", "vtt", *files]) == 2
    assert "--out-dir" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "hello.wav"
    sf.write(twin, silence(1.0), SR)
    assert main(["transcribe", "--out-dir", str(tmp_path / "o"), files[1], str(twin)]) == 2
    assert "would both be written" in capsys.readouterr().err
    assert main(["transcribe", "--max-piece", "60", files[0]]) == 2
    assert "max_piece_s" in capsys.readouterr().err

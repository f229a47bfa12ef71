"""Batched Whisper transcription: chunking, loop guard, order, and the `transcribe` command."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.decode.whisper import (  # noqa: E402
    LOOP_STOP_SPAN,
    SAMPLE_RATE,
    _generate_kwargs,
    _LoopStop,
    split_long,
    token_budget,
    transcribe_arrays,
    transcribe_detailed,
    truncate_loop,
)

# ----------------------------------------------------------------------------- pure functions


def test_truncate_loop_cuts_runaway_to_one_copy():
    head = [5, 6, 7]
    loop = [1, 2, 3]
    tokens = head + loop * 10 + [1, 2]  # stopped mid-copy by the length cap
    kept, cut = truncate_loop(tokens)
    assert cut and kept == head + loop


def test_truncate_loop_single_token_and_rotation():
    kept, cut = truncate_loop([9, 8] + [4] * 30)
    assert cut and kept == [9, 8, 4]
    # The loop starts mid-pattern: "x a b c a b c ..." where x == c.
    tokens = [3, 1, 2, 3] + [1, 2, 3] * 8
    kept, cut = truncate_loop(tokens)
    assert cut and kept == [3, 1, 2]


def test_truncate_loop_leaves_normal_text():
    # A few legitimate repeats (digits read out, reduplication) are not a loop.
    for tokens in ([1, 2, 1, 2, 1, 2], [7] * 10, list(range(50)), [4, 5, 6] * 3 + [9], []):
        assert truncate_loop(tokens) == (list(tokens), False)


def test_loop_stop_flags_only_long_running_loops():
    eos = 99
    n = 3 + LOOP_STOP_SPAN
    rows = [
        [1, 2, 3] + [7, 8] * (LOOP_STOP_SPAN // 2),  # a loop spanning LOOP_STOP_SPAN tokens
        list(range(10, 10 + n - 10)) + [7, 8] * 5,  # a short repetition: keep going
        [1, 2] + [7] * LOOP_STOP_SPAN + [eos],  # already ended by itself
    ]
    assert {len(r) for r in rows} == {n}
    stop = _LoopStop(eos)
    assert stop(torch.tensor(rows), None).tolist() == [True, False, False]
    rows = [r + [eos] for r in rows]  # generate() pads finished rows: the stopped one stays stopped
    assert stop(torch.tensor(rows), None).tolist() == [True, False, False]


def test_token_budget_grows_with_duration_and_is_capped():
    assert token_budget(1.0, 444) < token_budget(5.0, 444) < token_budget(10.0, 444)
    assert token_budget(30.0, 444) == 444
    assert token_budget(0.0, 444) >= 1


def test_split_long_cuts_in_silence_and_keeps_every_sample():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.3, 70 * SAMPLE_RATE).astype(np.float32)
    quiet = [(27.0, 27.3), (54.0, 54.4)]
    for a, b in quiet:
        audio[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)] = 0.0
    pieces = split_long(audio)
    assert len(pieces) == 3
    assert all(len(p) <= 30 * SAMPLE_RATE for p in pieces)
    np.testing.assert_array_equal(np.concatenate(pieces), audio)
    cut1 = len(pieces[0]) / SAMPLE_RATE
    cut2 = cut1 + len(pieces[1]) / SAMPLE_RATE
    assert quiet[0][0] <= cut1 <= quiet[0][1]
    assert quiet[1][0] <= cut2 <= quiet[1][1]
    assert len(split_long(audio[: 10 * SAMPLE_RATE])) == 1


def test_english_only_model_refuses_other_languages():
    model = SimpleNamespace(generation_config=SimpleNamespace(is_multilingual=False, lang_to_id=None))
    assert _generate_kwargs(model, None, "transcribe") == {}
    assert _generate_kwargs(model, "en", "transcribe") == {}
    with pytest.raises(ValueError, match="English-only"):
        _generate_kwargs(model, "sa", "transcribe")
    multi = SimpleNamespace(generation_config=SimpleNamespace(is_multilingual=True, lang_to_id={"<|sa|>": 1}))
    assert _generate_kwargs(multi, "sa", "translate") == {"task": "translate", "language": "sa"}


# ----------------------------------------------------------------------------- with a tiny model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("ctranslate2")
    from test_pretrained_whisper_convert import make_tiny_whisper

    from pipeline.models.whisper import load_whisper

    torch.set_num_threads(1)
    path = make_tiny_whisper(tmp_path_factory.mktemp("tiny"))
    model, processor = load_whisper(str(path))
    return path, model, processor


def _clips():
    rng = np.random.default_rng(1)
    t = np.arange(SAMPLE_RATE * 2) / SAMPLE_RATE
    return [
        (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32),
        rng.normal(0, 0.1, SAMPLE_RATE).astype(np.float32),
        (0.2 * np.sin(2 * np.pi * 800 * t[: SAMPLE_RATE * 3 // 2])).astype(np.float32),
    ]


def test_batches_keep_input_order(tiny):
    _, model, processor = tiny
    clips = _clips()
    one = transcribe_arrays(model, processor, clips, language="en", batch_size=1, progress=False)
    batched = transcribe_arrays(model, processor, clips, language="en", batch_size=3, progress=False)
    reverse = transcribe_arrays(model, processor, clips[::-1], language="en", batch_size=2, progress=False)
    assert len(one) == 3 and all(isinstance(t, str) for t in one)
    assert any(one), "the tiny model should write something"
    assert batched == one
    assert reverse[::-1] == one


def test_long_audio_is_chunked_and_joined(tiny):
    _, model, processor = tiny
    rng = np.random.default_rng(2)
    long = rng.normal(0, 0.1, 65 * SAMPLE_RATE).astype(np.float32)
    long[int(28.5 * SAMPLE_RATE) : int(29 * SAMPLE_RATE)] = 0
    long[int(57 * SAMPLE_RATE) : int(57.5 * SAMPLE_RATE)] = 0
    pieces = split_long(long)
    assert len(pieces) == 3
    per_piece = transcribe_arrays(model, processor, pieces, language="en", batch_size=1, progress=False)
    whole = transcribe_detailed(model, processor, [long], language="en", batch_size=1, progress=False)[0]
    assert whole.text == " ".join(t for t in per_piece if t)
    assert whole.tokens > 0


def test_length_cap_follows_duration(tiny):
    _, model, processor = tiny
    noise = _clips()[1]  # 1 s on which the random model never emits end-of-text
    free = transcribe_detailed(model, processor, [noise], language="en", progress=False)[0]
    assert not free.looped
    assert free.tokens == token_budget(len(noise) / SAMPLE_RATE, 10_000)
    capped = transcribe_detailed(model, processor, [noise], language="en", max_new_tokens=2, progress=False)[0]
    assert capped.tokens <= 2


def test_runaway_loop_is_cut_and_stopped_early(tiny, monkeypatch):
    _, model, processor = tiny
    t = np.arange(20 * SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)  # the random model repeats one token
    lengths = []
    generate = model.generate

    def spy(*args, **kwargs):
        out = generate(*args, **kwargs)
        lengths.append(out.shape[-1])
        return out

    monkeypatch.setattr(model, "generate", spy)
    result = transcribe_detailed(model, processor, [tone], language="en", progress=False)[0]
    assert result.looped and result.tokens == 1
    # Stopped once the loop spanned LOOP_STOP_SPAN tokens, long before the 20 s budget.
    assert lengths[0] <= 4 + LOOP_STOP_SPAN + 1 < token_budget(20.0, 444)


def test_transcribe_command(tiny, tmp_path, capsys):
    from pipeline.cli import main

    path, _, _ = tiny
    clips = _clips()
    wav = tmp_path / "a.wav"
    sf.write(wav, clips[0], SAMPLE_RATE)
    flac = tmp_path / "b.flac"  # 44.1 kHz stereo: resampled and mixed down by load_audio
    t = np.arange(44100) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 300 * t), 0.1 * np.sin(2 * np.pi * 500 * t)], axis=1)
    sf.write(flac, stereo.astype(np.float32), 44100)
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio")
    missing = tmp_path / "missing.mp3"
    rc = main(["transcribe", "--model", str(path), "--language", "en", str(wav), str(bad), str(flac), str(missing)])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = out.splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [str(wav), str(flac)]
    assert all(ln.count("\t") == 1 for ln in lines)
    assert str(bad) in err and str(missing) in err
    expected = transcribe_arrays(tiny[1], tiny[2], [clips[0]], language="en", progress=False)[0]
    assert lines[0].split("\t")[1] == " ".join(expected.split())


def test_long_recording_through_whisper_gives_timed_subtitles(tiny, tmp_path):
    from test_longform import recording
    from test_transcribe_formats import parse_srt

    from pipeline.cli import main

    path, _, _ = tiny
    y, tones, _ = recording([("p", 0.5)] + [x for i in range(12) for x in (("s", 3.0 + i % 3), ("p", 0.8))])
    wav = tmp_path / "talk.wav"
    sf.write(wav, y, SAMPLE_RATE)
    out = tmp_path / "subs"
    rc = main(["transcribe", "--model", str(path), "--language", "en", "--vad", "energy", "--format", "srt",
               "--out-dir", str(out), "--no-progress", str(wav)])  # fmt: skip
    assert rc == 0
    cues = parse_srt((out / "talk.srt").read_text(encoding="utf-8"))
    assert cues, "the tiny model writes something for some tones"
    starts = [round(s, 2) for s, _, _ in tones]
    assert all(any(abs(c.start - s) <= 0.03 for s in starts) for c in cues)
    assert all(0 <= a.start < a.end <= b.start for a, b in zip(cues, cues[1:]))

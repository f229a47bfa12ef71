"""Splitting long clips at pauses with the text split at matching boundaries."""

from __future__ import annotations

import pytest
from dp_fixtures import clip

from data_prep.segment import energy_speech, plan_split, speech_regions
from data_prep.text.normalize import get_normalizer

SA = get_normalizer("sa")


def test_energy_speech_finds_bursts_and_bridges_short_gaps():
    y = clip(("p", 0.5), ("s", 1.0), ("p", 0.5), ("s", 1.0), ("p", 0.05), ("s", 0.5), ("p", 0.5))
    regions = energy_speech(y, 16000)
    assert len(regions) == 2
    assert abs(regions[0][0] - 0.5) < 0.05 and abs(regions[1][1] - 3.55) < 0.05


def test_split_at_danda_matching_the_pause():
    # 3 regions of speech; text has two sentences whose lengths match regions 1+2 and 3
    speech = [(0.0, 10.0), (10.5, 20.0), (20.6, 30.0)]
    text = "क" * 20 + " " + "ख" * 19 + " । " + "ग" * 19
    pieces = plan_split(speech, 30.0, text, SA, max_dur=25.0, min_dur=1.0)
    assert [(p.start, p.end) for p in pieces] == [(0.0, 20.3), (20.3, 30.0)]
    assert pieces[0].text_raw.endswith("।") and pieces[1].text_raw == "ग" * 19


def test_word_boundary_used_when_no_punctuation_but_only_if_aligned():
    speech = [(0.0, 12.0), (12.4, 24.0)]
    words = " ".join(["कखगघ"] * 12)  # 12 equal words, the pause at speech fraction 0.5
    pieces = plan_split(speech, 24.0, words, SA, max_dur=20.0, min_dur=1.0)
    assert len(pieces) == 2 and pieces[0].text_raw == " ".join(["कखगघ"] * 6)
    lopsided = "क " * 2 + "ख" * 60  # text mass cannot match the only pause
    assert plan_split(speech, 24.0, lopsided, SA, max_dur=20.0, min_dur=1.0) is None


@pytest.mark.parametrize("speech,text", [
    ([(0.0, 40.0)], "क ख ग घ"),  # no pause at all
    ([(0.0, 15.0), (15.5, 40.0)], "कखगघ"),  # one word only
    ([(0.0, 35.0), (35.5, 40.0)], "क। ख"),  # the only pause leaves > max before it
])
def test_unsplittable(speech, text):
    assert plan_split(speech, 40.0, text, SA, max_dur=30.0, min_dur=1.0) is None


def test_many_pieces_respect_limits():
    speech = [(i * 5.0, i * 5.0 + 4.5) for i in range(20)]  # 100 s, a pause every 5 s
    text = " । ".join(["कखगघ ङचछज"] * 20)
    pieces = plan_split(speech, 100.0, text, SA, max_dur=30.0, min_dur=1.0)
    assert pieces and all(p.end - p.start <= 30.0 for p in pieces)
    assert " ".join(p.text_raw for p in pieces) == text
    assert pieces[0].start == 0 and pieces[-1].end == 100.0


@pytest.mark.slow
def test_silero_vad_runs_offline():
    regions = speech_regions(clip(("p", 0.5), ("s", 1.0), ("p", 0.5)), 16000, "silero")
    assert isinstance(regions, list)

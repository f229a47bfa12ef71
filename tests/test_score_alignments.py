"""alignments.txt columns and marks; errors.md tallies."""

from __future__ import annotations

from pipeline.score.alignments import (
    collect_errors,
    display_width,
    errors_markdown,
    format_utterance,
    show_char,
)
from pipeline.score.metrics import align_chars, align_words


def test_sclite_like_block_latin():
    w = align_words(["a b c d"], ["a x c d e"])
    block = format_utterance("utt1", "spk", w.refs[0], w.hyps[0], w.alignments[0], w.counts()[0])
    assert block.splitlines() == [
        "id: utt1  speaker: spk",
        "Scores: (#C #S #D #I) 3 1 0 1",
        "REF:  a B c d ***",
        "HYP:  a X c d E",
        "EVAL:   S     I",
    ]


def test_devanagari_deletion_marked_without_case():
    w = align_words(["रामः वनं गच्छति"], ["रामः गच्छति"])
    block = format_utterance("u", "", w.refs[0], w.hyps[0], w.alignments[0], w.counts()[0], missing=False)
    ref, hyp, ev = block.splitlines()[2:]
    assert ref.split() == ["REF:", "रामः", "वनं", "गच्छति"]
    assert hyp.split() == ["HYP:", "रामः", "***", "गच्छति"]
    assert ev.split() == ["EVAL:", "D"]
    # Columns line up: the D sits under the deleted word's column.
    assert hyp.index("***") == ev.index("D")


def test_display_width_ignores_combining_marks():
    assert display_width("कि") == 2  # क + spacing vowel sign ि (Mc)
    assert display_width("किं") == 2  # anusvara ं is a non-spacing mark (Mn)
    assert display_width("abc") == 3


def test_errors_markdown_counts():
    refs, hyps = ["वन वन बल", "जल"], ["बन बन बल", "चल"]
    stats = collect_errors(align_words(refs, hyps), align_chars(refs, hyps))
    assert stats.word_sub[("वन", "बन")] == 2 and stats.word_sub[("जल", "चल")] == 1
    assert stats.char_sub[("व", "ब")] == 2 and stats.char_sub[("ज", "च")] == 1
    md = errors_markdown(stats, "demo")
    assert "| 2 | वन | बन |" in md
    assert "| 2 | व (U+0935) | ब (U+092C) |" in md


def test_show_char_makes_invisible_things_visible():
    assert show_char(" ") == "␠ (space)"
    assert show_char("ि") == "◌ि (U+093F)"
    assert show_char("\u200d") == "(U+200D)"

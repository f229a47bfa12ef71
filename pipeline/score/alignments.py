"""Human-readable views of jiwer alignments: sclite-like ``alignments.txt`` and ``errors.md``.

In ``alignments.txt`` every utterance gets ``REF:``/``HYP:`` lines with the
words in aligned columns, ``***`` where a word is missing on one side, erroneous
words in UPPER CASE (where the script has case; Devanagari has none) and an
``EVAL:`` line with S (substitution), D (deletion) or I (insertion) under each
error, so the errors are visible in any script.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.score.metrics import Aligned, Counts

_EVAL = {"substitute": "S", "delete": "D", "insert": "I"}


def display_width(text: str) -> int:
    """Approximate monospace width: combining marks and format characters take no column,
    East Asian wide/full-width characters take two."""
    width = 0
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


def aligned_columns(ref: Sequence[str], hyp: Sequence[str], chunks) -> list[tuple[str, str, str]]:
    """(ref cell, hyp cell, eval mark) per alignment column; errors upper-cased."""
    cols: list[tuple[str, str, str]] = []
    for c in chunks:
        r = ref[c.ref_start_idx : c.ref_end_idx]
        h = hyp[c.hyp_start_idx : c.hyp_end_idx]
        if c.type == "equal":
            cols.extend((a, b, "") for a, b in zip(r, h))
        elif c.type == "substitute":
            cols.extend((a.upper(), b.upper(), "S") for a, b in zip(r, h))
        elif c.type == "delete":
            cols.extend((a.upper(), "*" * max(3, display_width(a)), "D") for a in r)
        elif c.type == "insert":
            cols.extend(("*" * max(3, display_width(b)), b.upper(), "I") for b in h)
    return cols


def format_utterance(utt_id: str, speaker: str, ref: Sequence[str], hyp: Sequence[str], chunks, counts: Counts,
                     missing: bool = False) -> str:
    """One utterance block of alignments.txt."""
    cols = aligned_columns(ref, hyp, chunks)
    widths = [max(display_width(a), display_width(b), len(m), 1) for a, b, m in cols]
    lines = [f"id: {utt_id}" + (f"  speaker: {speaker}" if speaker else "") + ("  [hypothesis missing]" if missing else "")]
    lines.append(f"Scores: (#C #S #D #I) {counts.hit} {counts.sub} {counts.dele} {counts.ins}")
    lines.append(("REF:  " + " ".join(_pad(a, w) for (a, _, _), w in zip(cols, widths))).rstrip())
    lines.append(("HYP:  " + " ".join(_pad(b, w) for (_, b, _), w in zip(cols, widths))).rstrip())
    lines.append(("EVAL: " + " ".join(_pad(m, w) for (_, _, m), w in zip(cols, widths))).rstrip())
    return "\n".join(lines) + "\n"


def format_alignments(ids: Sequence[str], speakers: Sequence[str], words: Aligned, missing: Sequence[bool],
                      header: str = "") -> str:
    """The whole alignments.txt: a header, then one block per utterance."""
    blocks = [header.rstrip() + "\n"] if header else []
    counts = words.counts()
    for i, utt_id in enumerate(ids):
        blocks.append(format_utterance(utt_id, speakers[i], words.refs[i], words.hyps[i], words.alignments[i],
                                       counts[i], missing[i]))
    return "\n".join(blocks)


@dataclass
class ErrorStats:
    """Frequencies of each kind of error, at word and character level."""

    word_sub: Counter = field(default_factory=Counter)  # (ref, hyp) -> count
    word_del: Counter = field(default_factory=Counter)  # ref -> count
    word_ins: Counter = field(default_factory=Counter)  # hyp -> count
    char_sub: Counter = field(default_factory=Counter)
    char_del: Counter = field(default_factory=Counter)
    char_ins: Counter = field(default_factory=Counter)


def _tally(aligned: Aligned, sub: Counter, dele: Counter, ins: Counter) -> None:
    for ref, hyp, chunks in zip(aligned.refs, aligned.hyps, aligned.alignments):
        for c in chunks:
            r = ref[c.ref_start_idx : c.ref_end_idx]
            h = hyp[c.hyp_start_idx : c.hyp_end_idx]
            if c.type == "substitute":
                sub.update(zip(r, h))
            elif c.type == "delete":
                dele.update(r)
            elif c.type == "insert":
                ins.update(h)


def collect_errors(words: Aligned, chars: Aligned) -> ErrorStats:
    stats = ErrorStats()
    _tally(words, stats.word_sub, stats.word_del, stats.word_ins)
    _tally(chars, stats.char_sub, stats.char_del, stats.char_ins)
    return stats


def show_char(ch: str) -> str:
    """A single character made visible: space as ␠, marks on a dotted circle, code point added."""
    if ch == " ":
        return "␠ (space)"
    cat = unicodedata.category(ch)
    shown = f"◌{ch}" if cat.startswith("M") else ("" if cat.startswith("C") else ch)
    return f"{shown} (U+{ord(ch):04X})".strip()


def _md(text: str) -> str:
    """Escape a cell for a Markdown table."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`") or "∅"


def _table(headers: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def errors_markdown(stats: ErrorStats, title: str, top: int = 30) -> str:
    """errors.md: the most frequent word errors and character confusions."""
    lines = [f"# Most frequent errors: {title}", ""]
    lines += [f"## Word substitutions (reference -> hypothesis), top {top}", ""]
    lines += _table(["count", "reference", "hypothesis"],
                    [[str(n), _md(r), _md(h)] for (r, h), n in stats.word_sub.most_common(top)])
    lines += [f"## Word deletions (in the reference, missing from the hypothesis), top {top}", ""]
    lines += _table(["count", "word"], [[str(n), _md(w)] for w, n in stats.word_del.most_common(top)])
    lines += [f"## Word insertions (in the hypothesis only), top {top}", ""]
    lines += _table(["count", "word"], [[str(n), _md(w)] for w, n in stats.word_ins.most_common(top)])
    lines += [f"## Character confusions (reference -> hypothesis), top {top}", ""]
    lines += _table(["count", "reference", "hypothesis"],
                    [[str(n), _md(show_char(r)), _md(show_char(h))] for (r, h), n in stats.char_sub.most_common(top)])
    lines += [f"## Character deletions, top {top}", ""]
    lines += _table(["count", "character"], [[str(n), _md(show_char(c))] for c, n in stats.char_del.most_common(top)])
    lines += [f"## Character insertions, top {top}", ""]
    lines += _table(["count", "character"], [[str(n), _md(show_char(c))] for c, n in stats.char_ins.most_common(top)])
    return "\n".join(lines).rstrip() + "\n"

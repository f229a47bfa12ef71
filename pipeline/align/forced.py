"""Frame log-posteriors + a transcript's words -> where each word lies, by CTC forced alignment.

The target is the whole recording's token sequence: each word's characters
(:func:`data_prep.vocab.char_tokens`), words joined by the word delimiter ``|``
when the vocabulary has one. A character the vocabulary lacks is left out of
the target (it stays in the utterance's text; :class:`AlignedWord.dropped`
names it): the model was never trained to emit it, and ``<unk>`` rarely was.
A word none of whose characters is in the vocabulary has no time of its own.

:func:`torchaudio.functional.forced_align` finds the best path through all
``T`` frames at once, for ``L`` target tokens; its CPU backpointers take two
bits per frame and target state, ``(2 L + 2) * (T - L) / 4`` bytes (a
10-minute recording of 1,290 words, 30,000 frames: 87 MB), so one alignment is
limited to :data:`MAX_TRELLIS_BYTES`: at 50 frames/s and 15 characters/s about
48 minutes of speech. A longer recording is refused with that remedy (cut it
into shorter recordings with their text) rather than aligned in guessed pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torchaudio.functional import forced_align, merge_tokens

from data_prep.longform.aligner import AlignedWord, AlignmentError
from data_prep.vocab import WORD, char_tokens
from pipeline.models.ctc_vocab import CTCVocab

#: The most backpointer memory one alignment may take (bytes).
MAX_TRELLIS_BYTES = 2 << 30


def trellis_bytes(frames: int, tokens: int) -> int:
    """The backpointer memory of aligning ``tokens`` targets to ``frames`` frames (see the module docstring)."""
    return (2 * tokens + 2) * max(0, frames - tokens) // 4


@dataclass
class Targets:
    """The token ids to align, the word each belongs to (-1: a delimiter), and what each word left out."""

    ids: list[int] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def word_targets(words: Sequence[str], vocab: CTCVocab) -> Targets:
    """The alignment target of ``words`` (normalized) under ``vocab``."""
    t = Targets()
    specials = vocab.special_ids()
    for i, word in enumerate(words):
        ids, dropped = [], []
        for tok in char_tokens(word):
            j = vocab.token_to_id.get(tok)
            if tok == WORD and j is None:
                continue  # a language written without spaces: nothing to align them to
            if j is None or j in specials:
                dropped.append(tok)
            else:
                ids.append(j)
        t.dropped.append("".join(dropped))
        if not ids:
            continue
        if t.ids and vocab.word is not None:
            t.ids.append(vocab.word)
            t.owner.append(-1)
        t.ids.extend(ids)
        t.owner.extend([i] * len(ids))
    return t


def check_alignable(frames: int, ids: list[int]) -> None:
    """:class:`AlignmentError` unless ``ids`` fit ``frames`` frames within :data:`MAX_TRELLIS_BYTES`."""
    if not ids:
        raise AlignmentError("no character of the transcript is in the model's vocabulary")
    needed = len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
    if frames < needed:
        raise AlignmentError(f"its {len(ids)} tokens need at least {needed} frames of the model, the audio gives "
                             f"{frames}: the transcript holds more than the recording")
    if trellis_bytes(frames, len(ids)) > MAX_TRELLIS_BYTES:
        gib = trellis_bytes(frames, len(ids)) / (1 << 30)
        raise AlignmentError(f"{frames} frames x {len(ids)} tokens need {gib:.1f} GiB to align at once (at most "
                             f"{MAX_TRELLIS_BYTES / (1 << 30):g}): cut the recording and its text into shorter ones")


def align_words(log_probs: torch.Tensor, frame_s: float, words: Sequence[str], vocab: CTCVocab) -> list[AlignedWord]:
    """One :class:`AlignedWord` per word, from the (T, V) log-posteriors of the whole recording."""
    t = word_targets(words, vocab)
    check_alignable(log_probs.shape[0], t.ids)
    path, scores = forced_align(log_probs[None].float().cpu(), torch.tensor([t.ids], dtype=torch.int32),
                                blank=vocab.blank)  # fmt: skip
    spans = merge_tokens(path[0], scores[0], blank=vocab.blank)
    if len(spans) != len(t.ids):  # forced alignment emits every target once
        raise AlignmentError(f"the alignment gave {len(spans)} tokens for {len(t.ids)}")
    frame_logp = scores[0].tolist()
    bounds: dict[int, list] = {}  # word -> [first frame, end frame, logp, frames]
    for owner, span in zip(t.owner, spans):
        if owner < 0:
            continue
        b = bounds.setdefault(owner, [span.start, span.end, 0.0, 0])
        b[1] = span.end
        b[2] += sum(frame_logp[span.start : span.end])
        b[3] += span.end - span.start
    out = []
    for i, dropped in enumerate(t.dropped):
        if i not in bounds:
            out.append(AlignedWord(None, None, dropped=dropped))
            continue
        first, end, logp, frames = bounds[i]
        out.append(AlignedWord(round(first * frame_s, 4), round(end * frame_s, 4), logp, frames, dropped))
    return out

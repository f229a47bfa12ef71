"""Decoding with a character LM fused into Whisper's beam search (``decode --fusion-weight``).

The same search as the rescoring stage's (:mod:`pipeline.decode.fusion`, through
:meth:`pipeline.rescore.scorers.WhisperScorer.nbest`), keeping its best hypothesis:
what a recipe's ``rescore`` writes when the dev tuning kept the search's own pick
(``weights.json``: ``beam_pick``), here for audio without references and without
building N-best lists. Clips longer than 30 s are cut at quiet points and their
pieces' texts joined, as in plain decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.decode.fusion import Fusion
from pipeline.models.encoder import SAMPLE_RATE


def load_fused_decoder(model: str, language: str | None, fusion: Fusion, beams: int, device: str = "cpu",
                       fallback_language: str | None = None):  # fmt: skip
    """A :data:`pipeline.decode.BatchDecoder` running the fused beam search of ``fusion`` with ``beams`` beams."""
    from pipeline.decode.whisper_nbest import WhisperScorer
    from pipeline.models.whisper import load_whisper

    scorer = WhisperScorer(*load_whisper(model, device=device), language, fallback_language=fallback_language)
    return fused_batch_decoder(scorer, fusion, beams)


def fused_batch_decoder(scorer, fusion: Fusion, beams: int):
    """Decode batches with ``scorer``'s beam search, ``fusion``'s LM inside it: (text, tokens) per clip."""
    from pipeline.decode.whisper import split_long

    search = fusion.processor(scorer)
    tokenizer = scorer.processor.tokenizer

    def decode_batch(audios: Sequence[np.ndarray]) -> list[tuple[str, int]]:
        pieces, owner = [], []
        for k, audio in enumerate(audios):
            for piece in split_long(np.asarray(audio, np.float32)):
                pieces.append(piece)
                owner.append(k)
        parts: list[list[str]] = [[] for _ in audios]
        durations = [len(p) / SAMPLE_RATE for p in pieces]
        for k, texts in zip(owner, scorer.nbest(scorer.encode(pieces), durations, beams, 1, fusion=search)):
            if texts and texts[0]:
                parts[k].append(texts[0])
        out = []
        for texts in parts:
            text = " ".join(texts)
            out.append((text, len(tokenizer.encode(text, add_special_tokens=False)) if text else 0))
        return out

    return decode_batch

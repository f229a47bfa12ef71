"""The aligner ``prepare --format longform`` is given: a CTC model's emissions + forced alignment.

:func:`load_aligner` loads the model the way ``decode`` does
(:func:`pipeline.decode.ctc.load_ctc_acoustics`): a CTC checkpoint of the
toolkit (a Whisper-encoder CTC system, or a wav2vec2 / XLS-R / MMS one), or a plain
transformers CTC folder (``Wav2Vec2ForCTC``, ``HubertForCTC``, ... with its ``vocab.json``).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from data_prep.longform.aligner import AlignedWord
from pipeline.align.emissions import Emissions, emissions
from pipeline.align.forced import align_words
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.models.encoder import SAMPLE_RATE


class CtcAligner:
    """A :class:`data_prep.longform.aligner.Aligner`: ``emit`` (16 kHz audio -> :class:`Emissions`) over
    ``vocab``'s tokens, then forced alignment of the whole recording."""

    def __init__(self, emit: Callable[[np.ndarray], Emissions], vocab: CTCVocab, identity: str):
        self.emit = emit
        self.vocab = vocab
        self.identity = identity

    def align(self, wave: np.ndarray, sr: int, words: Sequence[str]) -> list[AlignedWord]:
        if sr != SAMPLE_RATE:
            raise ValueError(f"the aligner takes {SAMPLE_RATE} Hz audio, not {sr} Hz")
        em = self.emit(wave)
        return align_words(em.log_probs, em.frame_s, words, self.vocab)


def model_identity(model_dir: str | os.PathLike) -> str:
    """The model folder's resolved path and a digest of its files' names, sizes and times: a model
    trained again in place gets another identity."""
    root = Path(model_dir).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    stats = [(p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return f"{root}#{hashlib.sha1(repr(stats).encode()).hexdigest()[:12]}"


def load_aligner(model: str | os.PathLike, device: str = "cpu") -> CtcAligner:
    """The aligner of a CTC checkpoint (ValueError naming it when it is not one)."""
    from pipeline.decode.ctc import load_ctc_acoustics
    from pipeline.models.ctc_checkpoint import CONFIG_FILE, is_ctc_checkpoint

    if not is_ctc_checkpoint(model):
        raise ValueError(f"--align-model {model}: not a CTC checkpoint (no {CONFIG_FILE}, nor a transformers "
                         "...ForCTC config.json with a vocab.json); alignment needs a CTC model's frame posteriors "
                         "(python -m pipeline train with a CTC config writes one)")
    net, vocab, fe = load_ctc_acoustics(model, device)
    return CtcAligner(functools.partial(emissions, net, feature_extractor=fe, device=device), vocab,
                      model_identity(model))

"""Loading any system: a system directory (``system.json``) or a model :mod:`pipeline.decode` loads.

:func:`load_any` is what ``transcribe``, ``decode`` and the Python API call. A
system directory of kind ``decoder`` is its one model decoded plainly (through
:func:`pipeline.decode.recognizer.load_recognizer`, with the recorded search); one of
kind ``rescored`` is a composite :class:`~pipeline.decode.recognizer.Recognizer`
that does per clip what ``rescore`` did per utterance: the decoders' fused beam N-best
and the CTC model's proposals, scored by every model
(:func:`pipeline.rescore.build.score_batch`), one chosen with the tuned weights
(:func:`pipeline.rescore.combine.choose`). Clips go in batches of the recorded size,
sorted by duration as ``rescore`` sorts them (the beam search's token budget is its
batch's longest clip's): ``decode`` of the manifest the system was scored on, which
hands it those batches, gives the run's transcripts exactly.
Audio longer than 30 s is cut at quiet points and the pieces' choices joined.
``speed`` picks a faster rung of a system instead (:mod:`pipeline.system.speed`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.decode.recognizer import Recognizer, SearchOptions, with_tail_silence
from pipeline.system.spec import SystemSpec, is_system_dir, read_spec
from pipeline.system.speed import DEFAULT_SPEED, Rung, check_speed, load_rung, own_search

log = logging.getLogger(__name__)

#: SearchOptions fields a system directory fixes itself, and the options that set them.
_FIXED_BY_SYSTEM = {"language": "--language", "detect_language": "--no-language", "task": "--task",
                    "beams": "--beams", "max_new_tokens": "--max-new-tokens", "fusion": "--fusion-weight",
                    "lm": "--lm", "lm_alpha": "--lm-alpha", "lm_beta": "--lm-beta",
                    "beam_width": "--beam-width", "tail_silence_s": "--tail-silence"}  # fmt: skip


def load_any(model: str | os.PathLike, options: SearchOptions = SearchOptions(), *,
             fallback_language: str | None = None, speed: str = DEFAULT_SPEED) -> Recognizer:  # fmt: skip
    """The recognizer of ``model``: a system directory (see :mod:`pipeline.system`) at the rung ``speed``
    (:mod:`pipeline.system.speed`), else any model :func:`pipeline.decode.recognizer.load_recognizer`
    loads (with ``options`` and ``fallback_language``).

    Raises ValueError for options a system cannot use (it searches as its ``system.json`` says;
    only ``device`` applies), for a rung it cannot provide, for ``speed`` other than best with a model
    that is not a system directory; :class:`~pipeline.system.spec.SystemSpecError` for an unreadable
    system. A rung that runs a slower form than its own (``fast`` without CTranslate2) logs a warning.
    """
    recognizer, rung = load_with_rung(model, options, fallback_language=fallback_language, speed=speed)
    if rung is not None and rung.fallback:
        log.warning("%s: %s", model, rung.describe())
    return recognizer


def load_with_rung(model: str | os.PathLike, options: SearchOptions = SearchOptions(), *,
                   fallback_language: str | None = None,
                   speed: str = DEFAULT_SPEED) -> tuple[Recognizer, Rung | None]:  # fmt: skip
    """:func:`load_any`, and what its rung runs (None: ``model`` is not a system directory)."""
    check_speed(speed)
    if is_system_dir(model):
        spec = read_spec(model)
        check_options(model, spec, options)
        if speed == DEFAULT_SPEED:
            return load_system(model, options), Rung(speed, own_search(Path(model), spec))
        recognizer, rung = load_rung(Path(model), spec, speed, options.device)
        return with_tail_silence(recognizer, spec.search.tail_silence_s), rung  # each rung hears what the system heard
    if speed != DEFAULT_SPEED:
        raise ValueError(f"--speed {speed} needs a system directory (`export` writes one); {model} is a model: "
                         "choose its search with --beams")  # fmt: skip
    from pipeline.decode.recognizer import load_recognizer

    return load_recognizer(model, options, fallback_language=fallback_language), None


def load_system(folder: str | os.PathLike, options: SearchOptions = SearchOptions()) -> Recognizer:
    """The recognizer of a system directory (``options``: only ``device`` applies)."""
    spec = read_spec(folder)
    check_options(folder, spec, options)
    if spec.kind == "decoder":
        recognizer = _plain(Path(folder), spec, options.device)
    else:
        recognizer = _rescored(Path(folder), spec, options.device)
    return with_tail_silence(recognizer, spec.search.tail_silence_s)


def check_options(folder: str | os.PathLike, spec: SystemSpec, options: SearchOptions) -> None:
    """Refuse search options for a system directory (ValueError naming them): its search is its own."""
    default = SearchOptions()
    given = [flag for name, flag in _FIXED_BY_SYSTEM.items() if getattr(options, name) != getattr(default, name)
             and not (name == "language" and options.language == spec.language)]  # fmt: skip
    if given:
        raise ValueError(f"{folder}: a system directory searches as its system.json says; drop {', '.join(given)}")


def _plain(root: Path, spec: SystemSpec, device: str) -> Recognizer:
    from pipeline.decode.recognizer import load_recognizer

    search = spec.search
    options = SearchOptions(language=search.language_token, beams=search.beams, batch_size=search.batch_size,
                            lm=root / spec.lm if spec.lm else None, device=device)  # fmt: skip
    recognizer = load_recognizer(root / spec.decoders[0], options, fallback_language=spec.language)
    return dataclasses.replace(recognizer, name=str(root), batch_size=search.batch_size)


class RescoredSystem:
    """A rescored system directory, loaded: its decoders, CTC model, LMs, fusion and weights."""

    def __init__(self, root: Path, spec: SystemSpec, device: str = "cpu"):
        from pipeline.decode.ctc import read_lm_settings
        from pipeline.decode.whisper_nbest import WhisperScorer
        from pipeline.models.whisper import load_whisper
        from pipeline.rescore.combine import Weights, load_weights
        from pipeline.rescore.scorers import CharLM, CTCScorer, WordLM

        self.spec, self.search = spec, spec.search
        self.decoders = [WhisperScorer(*load_whisper(root / d, device=device), self.search.language_token,
                                       fallback_language=spec.language) for d in spec.decoders]  # fmt: skip
        lm_dir = root / spec.lm if spec.lm else None
        self.ctc = CTCScorer(root / spec.ctc, lm_dir, self.search.ctc_proposals, device) if spec.ctc else None
        self.word_lm = WordLM(read_lm_settings(lm_dir).arpa) if lm_dir is not None else None
        char_arpa = root / spec.char_lm if spec.char_lm else None
        self.char_lm = CharLM(char_arpa) if char_arpa is not None else None
        f = self.search.fusion
        self.fusion = f.fusion(char_arpa) if f else None
        self.weights = load_weights(root / spec.weights) if spec.weights else Weights()
        # the candidates are normalized with the system's own copy of the data's rules (a rules file path)
        self.rules = str(root / spec.text_rules) if spec.text_rules else spec.language

    def candidates(self, waves: Sequence[np.ndarray]):
        """Every clip's scored candidates (<= 30 s clips, one batch), as ``rescore`` records them."""
        from pipeline.rescore.build import score_batch

        s = self.search
        return score_batch(waves, self.rules, self.decoders, self.ctc, self.word_lm, s.beams, s.nbest, self.char_lm,
                           self.fusion)  # fmt: skip

    def decode_batch(self, waves: Sequence[np.ndarray]) -> list[tuple[str, int]]:
        """(chosen text, its decoder tokens) per clip; longer clips are cut at quiet points, the choices joined."""
        from pipeline.decode.whisper import split_long
        from pipeline.rescore.candidates import NBest
        from pipeline.rescore.combine import choose

        pieces, owner = [], []
        for k, wave in enumerate(waves):
            for piece in split_long(np.asarray(wave)):
                pieces.append(piece)
                owner.append(k)
        chosen = [""] * len(pieces)
        size = max(1, self.search.batch_size)
        order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))  # as rescore's batches: by duration
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            for i, candidates in zip(batch, self.candidates([pieces[i] for i in batch])):
                best = choose(NBest(id="", candidates=candidates), self.weights)
                chosen[i] = best.text if best is not None else ""
        texts = [" ".join(t for t, k in zip(chosen, owner) if k == clip and t) for clip in range(len(waves))]
        tokenizer = self.decoders[0].processor.tokenizer
        return [(t, len(tokenizer.encode(t, add_special_tokens=False)) if t else 0) for t in texts]


def _rescored(root: Path, spec: SystemSpec, device: str) -> Recognizer:
    system = RescoredSystem(root, spec, device)
    return Recognizer("rescored", str(root), system.decode_batch, batch_size=spec.search.batch_size)

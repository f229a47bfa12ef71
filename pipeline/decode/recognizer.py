"""One factory for every system the toolkit decodes: :func:`load_recognizer`.

A *recognizer* turns a batch of 16 kHz mono arrays (any length) into one
``(text, generated tokens)`` pair each. What it runs depends on the checkpoint:

- a Whisper model (bundled name, CTranslate2 or transformers folder, hub id):
  greedy or beam search (:mod:`pipeline.decode.whisper`), or, with
  :attr:`SearchOptions.fusion`, the beam search with a character LM inside it
  (:mod:`pipeline.decode.fused`);
- a CTC checkpoint (a folder with ``ctc_config.json``, or a plain transformers CTC folder): greedy, or a beam search
  with a word LM (:mod:`pipeline.decode.ctc`).

``decode`` (a manifest), ``transcribe`` (audio files) and the trainers' dev
evaluation all decode through a recognizer, so a system scores the same everywhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pipeline.decode.fusion import Fusion

#: A batch decoder: 16 kHz mono arrays in, one (text, generated token count) per array out.
BatchDecoder = Callable[[Sequence[np.ndarray]], list[tuple[str, int]]]


@dataclass(frozen=True)
class SearchOptions:
    """How to search; each option applies to the kinds of system named in its comment."""

    language: str | None = None  # Whisper: the language token; None: the trained one, else the fallback
    detect_language: bool = False  # Whisper: let the model detect the language instead
    task: str = "transcribe"  # Whisper: transcribe | translate
    beams: int = 1  # Whisper: beam width (1 = greedy)
    batch_size: int = 8  # Whisper: clips per generate() call
    max_new_tokens: int | None = None  # Whisper: a hard cap on tokens per 30 s piece
    fusion: Fusion | None = None  # Whisper: a character LM inside the beam search (``beams`` wide)
    lm: str | os.PathLike | None = None  # CTC: word LM (lm.arpa, its lm.json or their folder)
    lm_alpha: float | None = None  # CTC: LM weight (default: lm.json's)
    lm_beta: float | None = None  # CTC: word bonus (default: lm.json's)
    beam_width: int | None = None  # CTC: beam search width (default: greedy without an LM)
    # any system: seconds of silence appended to every clip before the search. A model fine-tuned on clips
    # that end in silence keeps writing when a recording stops right at its last word (with_tail_silence)
    tail_silence_s: float = 0.0
    device: str = "cpu"

    def language_for(self, fallback: str | None) -> str | None:
        """The explicit language to ask for (None: the model's trained one, else ``fallback``)."""
        return None if self.detect_language else self.language


@dataclass
class Recognizer:
    """A loaded system: call it on a batch of 16 kHz arrays for (text, tokens) pairs."""

    kind: str  # "whisper", "whisper+char-lm", "ctc" (or another loader's, e.g. a rescored system's)
    name: str  # what it was loaded from
    decode_batch: BatchDecoder = field(repr=False)
    # the clips per batch the system was evaluated with: a manifest is decoded in batches of this
    # size (as the run that scored it was), so that its transcripts are that run's; None: the caller's
    batch_size: int | None = None

    def __call__(self, waves: Sequence[np.ndarray]) -> list[tuple[str, int]]:
        return self.decode_batch(waves)

    def transcribe(self, waves: Sequence[np.ndarray]) -> list[str]:
        """The texts only."""
        return [text for text, _ in self.decode_batch(waves)]


#: The longest tail of silence a search appends (more is no longer a clip's end but a pause).
MAX_TAIL_SILENCE_S = 5.0


def check_tail_silence(seconds: float) -> None:
    """ValueError unless 0 <= ``seconds`` <= :data:`MAX_TAIL_SILENCE_S`."""
    if not 0 <= seconds <= MAX_TAIL_SILENCE_S:
        raise ValueError(f"tail silence {seconds} s: must be between 0 and {MAX_TAIL_SILENCE_S}")


def with_tail_silence(recognizer: Recognizer, seconds: float, sample_rate: int = 16000) -> Recognizer:
    """``recognizer`` hearing ``seconds`` of silence after every clip (itself when ``seconds`` is 0).

    Clips trimmed to their speech end where the talker stops; the clips a model was fine-tuned on
    may all have ended in silence, and such a model, hearing no silence, writes on past the last
    word (inserted repeats of it). The tail costs its seconds of encoder time per clip.
    """
    check_tail_silence(seconds)
    if seconds == 0:
        return recognizer
    tail = np.zeros(int(round(seconds * sample_rate)), dtype=np.float32)
    inner = recognizer.decode_batch

    def decode_batch(waves: Sequence[np.ndarray]) -> list[tuple[str, int]]:
        return inner([np.concatenate([np.asarray(w, dtype=np.float32), tail]) for w in waves])

    return dataclasses.replace(recognizer, decode_batch=decode_batch)


def check_options(is_ctc: bool, name: str, options: SearchOptions) -> None:
    """Refuse options the system cannot use (ValueError, one line naming the model)."""
    if is_ctc and options.fusion is not None:
        raise ValueError(f"--fusion-weight needs a Whisper model; {name} is a CTC checkpoint (use --lm)")
    if not is_ctc and options.lm is not None:
        raise ValueError(f"--lm needs a CTC checkpoint; {name} is not one")


def load_recognizer(model: str | os.PathLike, options: SearchOptions = SearchOptions(), *,
                    fallback_language: str | None = None) -> Recognizer:  # fmt: skip
    """Load ``model`` and return its :class:`Recognizer`.

    ``fallback_language``: the language to decode a Whisper model in when neither the options
    nor the model's training name one (e.g. the manifest's). Raises ValueError for options the
    system cannot use, :class:`~pipeline.models.model_files.ModelFileError` for a model that
    cannot be read.
    """
    from pipeline.models.cpu_kernels import bound_kernel_cache
    from pipeline.models.ctc_checkpoint import is_ctc_checkpoint

    bound_kernel_cache()
    name = str(model)
    is_ctc = is_ctc_checkpoint(model)
    check_options(is_ctc, name, options)
    if is_ctc:
        from pipeline.decode.ctc import load_ctc_decoder

        decode = load_ctc_decoder(model, lm=options.lm, alpha=options.lm_alpha, beta=options.lm_beta,
                                  beam_width=options.beam_width, device=options.device)  # fmt: skip
        return with_tail_silence(Recognizer("ctc", name, decode), options.tail_silence_s)
    from pipeline.models.whisper import load_whisper

    whisper, processor = load_whisper(model, device=options.device)
    fallback = None if options.detect_language else fallback_language
    return whisper_recognizer(whisper, processor, options, name=name, fallback_language=fallback)


def whisper_recognizer(model, processor, options: SearchOptions = SearchOptions(), *, name: str = "",
                       fallback_language: str | None = None) -> Recognizer:  # fmt: skip
    """The recognizer of a Whisper model already in memory (e.g. a trainer's, for its dev evaluation)."""
    recognizer = _whisper_search(model, processor, options, name, fallback_language)
    return with_tail_silence(recognizer, options.tail_silence_s)


def _whisper_search(model, processor, options: SearchOptions, name: str,
                    fallback_language: str | None) -> Recognizer:  # fmt: skip
    """The plain or the fused search of :func:`whisper_recognizer`."""
    language = options.language_for(fallback_language)
    if options.fusion is not None:
        from pipeline.decode.fused import fused_batch_decoder
        from pipeline.decode.whisper import decoding_language
        from pipeline.decode.whisper_nbest import WhisperScorer

        if decoding_language(model, language, fallback_language) is None:
            raise ValueError("--fusion-weight needs a language (--language, or a model fine-tuned with one): "
                             "the character LM is one language's")  # fmt: skip
        scorer = WhisperScorer(model, processor, language, fallback_language=fallback_language)
        return Recognizer("whisper+char-lm", name, fused_batch_decoder(scorer, options.fusion, options.beams))
    from pipeline.decode.whisper import batch_decoder, decoding_language

    language = decoding_language(model, language, fallback_language)
    decode = batch_decoder(model, processor, language, options.task, options.batch_size, options.beams,
                           max_new_tokens=options.max_new_tokens)  # fmt: skip
    return Recognizer("whisper", name, decode)

"""Every way of turning audio into text.

=====================  ==================================================================
module                 job
=====================  ==================================================================
``recognizer``         one factory, :func:`load_recognizer`: a Whisper or CTC checkpoint ->
                       a :class:`Recognizer` that decodes batches of 16 kHz arrays
``whisper``            Whisper's greedy / beam search (long audio cut at quiet points,
                       token budget, loop guard, logits of the allowed tokens only)
``whisper_nbest``      Whisper's N-best and the exact log-probability of any text
``fusion``, ``fused``  a character LM inside Whisper's beam search
``ctc``, ``ctc_beam``  CTC checkpoints: greedy, or beam search with a word n-gram LM
``rates``              plausible characters per second (the fused search's length guard)
``manifest``           a manifest -> ``hyps.jsonl``, resumable (:func:`decode_manifest`)
``resumable``          per-utterance work over a manifest that survives a kill
``hyps``               :class:`Hypothesis` records and their I/O
``longform``           recordings of any length: cut at pauses (VAD), decoded in batches,
                       timed segments (:func:`transcribe_long`), memory flat in the length
``transcript``         :class:`Transcript` / :class:`Segment` records; txt, jsonl, srt, vtt
=====================  ==================================================================

Importing this package is cheap (no torch): the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "Hypothesis": "pipeline.decode.hyps",
    "read_hyps": "pipeline.decode.hyps",
    "write_hyps": "pipeline.decode.hyps",
    "Recognizer": "pipeline.decode.recognizer",
    "SearchOptions": "pipeline.decode.recognizer",
    "load_recognizer": "pipeline.decode.recognizer",
    "decode_manifest": "pipeline.decode.manifest",
    "LongformOptions": "pipeline.decode.longform",
    "transcribe_long": "pipeline.decode.longform",
    "Segment": "pipeline.decode.transcript",
    "Transcript": "pipeline.decode.transcript",
}
__all__ = ["Hypothesis", "LongformOptions", "Recognizer", "SearchOptions", "Segment", "Transcript",
           "decode_manifest", "load_recognizer", "read_hyps", "transcribe_long", "write_hyps"]

if TYPE_CHECKING:
    from pipeline.decode.hyps import Hypothesis, read_hyps, write_hyps
    from pipeline.decode.longform import LongformOptions, transcribe_long
    from pipeline.decode.manifest import decode_manifest
    from pipeline.decode.recognizer import Recognizer, SearchOptions, load_recognizer
    from pipeline.decode.transcript import Segment, Transcript


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pipeline.decode' has no attribute {name!r}")

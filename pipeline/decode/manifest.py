"""Decode a manifest into a hypotheses file, resumably.

Batched, with a progress bar (:mod:`pipeline.decode.resumable`): a killed run
continues where it stopped; the final ``hyps.jsonl`` is written atomically in
manifest order, and a clip whose audio cannot be read is listed in
``hyps.rejects.jsonl`` with its manifest line instead of stopping the run.
Any :class:`~pipeline.decode.recognizer.Recognizer` (or batch decoder) decodes;
:func:`decode_file` loads one with :func:`~pipeline.decode.recognizer.load_recognizer`,
or with the loader it is given (e.g. one that also loads system directories).

:func:`decode_file` is the whole ``decode`` command: the output may not be (or
lie inside) an input, one run at a time writes it, and a rerun continues only
the unfinished work of the same inputs and settings (``force`` discards it).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.manifest import Source, Utterance, read_manifest_lines
from data_prep.outputs import RunIdentity, exclusive, guard_outputs
from pipeline.decode.hyps import Hypothesis, write_hyps
from pipeline.decode.recognizer import BatchDecoder, Recognizer, SearchOptions
from pipeline.decode.resumable import (
    check_output,
    partial_path,
    read_records,
    rejects_path,
    resume_check,
    run_resumable,
    written_paths,
)


@dataclass(frozen=True)
class DecodeResult:
    """What :func:`decode_file` wrote: the hypotheses in manifest order and the clips it could not read."""

    hyps: list[Hypothesis]
    errors: list[str]  # one line per unreadable clip (its manifest line, id and reason)
    rejects: Path | None  # where they are listed, if any


def decode_inputs(manifest: str | os.PathLike, model: str | os.PathLike, options: SearchOptions) -> dict:
    """What a decode run reads, by role: guarded against as outputs, fingerprinted in its identity."""
    fusion = options.fusion
    return {"manifest": manifest, "model": model, "lm": options.lm,
            "char_lm": fusion.arpa if fusion else None, "fusion_rate_from": fusion.rate_from if fusion else None}


def decode_identity(manifest: str | os.PathLike, model: str | os.PathLike, options: SearchOptions) -> RunIdentity:
    """What decides a hypothesis: the inputs and the search settings (not the batch size or device)."""
    settings = {"language": options.language, "no_language": options.detect_language, "task": options.task,
                "num_beams": options.beams, "lm_alpha": options.lm_alpha, "lm_beta": options.lm_beta,
                "beam_width": options.beam_width, "max_new_tokens": options.max_new_tokens,
                "fusion": options.fusion.settings() if options.fusion else None}  # fmt: skip
    return RunIdentity.of("decode", decode_inputs(manifest, model, options), settings)


#: Loads a recognizer: (model, options, fallback_language=...) -> Recognizer.
Loader = Callable[..., Recognizer]


def decode_file(manifest: str | os.PathLike, model: str | os.PathLike, out: str | os.PathLike,
                options: SearchOptions = SearchOptions(), *, limit: int = 0, force: bool = False,
                loader: Loader | None = None) -> DecodeResult:  # fmt: skip
    """Decode ``manifest`` with ``model`` into ``out`` (``hyps.jsonl``), as ``python -m pipeline decode`` does.

    ``limit``: the first N utterances only (0: all). ``loader``: how to load ``model`` (default
    :func:`~pipeline.decode.recognizer.load_recognizer`), called after the output checks; the clips
    go in batches of the recognizer's own ``batch_size`` when it has one, else ``options.batch_size``.
    Raises OutputRefused / ResumeError (an unsafe output, unfinished work of another run),
    ManifestError (a bad manifest line), ValueError (options the model cannot use) and
    ModelFileError (a model that cannot be read).
    """
    from pipeline.decode.recognizer import load_recognizer

    load = loader or load_recognizer
    manifest, out = Path(manifest), Path(out)
    utts, sources = utterances_to_decode(manifest, limit)
    if not utts:  # reported by utterances_to_decode
        return DecodeResult([], [], None)
    guard_outputs(written_paths(out), decode_inputs(manifest, model, options).values())
    check_output(out)  # before the model loads
    with exclusive(out, "decode"):
        resume_check(out, decode_identity(manifest, model, options), force=force)
        recognizer = load(model, options, fallback_language=utts[0].language)
        batch_size = recognizer.batch_size or options.batch_size
        hyps, errors = decode_manifest(utts, manifest.parent, recognizer, out, batch_size, str(model),
                                       sources)  # fmt: skip
    return DecodeResult(hyps, errors, rejects_path(out) if errors else None)


def decode_manifest(
    utts: Sequence[Utterance],
    manifest_dir: Path,
    decode_batch: BatchDecoder,
    out: Path,
    batch_size: int = 8,
    model_name: str = "",
    sources: dict[str, Source] | None = None,
) -> tuple[list[Hypothesis], list[str]]:
    """Decode ``utts`` into ``out``, resumably; returns (hypotheses in manifest order, unreadable-audio errors).

    Unreadable clips are also listed in ``hyps.rejects.jsonl``; ``sources``: their manifest lines, by id.
    """

    def work(batch: list[Utterance], audios: list[np.ndarray]) -> list[Hypothesis]:
        t0 = time.perf_counter()
        texts = decode_batch(audios)
        per_utt = round((time.perf_counter() - t0) / len(batch), 4)
        return [Hypothesis(id=u.id, text=text, model=model_name, seconds=per_utt, tokens=n_tokens)
                for u, (text, n_tokens) in zip(batch, texts)]  # fmt: skip

    done = read_records(partial_path(out), Hypothesis.from_json)
    return run_resumable(utts, manifest_dir, out, work, write_hyps, done=done, batch_size=batch_size, desc="decode",
                         sources=sources)  # fmt: skip


def utterances_to_decode(manifest: Path, limit: int = 0) -> tuple[list[Utterance], dict[str, Source]]:
    """The manifest's first ``limit`` utterances (all with 0) and their manifest lines by id.

    A bad line or a repeated id raises ManifestError; an empty result is reported on stderr.
    """
    lines = read_manifest_lines(manifest)
    if limit:
        lines = lines[:limit]
    if not lines:
        print(f"{manifest}: manifest is empty", file=sys.stderr)
    return [u for _, u in lines], {u.id: Source(str(manifest), n) for n, u in lines}

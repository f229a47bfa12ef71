"""Decode a manifest into a hypotheses file, resumably.

Batched, with a progress bar (:mod:`pipeline.decode.resumable`): a killed run
continues where it stopped; the final ``hyps.jsonl`` is written atomically in
manifest order, and a clip whose audio cannot be read is listed in
``hyps.rejects.jsonl`` with its manifest line instead of stopping the run.
Any :class:`~pipeline.decode.recognizer.Recognizer` (or batch decoder) decodes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_prep.manifest import Source, Utterance, read_manifest_lines
from pipeline.decode.hyps import Hypothesis, write_hyps
from pipeline.decode.recognizer import BatchDecoder
from pipeline.decode.resumable import partial_path, read_records, run_resumable


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

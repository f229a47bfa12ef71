"""Dev-set evaluation during training: the decode stage's decoding, the score stage's metric.

There is one way to decode a model and one way to score it, and the trainer
uses both: the model, configured by :func:`pipeline.train.export.as_exported`
exactly as ``best/`` is written (merged weights, the restricted vocabulary's
``suppress_tokens``, trimmed or padded encoder input, eval mode), goes through
:func:`pipeline.decode.decode_manifest` with
:func:`pipeline.models.whisper.batch_decoder` (audio -> features -> encoder ->
``generate`` with per-utterance token budgets and the loop guard), and the
hypotheses through :func:`pipeline.score.scorer.score_utterances` (the score
stage's normalizer and alignments). The dev CER in ``log.jsonl`` is thus the
CER that ``pipeline decode`` + ``pipeline score`` report for ``best/``.

(An earlier, separate decoding loop on cached encoder states disagreed with the
decode stage: it searched the full vocabulary although training had restricted
the softmax, and gave every utterance of a batch the longest one's token budget.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from data_prep.manifest import Utterance, read_manifest
from pipeline.config import RecipeConfig
from pipeline.decode.hyps import Hypothesis
from pipeline.decode.manifest import decode_manifest
from pipeline.decode.whisper import batch_decoder
from pipeline.score.scorer import ScoreError, manifest_language, score_utterances

log = logging.getLogger(__name__)


@dataclass
class DevResult:
    cer: float
    wer: float
    n: int  # utterances scored
    n_missing: int  # utterances without a hypothesis (unreadable audio): scored as all deletions
    hyps: dict[str, str]


@dataclass(frozen=True)
class DevSet:
    """The dev clips a training evaluates on; none (no dev manifest): no evaluation, best/ is the final model."""

    utts: list[Utterance]  # the first ``train.dev_limit`` of the manifest (0: all)
    manifest: Path | None  # the dev manifest the config names (it may not exist)
    lang: str  # the score stage's normalizer for them


def load_dev_set(cfg: RecipeConfig) -> DevSet:
    """The dev set of ``cfg``: decoded from its audio as the decode stage decodes it (every clip, any
    length), so it needs no labels and no cached encoder states."""
    d, limit = cfg.data, cfg.train.dev_limit
    path = Path(d.manifest("dev")) if (d.dev or d.manifests_dir) else None
    if path is None or not path.is_file():
        return DevSet([], path, d.lang)
    utts = read_manifest(path)
    utts = utts[:limit] if limit > 0 else utts
    return DevSet(utts, path, scoring_language(utts, path, d.lang))


def scoring_language(utts: Sequence[Utterance], manifest: str | Path, fallback: str) -> str:
    """The normalizer the score stage would use for ``manifest`` (``fallback`` when it cannot tell)."""
    try:
        return manifest_language(list(utts), manifest)
    except ScoreError:
        return fallback


def score_hyps(utts: Sequence[Utterance], hyps: Sequence[Hypothesis], lang: str) -> DevResult:
    """Corpus CER/WER of ``hyps`` against ``utts``, computed by the score stage's code."""
    by_id = {h.id: h for h in hyps}
    scored = score_utterances(
        list(utts), by_id, lang, system="dev", kind="other", testset="dev", n_resamples=0
    ).results
    return DevResult(
        cer=scored.cer, wer=scored.wer, n=scored.n_utts, n_missing=scored.n_missing,
        hyps={h.id: h.text for h in hyps},
    )  # fmt: skip


def evaluate_dev(
    model,
    processor,
    utts: Sequence[Utterance],
    manifest_dir: str | Path,
    out: str | Path,
    *,
    language: str,
    lang: str,
    batch_size: int,
    num_beams: int = 1,
    name: str = "",
) -> DevResult:
    """Decode ``utts`` with ``model`` as the decode stage would, write ``out`` (hyps.jsonl), score.

    ``model`` must be configured as when loaded from its exported directory
    (see :func:`pipeline.train.export.as_exported`); ``language``: the language
    token code to force; ``lang``: the normalizer name for scoring.
    """
    out = Path(out)
    # A .partial left by an evaluation that was killed belongs to other weights: never resume from it.
    out.with_name(out.name + ".partial").unlink(missing_ok=True)
    decode_batch = batch_decoder(model, processor, language, "transcribe", batch_size, num_beams)
    hyps, errors = decode_manifest(list(utts), Path(manifest_dir), decode_batch, out, batch_size, name)
    for e in errors:
        log.warning("dev: %s", e)
    return score_hyps(utts, hyps, lang)

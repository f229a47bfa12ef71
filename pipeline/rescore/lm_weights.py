"""Grid search of the LM weight (alpha) and word bonus (beta) on the DEV split.

Never tune on test: the chosen weights would then be fitted to the very
utterances whose error rate we report.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.decode.ctc_beam import CTCBeamDecoder
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.score.metrics import align_chars, align_words, sum_counts

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
DEFAULT_BETAS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)


@dataclass
class TuneResult:
    alpha: float
    beta: float
    wer: float
    cer: float
    grid: list[dict] = field(default_factory=list)  # one {alpha, beta, wer, cer} per point


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> tuple[float, float]:
    """Corpus WER and CER with the project's scorer."""
    wer = sum_counts(align_words(refs, hyps).counts()).rate
    cer = sum_counts(align_chars(refs, hyps).counts()).rate
    return wer, cer


def tune_lm_weights(
    dev_logits: Sequence,
    dev_refs: Sequence[str],
    vocab: CTCVocab | dict | str | Path,
    lm_path: str | Path,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    betas: Sequence[float] = DEFAULT_BETAS,
    beam_width: int = 32,
    metric: str = "wer",
    lengths: Sequence[int] | None = None,
) -> TuneResult:
    """Decode dev at every (alpha, beta) and return the best point by ``metric`` (wer | cer).

    ``dev_logits``: one (T_i, V) array per dev utterance (or a batch with
    ``lengths``); ``dev_refs``: their normalized references. Ties go to the
    other metric, then to the smaller alpha (less LM is the safer choice).
    """
    if metric not in ("wer", "cer"):
        raise ValueError(f"metric must be wer or cer, got {metric!r}")
    if len(dev_logits) != len(dev_refs):
        raise ValueError(f"{len(dev_logits)} logit matrices but {len(dev_refs)} references")
    decoder = CTCBeamDecoder(vocab, lm_path, alpha=alphas[0], beta=betas[0], beam_width=beam_width)
    grid = []
    points = [(a, b) for a in alphas for b in betas]
    for a, b in tqdm(points, desc="LM weights", unit="point", disable=len(points) < 4):
        decoder.set_weights(a, b)
        hyps = decoder.decode_batch(dev_logits, lengths)
        wer, cer = error_rates(dev_refs, hyps)
        grid.append({"alpha": a, "beta": b, "wer": wer, "cer": cer})
    other = "cer" if metric == "wer" else "wer"
    best = min(grid, key=lambda g: (g[metric], g[other], g["alpha"], g["beta"]))
    log.info("best LM weights on dev: alpha %.2f beta %.2f (WER %.4f, CER %.4f)",
             best["alpha"], best["beta"], best["wer"], best["cer"])
    return TuneResult(alpha=best["alpha"], beta=best["beta"], wer=best["wer"], cer=best["cer"], grid=grid)


def dev_logits(model_dir: Path, utts, manifest: Path, batch_size: int, device: str):
    """(utterances whose audio could be read, one (T_i, V) log-probability array each, vocabulary), computed by
    the decode stage's path. A clip that cannot be read is reported with its manifest line and left out of the
    tuning, as decode leaves it out of the scoring."""
    from data_prep.audio import AudioError
    from pipeline.decode.ctc import ctc_logits, whisper_feature_extractor
    from pipeline.models.ctc import WhisperEncoderCTC
    from pipeline.models.ctc_checkpoint import load_ctc_model

    model, vocab = load_ctc_model(model_dir, device=device)
    fe = whisper_feature_extractor(model_dir, model) if isinstance(model, WhisperEncoderCTC) else None
    kept, out = [], []
    for start in range(0, len(utts), batch_size):
        chunk, waves = [], []
        for lineno, u in utts[start : start + batch_size]:
            try:
                waves.append(u.load_audio(manifest.parent))
                chunk.append(u)
            except AudioError as e:
                print(f"warning: {manifest}:{lineno}: {u.id}: {e}; left out of the tuning", file=sys.stderr)
        if not chunk:
            continue
        logp, lengths = ctc_logits(model, waves, fe, device)
        kept += chunk
        out += [logp[i, : int(n)].numpy() for i, n in enumerate(lengths)]
    return kept, out, vocab

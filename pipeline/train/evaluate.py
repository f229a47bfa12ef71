"""Dev-set evaluation during training: decode, normalize, WER/CER.

Decoding goes through the training module's own encoder path (trimmed states,
cached lower layers when the regime caches them) and the cross-attention mask,
so the number measured is the number of the model as trained. Hypotheses and
references both go through the project's text normalizer for the language,
as the scoring stage does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import jiwer
import torch
import transformers
from transformers.modeling_outputs import BaseModelOutput

from data_prep.text.normalize import normalize_text
from pipeline.config import DecodeConfig
from pipeline.models.encoder import CrossAttentionMask, padding_mask
from pipeline.models.whisper import truncate_loop

PREFIX_TOKENS = 4  # sot, language, task, notimestamps


@dataclass
class DevResult:
    cer: float
    wer: float
    n: int
    hyps: dict[str, str]


@contextlib.contextmanager
def _quiet_transformers():
    """generate() logs known, harmless warnings (suppress tokens in two configs, length flags)."""
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)


def error_rates(refs: list[str], hyps: list[str]) -> tuple[float, float]:
    """Corpus CER and WER (utterances with an empty reference are left out)."""
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    if not pairs:
        return math.nan, math.nan
    r, h = zip(*pairs)
    return float(jiwer.cer(list(r), list(h))), float(jiwer.wer(list(r), list(h)))


@torch.no_grad()
def decode_batches(
    module,
    tokenizer,
    batches: Iterable[dict],
    durations: dict[str, float],
    *,
    language: str,
    decode: DecodeConfig,
    device: torch.device,
) -> dict[str, str]:
    """Greedy/beam decoding of collated batches with the training module's encoder path."""
    whisper = module.whisper
    limit = whisper.config.max_target_positions - PREFIX_TOKENS
    was_training = module.training
    module.eval()
    out: dict[str, str] = {}
    try:
        for batch in batches:
            features = batch.get("features")
            states = batch.get("states")
            hidden, lengths = module.encode(
                None if features is None else features.to(device),
                None if states is None else states.to(device),
                batch["lengths"].to(device),
            )
            seconds = max(durations[i] for i in batch["ids"])
            budget = max(1, min(limit, 10 + math.ceil(decode.max_new_tokens_per_second * seconds)))
            keep = padding_mask(lengths.to(device), hidden.shape[1])
            with CrossAttentionMask(whisper, keep), _quiet_transformers():
                tokens = whisper.generate(
                    encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                    language=language,
                    task="transcribe",
                    num_beams=decode.beam,
                    max_new_tokens=budget,
                )
            special = set(tokenizer.all_special_ids)
            for utt_id, row in zip(batch["ids"], tokens.tolist()):
                row = [t for t in row if t not in special]
                row, _ = truncate_loop(row)
                out[utt_id] = tokenizer.decode(row, skip_special_tokens=True).strip()
    finally:
        module.train(was_training)
    return out


def score(hyps: dict[str, str], refs: dict[str, str], lang: str) -> DevResult:
    """Normalize both sides with the language's normalizer and compute CER/WER."""
    ids = [i for i in refs if i in hyps]
    r = [normalize_text(refs[i], lang) for i in ids]
    h = [normalize_text(hyps[i], lang) for i in ids]
    cer, wer = error_rates(r, h)
    return DevResult(cer=cer, wer=wer, n=len(ids), hyps=hyps)

"""CTC decoding: greedy best path, and beam search with a word n-gram LM (pyctcdecode + KenLM).

Both take per-frame scores (T, V) — logits or log-probabilities — over the
ids of ``vocab.json`` and return normalized text: repeats merged, blanks
dropped, ``|`` turned into a space, special tokens (``<unk>``...) removed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.lm.build import read_unigrams
from pipeline.models.ctc_vocab import CTCVocab

log = logging.getLogger(__name__)


def _as_vocab(vocab: CTCVocab | dict | str | Path) -> CTCVocab:
    if isinstance(vocab, CTCVocab):
        return vocab
    if isinstance(vocab, dict):
        return CTCVocab(vocab)
    return CTCVocab.load(vocab)


def _as_numpy(scores) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().float().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError(f"expected (frames, vocab) scores, got shape {scores.shape}")
    return scores


def greedy_decode(scores, vocab: CTCVocab | dict | str | Path, length: int | None = None) -> str:
    """Best-path text of one utterance's (T, V) scores (the first ``length`` frames)."""
    vocab = _as_vocab(vocab)
    x = _as_numpy(scores)[:length]
    return vocab.ids_to_text(vocab.collapse(x.argmax(axis=-1).tolist()))


def greedy_decode_batch(scores, lengths, vocab: CTCVocab | dict | str | Path) -> list[str]:
    """Best-path texts of a (B, T, V) batch with (B,) valid lengths."""
    vocab = _as_vocab(vocab)
    best = (scores.argmax(-1).cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores).argmax(-1))
    lengths = lengths.tolist() if isinstance(lengths, torch.Tensor) else list(lengths)
    return [vocab.ids_to_text(vocab.collapse(best[i, : int(n)].tolist())) for i, n in enumerate(lengths)]


class CTCBeamDecoder:
    """Prefix beam search over CTC scores, optionally fused with a KenLM word n-gram LM.

    ``alpha`` weighs the LM log-probability, ``beta`` is a bonus per word (it
    offsets the LM's bias toward short outputs); tune both on dev with
    :func:`pipeline.rescore.lm_weights.tune_lm_weights`. Without ``lm_path`` it is a plain
    CTC beam search.
    """

    def __init__(
        self,
        vocab: CTCVocab | dict | str | Path,
        lm_path: str | Path | None = None,
        alpha: float = 0.5,
        beta: float = 1.0,
        beam_width: int = 32,
        beam_prune_logp: float = -10.0,
        token_min_logp: float = -5.0,
    ):
        from pyctcdecode import build_ctcdecoder

        self.vocab = _as_vocab(vocab)
        self.lm_path = Path(lm_path) if lm_path is not None else None
        self.beam_width = beam_width
        self.beam_prune_logp = beam_prune_logp
        self.token_min_logp = token_min_logp
        labels = self.vocab.labels_for_decoder()
        unigrams = None
        if self.lm_path is not None:
            if not self.lm_path.is_file():
                raise FileNotFoundError(f"{self.lm_path}: language model not found")
            unigrams = read_unigrams(self.lm_path) if self.lm_path.suffix == ".arpa" else None
        self._strip = {c for c in labels if len(c) == 1 and (c == "⁇" or ord(c) >= 0xF0000)}
        self._decoder = build_ctcdecoder(
            labels, kenlm_model_path=str(self.lm_path) if self.lm_path else None, unigrams=unigrams,
            alpha=alpha, beta=beta,
        )
        self.alpha, self.beta = alpha, beta

    def set_weights(self, alpha: float, beta: float) -> None:
        """Change the LM weight and word bonus without reloading the LM."""
        if self.lm_path is not None:
            self._decoder.reset_params(alpha=alpha, beta=beta)
        self.alpha, self.beta = alpha, beta

    def _clean(self, text: str) -> str:
        if self._strip:
            text = "".join(ch for ch in text if ch not in self._strip)
        return " ".join(text.split())

    def decode(self, logits_np, length: int | None = None) -> str:
        """Text of one utterance's (T, V) scores (first ``length`` frames)."""
        x = _as_numpy(logits_np)[:length]
        text = self._decoder.decode(
            x, beam_width=self.beam_width, beam_prune_logp=self.beam_prune_logp, token_min_logp=self.token_min_logp
        )
        return self._clean(text)

    def decode_nbest(self, logits_np, length: int | None = None, n: int = 4) -> list[str]:
        """The ``n`` best distinct texts of one utterance, best first."""
        x = _as_numpy(logits_np)[:length]
        beams = self._decoder.decode_beams(
            x, beam_width=self.beam_width, beam_prune_logp=self.beam_prune_logp, token_min_logp=self.token_min_logp
        )
        out: list[str] = []
        for beam in beams:
            text = self._clean(beam[0])
            if text not in out:
                out.append(text)
            if len(out) == n:
                break
        return out

    def decode_batch(self, logits, lengths: Sequence[int] | torch.Tensor | None = None) -> list[str]:
        """Texts of a list of (T_i, V) arrays, or of a (B, T, V) batch with (B,) lengths."""
        if lengths is None:
            return [self.decode(x) for x in logits]
        lengths = lengths.tolist() if isinstance(lengths, torch.Tensor) else list(lengths)
        return [self.decode(logits[i], int(n)) for i, n in enumerate(lengths)]

"""The models that score candidates besides Whisper's own (:class:`pipeline.decode.whisper_nbest.WhisperScorer`):
a CTC model (log-probability over all alignments, plus its own greedy / LM-beam texts), word and character LMs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.models.ctc_vocab import CTCVocab

SAMPLE_RATE = 16000


def ctc_log_probs(logp: torch.Tensor, length: int, vocab: CTCVocab, texts: Sequence[str]) -> list[float]:
    """log P(text | audio) summed over all CTC alignments, for each text; -inf where none fits the frames."""
    if not texts:
        return []
    targets = [vocab.encode(t) for t in texts]
    k = len(texts)
    x = logp[:length].float().unsqueeze(1).expand(length, k, logp.shape[-1])
    flat = torch.tensor([i for t in targets for i in t], dtype=torch.long)
    loss = F.ctc_loss(x, flat, torch.full((k,), length, dtype=torch.long),
                      torch.tensor([len(t) for t in targets], dtype=torch.long),
                      blank=vocab.blank, reduction="none", zero_infinity=False)  # fmt: skip
    return [-float(v) if math.isfinite(float(v)) else float("-inf") for v in loss]


class WordLM:
    """Sentence log-probability (nats, with <s> and </s>) under an ARPA word n-gram model."""

    def __init__(self, arpa: str | Path):
        import kenlm

        self.path = Path(arpa)
        self._model = kenlm.Model(str(self.path))

    def tokens(self, text: str) -> str:
        return text

    def __call__(self, text: str) -> float:
        return self._model.score(self.tokens(text), bos=True, eos=True) * math.log(10.0)


class CharLM(WordLM):
    """The same for a character n-gram model (see :func:`pipeline.lm.build.build_char_lm`)."""

    def tokens(self, text: str) -> str:
        from pipeline.lm.build import char_tokens

        return " ".join(char_tokens(text))


class CTCScorer:
    """A CTC checkpoint: frame log-probabilities of a batch, its own candidates, and their scores."""

    def __init__(self, model_dir: str | Path, lm: str | Path | None = None, n_proposals: int = 4,
                 device: str = "cpu"):  # fmt: skip
        from pipeline.decode.ctc import read_lm_settings, whisper_feature_extractor
        from pipeline.decode.ctc_beam import CTCBeamDecoder
        from pipeline.models.ctc import WhisperEncoderCTC
        from pipeline.models.ctc_checkpoint import load_ctc_model

        self.model, self.vocab = load_ctc_model(model_dir, device=device)
        self.fe = whisper_feature_extractor(model_dir, self.model) if isinstance(self.model, WhisperEncoderCTC) else None
        self.device = device
        self.n_proposals = n_proposals
        self.beam = None
        if lm is not None and n_proposals > 1:
            s = read_lm_settings(lm)  # the weights tuned for CTC + LM beam search on dev
            self.beam = CTCBeamDecoder(self.vocab, s.arpa, alpha=s.alpha, beta=s.beta, beam_width=s.beam_width)

    def frames(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        from pipeline.decode.ctc import ctc_logits

        return ctc_logits(self.model, waves, self.fe, self.device)

    def propose(self, logp: torch.Tensor, length: int) -> list[str]:
        """Greedy text, then (with an LM) the best distinct texts of CTC + LM beam search."""
        from pipeline.decode.ctc_beam import greedy_decode

        texts = [greedy_decode(logp, self.vocab, length)]
        if self.beam is not None:
            texts += [t for t in self.beam.decode_nbest(logp, length, self.n_proposals) if t not in texts]
        return texts

    def score(self, logp: torch.Tensor, length: int, texts: Sequence[str]) -> list[float]:
        return ctc_log_probs(logp, length, self.vocab, texts)

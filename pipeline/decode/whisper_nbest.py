"""Whisper's N-best: beam-search candidates of a batch, and the exact log-probability of any text.

The encoder runs once per batch; its states serve both the search (optionally with a character LM
fused in, :mod:`pipeline.decode.fusion`) and the teacher-forced scoring that N-best rescoring
(:mod:`pipeline.rescore`) weighs against other models' scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

SAMPLE_RATE = 16000


class WhisperScorer:
    """N-best lists from Whisper's beam search, and teacher-forced log P(text | audio) of any text.

    The encoder runs once per batch; its states serve both the beam search and the scoring.
    Clips must be <= 30 s (``prepare`` guarantees it).
    """

    def __init__(self, model, processor, language: str | None, fallback_language: str | None = None):
        from pipeline.decode.whisper import decoding_language
        from pipeline.models.language import LabelEncoder

        self.model, self.processor = model, processor
        adapt = getattr(model, "asr_adapt", None) or {}
        self.trimmed = adapt.get("encoder_input") == "trimmed"
        # explicit > the token the model was fine-tuned with > the manifest's language
        self.language = decoding_language(model, language, fallback_language)
        self.labels = LabelEncoder(processor, model, self.language)
        self.param = next(model.parameters())

    def encode(self, audios: Sequence[np.ndarray]):
        """Encoder states of a batch and the (B, S) keep-mask (None: all frames are real)."""
        from transformers.modeling_outputs import BaseModelOutput

        from pipeline.models.encoder import encode_for_decoder, mel_length

        for a in audios:
            if len(a) > 30 * SAMPLE_RATE:
                raise ValueError(f"a clip of {len(a) / SAMPLE_RATE:.1f} s: N-best rescoring takes clips <= 30 s")
        arrays = [np.asarray(a, np.float32) if len(a) else np.zeros(160, np.float32) for a in audios]
        feats = self.processor.feature_extractor(arrays, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        features = feats.input_features.to(device=self.param.device, dtype=self.param.dtype)
        with torch.inference_mode():
            if self.trimmed:
                return encode_for_decoder(self.model, features, [mel_length(len(a)) for a in arrays])
            return BaseModelOutput(last_hidden_state=self.model.get_encoder()(features).last_hidden_state), None

    def nbest(self, encoded, durations: Sequence[float], beams: int, n: int, fusion=None) -> list[list[str]]:
        """Up to ``n`` beam-search texts per clip (raw decoder text; duplicates possible), best first.

        ``fusion``: a logits processor that adds an LM's scores inside the search
        (:class:`pipeline.decode.fusion.CharLMFusion`), with its own length penalty.
        A hypothesis that ran into its clip's token budget without ending is a runaway
        (a decoder looping, or an LM bonus outbidding the end token): it is dropped when
        another hypothesis of the clip ended by itself; so is one the fusion's ceiling ended.
        """
        from transformers import LogitsProcessorList
        from transformers.generation.utils import GenerationMixin
        from transformers.modeling_outputs import BaseModelOutput

        from pipeline.decode.rates import rate_chars
        from pipeline.decode.whisper import (
            allowed_tokens_only,
            beam_search_cache,
            clean_tokens,
            drop_runaways,
            quiet_generate,
            token_budget,
        )
        from pipeline.models.encoder import CrossAttentionMask

        states, keep = encoded
        gen = self.model.generation_config
        limit = self.model.config.max_target_positions - len(self.labels.prefix)
        n = min(n, beams)
        prompt = torch.tensor([self.labels.prefix] * len(durations), device=self.param.device)
        search = {}
        if fusion is not None:
            fusion.set_clips(list(durations), beams)
            search["length_penalty"] = fusion.length_penalty
        # Whisper's own generate() cannot return an N-best list (with num_return_sequences it
        # runs n copies of the beam and keeps each one's best); the generic one can, from the
        # same prompt, with the same token suppression (taken from the generation config).
        with torch.inference_mode(), quiet_generate(), CrossAttentionMask(self.model, keep), \
                allowed_tokens_only(self.model):
            # generate() expands encoder_outputs to one row per beam *in place*: it gets its own
            # wrapper, so that ``encoded`` still holds one row per clip for log_probs() afterwards
            seqs = GenerationMixin.generate(self.model, encoder_outputs=BaseModelOutput(**states),
                                            decoder_input_ids=prompt,
                                            cache=beam_search_cache(),
                                            logits_processor=LogitsProcessorList([fusion] if fusion else []),
                                            num_beams=beams, num_return_sequences=n, do_sample=False,
                                            max_new_tokens=token_budget(max(durations), limit),
                                            **search)  # fmt: skip
        rows = seqs.tolist()
        out = []
        for i, secs in enumerate(durations):
            budget = token_budget(secs, limit)
            ids_of = (clean_tokens(row, gen, budget)[0] for row in drop_runaways(rows[i * n : (i + 1) * n], gen, budget))
            texts = [self.processor.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in ids_of]
            if fusion is not None:  # those that had to end at the ceiling, likewise
                ceiling = fusion.max_chars(i)
                texts = [t for t in texts if rate_chars(t) <= ceiling] or texts
            out.append(texts)
        return out

    def log_probs(self, encoded, clip_of: Sequence[int], texts: Sequence[str]) -> list[float]:
        """log P(text + end | audio, prompt) for each (clip index, text) pair, in nats."""
        from transformers.modeling_outputs import BaseModelOutput

        from pipeline.models.encoder import CrossAttentionMask

        if not texts:
            return []
        states, keep = encoded
        seqs = [self.labels(t)[0] for t in texts]
        start = len(self.labels.prefix)
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.labels.eot, dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
        index = torch.as_tensor(list(clip_of), dtype=torch.long)
        hidden = states.last_hidden_state[index.to(states.last_hidden_state.device)]
        keep_rows = keep[index.to(keep.device)] if keep is not None else None
        ids = ids.to(self.param.device)
        from pipeline.decode.whisper import allowed_tokens_only

        with torch.inference_mode(), CrossAttentionMask(self.model, keep_rows), allowed_tokens_only(self.model):
            logits = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                                decoder_input_ids=ids[:, :-1]).logits  # fmt: skip
        logp = logits.float().log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1).cpu()
        # Position p predicts token p + 1: the text and end tokens are the targets from start - 1 on.
        return [float(logp[r, start - 1 : len(s) - 1].sum()) for r, s in enumerate(seqs)]

"""Whisper's search: transcribe audio arrays with a model :func:`pipeline.models.whisper.load_whisper` loaded.

``transcribe_arrays`` runs batched greedy or beam search:

* audio longer than 30 s (Whisper's window) is cut into <= 30 s pieces, each cut
  placed at the quietest 10 ms frame of the last few seconds before the limit,
  and the pieces' texts are joined;
* the number of new tokens is capped from the audio's duration, so a model that
  does not stop cannot run to the 448-token limit on a 2 s clip;
* when a piece used up its token budget without emitting end-of-text and its
  output ends in a loop (the same n-gram repeated many times, the usual failure
  of greedy decoding), the loop is cut back to its first occurrence; in greedy
  search a row whose loop grows past ``LOOP_STOP_SPAN`` tokens is stopped early,
  so one runaway does not hold its whole batch to the cap. We do not use
  ``no_repeat_ngram_size``: in Indic scripts, byte-level BPE n-grams legitimately
  repeat within a sentence.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 16000
WINDOW_S = 30.0  # Whisper's fixed input window
CUT_SEARCH_S = 5.0  # look this far back from the window end for a quiet cut point
#: Token budget: a fixed allowance plus a rate above any speech. Whisper's byte-level
#: BPE spends up to ~15 tokens a second on Indic scripts; 25/s leaves room for that.
BASE_TOKENS = 10
TOKENS_PER_SECOND = 25.0


@dataclass(frozen=True)
class Transcription:
    text: str
    tokens: int  # generated tokens kept (after loop truncation), summed over chunks
    looped: bool  # a repetition loop was cut off


class _AllowedProjection(torch.nn.Module):
    """The decoder's output projection computed for the allowed tokens only; other logits are -inf."""

    def __init__(self, full: torch.nn.Module, allowed: list[int]):
        super().__init__()
        self.full = full
        self.vocab = full.weight.shape[0]
        self.register_buffer("allowed", torch.tensor(allowed, dtype=torch.long, device=full.weight.device))
        self.sub_weight = full.weight.detach()[self.allowed]
        bias = getattr(full, "bias", None)
        self.sub_bias = bias.detach()[self.allowed] if bias is not None else None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        sub = torch.nn.functional.linear(hidden, self.sub_weight.to(hidden.dtype),
                                         None if self.sub_bias is None else self.sub_bias.to(hidden.dtype))
        out = sub.new_full((*hidden.shape[:-1], self.vocab), float("-inf"))
        out[..., self.allowed] = sub
        return out


@contextlib.contextmanager
def allowed_tokens_only(model):
    """Inside the block, ``model`` computes logits only for the tokens generation may emit.

    A model fine-tuned with ``restrict_vocab`` lists every token it never learnt
    to score in ``generation_config.suppress_tokens`` (for Sanskrit: all but 77
    of 51,865). Those logits are then thrown away by generate(); computing only
    the allowed rows of the projection gives the same argmax and the training
    softmax, at a fraction of the cost on a CPU. Models with the usual short
    suppress list keep their full projection. Inside the block generate() never renormalizes
    its processed scores, whatever the generation config says.
    """
    gen = model.generation_config
    # An exported decoder asks plain generate() to renormalize after its logits processors
    # (pipeline.models.generation); our searches score over the allowed tokens already, and the
    # fused search's scores (decoder + character LM) must stay as the weights were tuned on them.
    saved_renormalize = gen.renormalize_logits
    gen.renormalize_logits = False
    try:
        with _projection_over_allowed(model, gen):
            yield model
    finally:
        gen.renormalize_logits = saved_renormalize


@contextlib.contextmanager
def _projection_over_allowed(model, gen):
    suppress = set(gen.suppress_tokens or [])
    head = getattr(model, "proj_out", None)
    vocab = head.weight.shape[0] if head is not None else 0
    if head is None or len(suppress) < vocab // 2:
        yield
        return
    model.proj_out = _AllowedProjection(head, [i for i in range(vocab) if i not in suppress])
    saved = gen.suppress_tokens
    gen.suppress_tokens = None  # already -inf; spares generate() a 50k-id isin() per step
    try:
        yield
    finally:
        model.proj_out = head
        gen.suppress_tokens = saved


def beam_search_cache():
    """An encoder-decoder KV cache whose beam reordering leaves the cross-attention part alone.

    Beam search reorders the cache at every step; the cross-attention keys and values
    are the same for all beams of a clip, so reordering them is pure copying: on a CPU
    it was a third of whisper-base's beam-search time (measured with cProfile).
    """
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    class _Cache(EncoderDecoderCache):
        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self.self_attention_cache.reorder_cache(beam_idx)

    return _Cache(DynamicCache(), DynamicCache())


# ----------------------------------------------------------------------------- chunking


def _quietest_cut(audio: np.ndarray, lo: int, hi: int, frame: int = 160) -> int:
    """Sample index in [lo, hi] at the centre of the lowest-energy ``frame``-sample frame."""
    seg = audio[lo:hi]
    n = len(seg) // frame
    if n == 0:
        return hi
    energy = (seg[: n * frame].reshape(n, frame) ** 2).sum(axis=1)
    return lo + int(np.argmin(energy)) * frame + frame // 2


def split_long(audio: np.ndarray, sr: int = SAMPLE_RATE, window_s: float = WINDOW_S) -> list[np.ndarray]:
    """Cut audio into pieces of at most ``window_s`` seconds, each cut at a quiet point near the limit."""
    window = int(window_s * sr)
    search = int(min(CUT_SEARCH_S, window_s / 2) * sr)
    pieces, start = [], 0
    while len(audio) - start > window:
        cut = _quietest_cut(audio, start + window - search, start + window)
        pieces.append(audio[start:cut])
        start = cut
    pieces.append(audio[start:])
    return pieces


# ----------------------------------------------------------------------------- loops


def truncate_loop(tokens: Sequence[int], max_ngram: int = 32, min_span: int = 16) -> tuple[list[int], bool]:
    """Cut a run-away repetition: an n-gram repeated back to back until the end of ``tokens``.

    A loop is an n-gram (n <= ``max_ngram``) that repeats at least
    ``max(4, ceil(min_span / n))`` times in a row and continues to the end of
    the output (where greedy decoding gets stuck it never recovers). The output
    keeps everything before the loop and one copy of the n-gram.
    """
    tokens = list(tokens)
    best: tuple[int, int] | None = None  # (start of the loop, n)
    for n in range(1, min(max_ngram, len(tokens) // 4) + 1):
        need = max(4, math.ceil(min_span / n))
        if len(tokens) < need * n:
            continue
        # Walk back from the end while the period-n pattern holds (a partial last copy counts).
        start = len(tokens) - n
        while start - n >= 0 and tokens[start - n : start] == tokens[start : start + n]:
            start -= n
        tail = len(tokens) - start
        partial = 0
        while start - 1 >= 0 and tokens[start - 1] == tokens[start - 1 + n]:
            start -= 1  # the loop may begin mid-copy
            partial += 1
        if (tail + partial) // n >= need and (best is None or start < best[0]):
            best = (start, n)
    if best is None:
        return tokens, False
    start, n = best
    return tokens[: start + n], True


#: A row is stopped during greedy search once its loop spans this many tokens: far beyond any
#: real repetition, and it keeps one looping row from holding its whole batch to the token cap.
LOOP_STOP_SPAN = 32


class _LoopStop:
    """Per-row stopping criterion for generate(): ends rows stuck in a loop (greedy search only)."""

    def __init__(self, eos: int | None):
        self.eos = eos
        self.stopped: set[int] = set()

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        flags = []
        for i, row in enumerate(input_ids.tolist()):
            if i not in self.stopped and row[-1] != self.eos and truncate_loop(row, min_span=LOOP_STOP_SPAN)[1]:
                self.stopped.add(i)
            flags.append(i in self.stopped)
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)


# ----------------------------------------------------------------------------- generation


class _DropMessage(logging.Filter):
    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(f in message for f in self.fragments)


@contextlib.contextmanager
def quiet_generate():
    """Hide warnings that transformers' own Whisper generate() raises on every call (not ours to fix).

    The attention-mask one concerns decoder padding, which a Whisper prompt never has; on
    trimmed encoder states the encoder padding is handled by the cross-attention mask.
    """
    logger = logging.getLogger("transformers.generation.utils")
    flt = _DropMessage("together with generation-related arguments", "The attention mask is not set with a batched input")
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)


def token_budget(seconds: float, limit: int) -> int:
    """Maximum new tokens for ``seconds`` of audio, at most ``limit``."""
    return max(1, min(limit, BASE_TOKENS + math.ceil(TOKENS_PER_SECOND * seconds)))


def decoding_language(model, requested: str | None, fallback: str | None = None) -> str | None:
    """The language token to decode with: ``requested`` (a user's explicit choice), else the one
    the model was fine-tuned with (``asr_adapt.json``), else ``fallback`` (the manifest's language).

    A model fine-tuned under another token than its data's language code (Sanskrit data trained
    behind ``<|hi|>``, say) must be prompted as it was trained, not by the manifest's code.
    """
    trained = (getattr(model, "asr_adapt", None) or {}).get("language")
    return requested or trained or fallback or None


def _generate_kwargs(model, language: str | None, task: str) -> dict:
    gen = model.generation_config
    if getattr(gen, "is_multilingual", True) and getattr(gen, "lang_to_id", None):
        kw: dict = {"task": task}
        if language:
            kw["language"] = language
        return kw
    # English-only models take no language/task tokens; transformers refuses them.
    if language not in (None, "en", "english", "<|en|>") or task != "transcribe":
        raise ValueError(f"this model is English-only: cannot {task} with language {language!r}")
    return {}


def transcribe_detailed(
    model,
    processor,
    audios: list[np.ndarray],
    language: str | None,
    task: str = "transcribe",
    batch_size: int = 8,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    progress: bool = True,
) -> list[Transcription]:
    """Like :func:`transcribe_arrays`, with the number of tokens and whether a loop was cut."""
    from tqdm.auto import tqdm
    from transformers import StoppingCriteriaList

    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    pieces: list[tuple[int, np.ndarray]] = []
    for i, audio in enumerate(audios):
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"audio {i}: expected mono samples (1-D), got shape {audio.shape}")
        for piece in split_long(audio):
            pieces.append((i, piece))
    # Similar durations share a batch, so the per-batch token budget stays tight.
    order = sorted(range(len(pieces)), key=lambda k: len(pieces[k][1]))
    adapt = getattr(model, "asr_adapt", None) or {}
    trimmed = adapt.get("encoder_input") == "trimmed"
    if trimmed:
        from pipeline.models.encoder import generate_trimmed, mel_length
    gen_kwargs = _generate_kwargs(model, decoding_language(model, language), task)
    prompt_len = 4  # <|startoftranscript|><|lang|><|task|><|notimestamps|>
    limit = model.config.max_target_positions - prompt_len
    if max_new_tokens is not None:
        limit = min(limit, max_new_tokens)
    param = next(model.parameters())
    outputs: dict[int, tuple[list[int], bool]] = {}
    batches = [order[b : b + batch_size] for b in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="transcribe", unit="batch", disable=not progress or len(batches) < 2):
        arrays = [pieces[k][1] if len(pieces[k][1]) else np.zeros(160, np.float32) for k in batch]
        feats = processor.feature_extractor(
            arrays, sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
        )
        longest = max(len(a) for a in arrays) / SAMPLE_RATE
        budget = token_budget(longest, limit)
        gen = model.generation_config
        eos = gen.eos_token_id if isinstance(gen.eos_token_id, int) else (gen.eos_token_id or [None])[0]
        stopper = _LoopStop(eos)
        if num_beams == 1:
            extra = {"stopping_criteria": StoppingCriteriaList([stopper])}
        else:
            extra = {"cache": beam_search_cache()}
        common = dict(num_beams=num_beams, do_sample=False, return_timestamps=False, **extra, **gen_kwargs)
        # Whisper's generate() counts max_length in new tokens (it adds the prompt itself);
        # max_new_tokens would clash with the default max_length and warn.
        common["max_length"] = budget
        features = feats.input_features.to(device=param.device, dtype=param.dtype)
        with torch.inference_mode(), quiet_generate(), allowed_tokens_only(model):
            if trimmed:
                # A model fine-tuned on the clip's real length is decoded the same way (see encoder.py).
                lengths = [mel_length(len(a)) for a in arrays]
                seqs = generate_trimmed(model, features, lengths, **common)
            else:
                # Whisper ignores the mask for <= 30 s input, but generate() warns about batches without it.
                seqs = model.generate(features, attention_mask=feats.attention_mask.to(param.device), **common)
        for r, (row, k) in enumerate(zip(seqs.tolist(), batch)):
            own = token_budget(len(pieces[k][1]) / SAMPLE_RATE, limit)
            outputs[k] = clean_tokens(row, gen, own, stopped=r in stopper.stopped)
    texts: dict[int, list[str]] = {}
    counts: dict[int, int] = {}
    looped: dict[int, bool] = {}
    for k, (i, _) in enumerate(pieces):
        ids, cut = outputs[k]
        text = processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
        texts.setdefault(i, []).append(text)
        counts[i] = counts.get(i, 0) + len(ids)
        looped[i] = looped.get(i, False) or cut
    return [
        Transcription(" ".join(t for t in texts[i] if t), counts[i], looped[i]) for i in range(len(audios))
    ]


def _content(row: list[int], gen, own_budget: int) -> tuple[list[int], bool]:
    """(content tokens of one generated row, whether it ended by itself within ``own_budget``).

    The prompt's control tokens and everything from the end token on are dropped; a row
    longer than its clip's budget (the search ran on for a longer clip of its batch) is cut
    to it and did not end by itself.
    """
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, int) else (gen.eos_token_id or [None])[0]
    pad = gen.pad_token_id
    # generate() may or may not echo the prompt; drop the control tokens at the start.
    control = {gen.decoder_start_token_id, getattr(gen, "no_timestamps_token_id", None)}
    control |= set((getattr(gen, "lang_to_id", None) or {}).values())
    control |= set((getattr(gen, "task_to_id", None) or {}).values())
    start = 0
    while start < len(row) and row[start] in control:
        start += 1
    ids, ended = [], False
    for t in row[start:]:
        if t == eos or t == pad:
            ended = True
            break
        ids.append(t)
    if len(ids) >= own_budget:
        ids, ended = ids[:own_budget], False
    return ids, ended


def drop_runaways(rows: Sequence[list[int]], gen, own_budget: int) -> list[list[int]]:
    """The rows of one clip's N-best that ended by themselves within its budget (all if none did).

    A beam hypothesis still running at the clip's token budget is a runaway (a decoder
    looping, or an LM's bonus outbidding the end token); it competes only when nothing ended.
    """
    ended = [row for row in rows if _content(row, gen, own_budget)[1]]
    return ended or list(rows)


def clean_tokens(row: list[int], gen, own_budget: int, stopped: bool = False) -> tuple[list[int], bool]:
    """Content tokens of one generated row: prompt and padding removed, own budget applied, loop cut.

    ``stopped``: the loop criterion ended the row (it is then padded as if it had ended by itself).
    """
    ids, ended = _content(row, gen, own_budget)
    if ended and not stopped:
        # The model stopped by itself: repeated words are what it heard, not a runaway loop.
        return ids, False
    return truncate_loop(ids)


def batch_decoder(
    model, processor, language: str | None, task: str = "transcribe", batch_size: int = 8, num_beams: int = 1,
    max_new_tokens: int | None = None,
) -> Callable[[Sequence[np.ndarray]], list[tuple[str, int]]]:
    """A function decoding one batch of 16 kHz arrays into (text, generated tokens) pairs.

    The decode stage and the trainer's dev evaluation both decode through this,
    so a model scores the same in both.
    """

    def decode_batch(audios: Sequence[np.ndarray]) -> list[tuple[str, int]]:
        out = transcribe_detailed(model, processor, list(audios), language=language, task=task,
                                  batch_size=batch_size, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                  progress=False)  # fmt: skip
        return [(t.text, t.tokens) for t in out]

    return decode_batch


def transcribe_arrays(
    model,
    processor,
    audios: list[np.ndarray],
    language: str | None,
    task: str = "transcribe",
    batch_size: int = 8,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
    progress: bool = True,
) -> list[str]:
    """Transcripts of 16 kHz mono float arrays, in input order (see the module docstring)."""
    return [
        t.text
        for t in transcribe_detailed(
            model, processor, audios, language, task, batch_size, num_beams, max_new_tokens, progress
        )
    ]

"""Shallow fusion: a character n-gram LM inside Whisper's beam search.

N-best rescoring can only choose among what the beam proposed, and a 4-beam's
candidates differ in few places. Fusion lets the LM steer the search itself: at
every step each candidate token's score gets ``weight * log P_charLM(the
characters it completes | the hypothesis so far) + bonus * (LM tokens scored)``,
the bonus paying back the LM's per-character cost so that short hypotheses are
not favoured.

Whisper's byte-level BPE splits a Devanagari character (3 UTF-8 bytes) across
tokens, so a hypothesis keeps its incomplete trailing bytes and scores a
character when its last byte arrives. Spaces are scored lazily, as the
character LM's word boundary token in front of the next character, which gives
the LM the same token stream as :func:`pipeline.lm.build.char_tokens` of the
normalized text (no leading, trailing or repeated boundaries). The end token
scores ``</s>``.

A fused search can talk itself into text the audio does not hold: the LM's bonus
pays for every character, and a decoder that loops finds repeating cheap. So
the search also knows its clips' lengths: a hypothesis with more characters than
a ceiling rate (``max_rate``, characters per second of audio, e.g. the train
text's 99th percentile with a margin) allows must end there, at a penalty that
ranks it behind every hypothesis within the ceiling (it remains only as a last
resort, when nothing else ended).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.lm.build import WORD_BOUNDARY

LN10 = math.log(10.0)


@dataclass(frozen=True)
class _Prefix:
    """What the LM needs of a hypothesis: its state, undecoded bytes, and an unscored space."""

    state: object  # kenlm.State after the scored characters
    pending: bytes = b""
    space: bool = False  # a space came after the last scored character (scored before the next one)
    started: bool = False  # a character was scored (leading spaces are dropped)
    chars: int = 0  # characters scored (spaces excluded)

    def key(self) -> tuple:
        """What the LM's scores depend on (not ``chars``: hypotheses of any length share them)."""
        return (self.state, self.pending, self.space, self.started)


def _complete_head(data: bytes) -> int:
    """Length of ``data``'s longest prefix that ends on a UTF-8 character boundary."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 == 0x80:  # a continuation byte: look further back for the lead byte
            continue
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 1
        return len(data) - back if need > back else len(data)
    return len(data)


class CharLMFusion:
    """A transformers logits processor adding a character LM's scores to beam-search candidates.

    ``token_bytes`` maps every token id the decoder may emit as text to its bytes; ``eot``
    is the end token (scores ``</s>``); ``prompt_len`` the prompt tokens the LM skips.
    Tokens not in ``token_bytes`` (other specials) are left as they are. With more text
    tokens than ``top_k`` (a decoder without a restricted vocabulary), only each
    hypothesis's ``top_k`` best text tokens are scored and may be chosen (a pre-beam).
    With ``max_rate`` (characters per second) and the clips set by :meth:`set_clips`, a
    hypothesis longer than its clip allows may only end, at ``OVER_CEILING`` instead of the
    end token's score.
    """

    OVER_CEILING = -1.0e4  # far below any real hypothesis's score, yet finite: it still ends

    def __init__(self, model, token_bytes: dict[int, bytes], eot: int, prompt_len: int,
                 weight: float, bonus: float = 0.0, top_k: int = 128, length_penalty: float = 0.0,
                 max_rate: float = 0.0):  # fmt: skip
        self.model = model  # a kenlm.Model (a path is loaded)
        if isinstance(model, (str, Path)):
            import kenlm

            self.model = kenlm.Model(str(model))
        self.token_ids, self.token_data = list(token_bytes), list(token_bytes.values())
        self.token_bytes, self.eot, self.prompt_len = token_bytes, eot, prompt_len
        self.weight, self.bonus = weight, bonus
        self.length_penalty = length_penalty  # the beam search's (generate's ``length_penalty``)
        self.max_rate = max_rate
        self._max_chars: list[int] = []  # per clip of the current search (empty: no ceiling)
        self._beams = 1
        self.top_k = top_k if 0 < top_k < len(self.token_ids) else 0
        self.ids = torch.tensor([*self.token_ids, eot], dtype=torch.long)
        self._prefixes: dict[tuple[int, ...], _Prefix] = {}
        # (LM key, bytes) -> (log10 score, LM tokens, characters completed, the next prefix's LM part)
        self._memo: dict[tuple, tuple[float, int, int, _Prefix]] = {}

    def set_clips(self, durations: list[float], beams: int) -> None:
        """The clips of the next search (rows ``k * beams ... (k + 1) * beams - 1`` are clip k's)."""
        self._max_chars = [math.ceil(self.max_rate * d) for d in durations] if self.max_rate > 0 else []
        self._beams = beams

    def max_chars(self, clip: int) -> float:
        """The most characters clip ``clip`` of the current search may hold (inf: no ceiling)."""
        return self._max_chars[clip] if self._max_chars else math.inf

    def start(self) -> _Prefix:
        import kenlm

        state = kenlm.State()
        self.model.BeginSentenceWrite(state)
        return _Prefix(state)

    def _score(self, state, token: str) -> tuple[float, object]:
        import kenlm

        out = kenlm.State()
        return self.model.BaseScore(state, token, out), out

    def extend(self, prefix: _Prefix, data: bytes) -> tuple[float, int, _Prefix]:
        """(log10 LM score, LM tokens scored, new prefix) after appending ``data``."""
        total, n, chars, nxt = self._step(prefix, data)
        return total, n, dataclasses.replace(nxt, chars=prefix.chars + chars)

    def _step(self, prefix: _Prefix, data: bytes) -> tuple[float, int, int, _Prefix]:
        """(log10 LM score, LM tokens, characters completed, the next prefix's LM part), memoized."""
        memo_key = (*prefix.key(), data)
        hit = self._memo.get(memo_key)
        if hit is None:
            buf = prefix.pending + data
            head = _complete_head(buf)
            state, space, started, total, n, chars = prefix.state, prefix.space, prefix.started, 0.0, 0, 0
            for ch in buf[:head].decode("utf-8", errors="replace"):
                if ch.isspace():
                    space = started
                    continue
                for token in ((WORD_BOUNDARY, ch) if space else (ch,)):
                    s, state = self._score(state, token)
                    total, n = total + s, n + 1
                space, started, chars = False, True, chars + 1
            hit = self._memo[memo_key] = (total, n, chars, _Prefix(state, buf[head:], space, started))
        return hit

    def finish(self, prefix: _Prefix) -> float:
        """log10 P(</s> | prefix): the end of the sentence."""
        return self._score(prefix.state, "</s>")[0]

    def prefix_of(self, history: tuple[int, ...]) -> _Prefix:
        """The LM prefix of a hypothesis's text tokens (cached; each step extends the previous one's)."""
        found = self._prefixes.get(history)
        if found is not None:
            return found
        if not history:
            prefix = self.start()
        else:
            parent = self.prefix_of(history[:-1])
            data = self.token_bytes.get(history[-1])
            prefix = parent if data is None else self.extend(parent, data)[2]
        self._prefixes[history] = prefix
        return prefix

    def token_scores(self, prefix: _Prefix, which) -> list[float]:
        """The fusion score of text tokens ``which`` (indices into the token list) after ``prefix``."""
        out = []
        for j in which:
            logp, n, _, _ = self._step(prefix, self.token_data[j])
            out.append(self.weight * LN10 * logp + self.bonus * n)
        return out

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] <= self.prompt_len:  # a new search: forget the last one's hypotheses
            self._prefixes.clear()
            if len(self._memo) > 1_000_000:
                self._memo.clear()
        ids = self.ids.to(scores.device)
        every = range(len(self.token_ids))
        for row, seq in enumerate(input_ids[:, self.prompt_len :].tolist()):
            prefix = self.prefix_of(tuple(seq))
            if prefix.chars > self.max_chars(row // self._beams):
                scores[row] = float("-inf")  # too long for its clip: it ends, behind everything within
                scores[row, self.eot] = self.OVER_CEILING
                continue
            end = self.weight * LN10 * self.finish(prefix) if not prefix.pending else 0.0
            if self.top_k:  # pre-beam: the decoder's best text tokens only, the others out of reach
                which = scores[row, ids[:-1]].topk(self.top_k).indices.tolist()
                add = torch.full((len(ids),), float("-inf"))
            else:
                which, add = every, torch.empty(len(ids))
            add[list(which)] = torch.tensor(self.token_scores(prefix, which))
            add[-1] = end
            scores[row, ids] += add.to(device=scores.device, dtype=scores.dtype)
        return scores


@dataclass
class Fusion:
    """Settings of character-LM fusion; :meth:`processor` fits one to a decoder."""

    arpa: Path
    weight: float
    bonus: float = 0.0
    # pre-beam: at most this many text tokens scored per hypothesis; a restricted vocabulary
    # (Sanskrit: 74 text tokens) is scored whole
    top_k: int = 128
    # The search ranks hypotheses by their summed scores divided by length ** length_penalty.
    # 0 (sums, as ESPnet's beam search): the bonus is then the only length reward. Under
    # generate's default 1 (a per-token mean) the bonus rewards length twice, and a decoder
    # looping on a short clip outbids the end token: its repetitions are cheap per token.
    length_penalty: float = 0.0
    # the most characters (spaces excluded) per second of audio a hypothesis may hold; 0: no ceiling
    max_rate: float = 0.0
    rate_from: Path | None = None  # the transcribed manifest ``max_rate`` was taken from (an input of the run)
    _lm: object = field(default=None, init=False, repr=False, compare=False)  # loaded once, shared
    _processors: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def settings(self) -> list[float]:
        """What an N-best record stores: lists searched with other settings are not reused."""
        return [self.weight, self.bonus, float(self.top_k), self.length_penalty, round(self.max_rate, 4)]

    def processor(self, scorer) -> CharLMFusion:
        """The logits processor for a :class:`pipeline.rescore.scorers.WhisperScorer`'s beam search."""
        if id(scorer) not in self._processors:
            if self._lm is None:
                import kenlm

                self._lm = kenlm.Model(str(self.arpa))
            suppress = set(scorer.model.generation_config.suppress_tokens or [])
            eot = scorer.labels.eot
            text = [i for i in range(eot) if i not in suppress]  # Whisper's text tokens come before eot
            token_bytes = text_token_bytes(scorer.processor.tokenizer, text)
            self._processors[id(scorer)] = CharLMFusion(self._lm, token_bytes, eot, len(scorer.labels.prefix),
                                                        self.weight, self.bonus, self.top_k,
                                                        self.length_penalty, self.max_rate)  # fmt: skip
        return self._processors[id(scorer)]


def text_token_bytes(tokenizer, ids) -> dict[int, bytes]:
    """Byte strings of byte-level BPE tokens (GPT-2 / Whisper), for the ids that are text."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    # GPT-2's table of a printable stand-in character for each byte, inverted
    to_byte = {char: byte for byte, char in bytes_to_unicode().items()}
    out = {}
    for i in ids:
        piece = tokenizer.convert_ids_to_tokens(int(i))
        if piece is None or any(c not in to_byte for c in piece):
            continue  # a special token
        out[int(i)] = bytes(to_byte[c] for c in piece)
    return out


def char_arpa(lm: str | Path) -> Path:
    """The character LM's ARPA file: the path itself, or ``char.arpa`` in the directory ``lm`` wrote."""
    path = Path(lm)
    return path / "char.arpa" if path.is_dir() else path


def max_rate_of(labeled: Path | None, margin: float) -> float:
    """The search's ceiling in characters per second: ``labeled``'s high speaking rate (0: none)."""
    if labeled is None:
        return 0.0
    from data_prep.manifest import read_manifest
    from pipeline.decode.rates import RateBounds

    return RateBounds.from_labeled(read_manifest(labeled, unique_ids=False), margin=margin).high

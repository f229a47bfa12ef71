"""The language token, and turning a transcript into Whisper's label sequence.

A language Whisper knows (``sa``, ``pa``, ...) uses its own token. Any other
gets a new special token ``<|xx|>``: appended to the tokenizer and the (tied)
embedding matrix, initialised from a named related language's row, and
registered in ``generation_config.lang_to_id`` under both ``"<|xx|>"`` and
``"xx"`` — transformers' ``generate(language=...)`` only accepts codes it
knows or keys of ``lang_to_id``, so the bare-code key is what makes
``generate(language="xx")`` work after a reload.

An English-only Whisper (``whisper-tiny.en``) has no language or task token in
its prompt at all: training it on another language gives it Whisper's
multilingual prompt with ``<|xx|>`` (:func:`setup_language`, from
``model.new_language_init_from`` too), recorded in its generation config.

:func:`prompt_with_language` writes the trained language and task into the
generation config, so that plain ``generate()`` and ``transformers.pipeline``
prompt the decoder as it was trained instead of detecting a language.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>


class LanguageError(ValueError):
    """The language cannot be set up (unknown init language, tokenizer/model mismatch)."""


def language_token(code: str) -> str:
    return code if code.startswith("<|") else f"<|{code}|>"


def _fill_timestamp_gap(tokenizer, vocab_size: int) -> None:
    """Give the tokenizer the timestamp tokens the model has but its tokenizer.json lacks.

    Whisper's output layer has 1501 timestamp rows after ``<|notimestamps|>``;
    some shipped tokenizers stop before them, and a token appended there would
    silently share a row with ``<|0.00|>``.
    """
    gap = vocab_size - len(tokenizer)
    if gap <= 0:
        return
    last = tokenizer.convert_ids_to_tokens(len(tokenizer) - 1)
    if gap != N_TIMESTAMPS or last != "<|notimestamps|>":
        raise LanguageError(
            f"tokenizer has {len(tokenizer)} tokens (last {last!r}) but the model {vocab_size}: "
            "cannot add a language token safely"
        )
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(N_TIMESTAMPS)], special_tokens=True)


def setup_language(model, processor, code: str, init_from: str = "") -> int:
    """Make sure ``<|code|>`` exists; returns its token id (adds and initialises it if new).

    An English-only Whisper (``is_multilingual`` false, no ``lang_to_id``) gets a language the
    way :func:`_teach_english_only_model` says.
    """
    if not code:
        raise LanguageError("no language given (set data.lang or model.language)")
    gen = model.generation_config
    lang_to_id = dict(getattr(gen, "lang_to_id", None) or {})
    if not lang_to_id:
        if getattr(gen, "is_multilingual", None) is False:
            return _teach_english_only_model(model, processor, code, init_from)
        raise LanguageError("the model's generation config has no lang_to_id: it is not a multilingual Whisper")
    token = language_token(code)
    if token in lang_to_id:
        return int(lang_to_id[token])
    if not init_from:
        raise LanguageError(
            f"{token} is not a Whisper language: set model.new_language_init_from to a related language "
            f"(one of {', '.join(sorted(k.strip('<|>') for k in lang_to_id if k.startswith('<|')))})"
        )
    src_token = language_token(init_from)
    if src_token not in lang_to_id:
        raise LanguageError(f"model.new_language_init_from={init_from!r}: {src_token} is not in the model")
    new_id = _append_token(model, processor.tokenizer, token)
    _copy_row(model, new_id, int(lang_to_id[src_token]))
    lang_to_id[token] = new_id
    lang_to_id[code] = new_id
    gen.lang_to_id = lang_to_id
    log.info("added language token %s (id %d) initialised from %s", token, new_id, src_token)
    return new_id


def _teach_english_only_model(model, processor, code: str, init_from: str) -> int:
    """Give an English-only Whisper the multilingual prompt ``<|sot|><|code|><|transcribe|><|notimestamps|>``.

    Such a model was only ever prompted with ``<|startoftranscript|><|notimestamps|>``: no
    language or task token was in its input. OpenAI's English-only tokenizers still carry every
    language and task token (their rows were never trained: whisper-tiny.en's are all one
    vector); ``<|code|>`` is that token where the tokenizer has it, else a new one appended.
    Its rows are initialised from ``init_from``'s token, which the tokenizer must have. The
    generation config then lists the language and the tasks and says multilingual, so every
    search (and plain ``generate``) prompts the model as it is trained.
    """
    token = language_token(code)
    if not init_from:
        raise LanguageError(
            f"the model is English-only: it has no language tokens; set model.new_language_init_from "
            f"(e.g. en) to give it {token}"
        )
    tokenizer = processor.tokenizer
    vocab_size = model.get_input_embeddings().weight.shape[0]
    src_token = language_token(init_from)
    src = _known_token(tokenizer, src_token, vocab_size)
    if src is None:
        raise LanguageError(f"model.new_language_init_from={init_from!r}: {src_token} is not in the English-only "
                            "model's tokenizer")  # fmt: skip
    tasks = {task: _known_token(tokenizer, f"<|{task}|>", vocab_size) for task in ("transcribe", "translate")}
    missing = [task for task, tid in tasks.items() if tid is None]
    if missing:
        raise LanguageError(f"the English-only model's tokenizer has no <|{missing[0]}|> token: cannot give it "
                            "Whisper's multilingual prompt")  # fmt: skip
    new_id = _known_token(tokenizer, token, vocab_size)
    if new_id is None:
        new_id = _append_token(model, tokenizer, token)
    _copy_row(model, new_id, src)
    gen = model.generation_config
    gen.lang_to_id = {token: new_id, code: new_id}
    gen.task_to_id = {task: int(tid) for task, tid in tasks.items()}
    gen.is_multilingual = True
    gen.forced_decoder_ids = None  # an English-only prompt ([1, <|notimestamps|>]) no longer holds
    log.info("English-only model: language token %s (id %d) initialised from %s, multilingual prompt",
             token, new_id, src_token)  # fmt: skip
    return new_id


def _known_token(tokenizer, token: str, vocab_size: int) -> int | None:
    """``token``'s id when the tokenizer has it and the model has a row for it, else None."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or (tid == tokenizer.unk_token_id and token != tokenizer.unk_token) or not 0 <= tid < vocab_size:
        return None
    return int(tid)


def _append_token(model, tokenizer, token: str) -> int:
    """Add ``token`` to the tokenizer and a row for it to the (tied) embeddings; returns its id."""
    vocab_size = model.get_input_embeddings().weight.shape[0]
    _fill_timestamp_gap(tokenizer, vocab_size)
    tokenizer.add_tokens([token], special_tokens=True)
    new_id = tokenizer.convert_tokens_to_ids(token)
    if new_id != vocab_size:
        raise LanguageError(f"new token {token} got id {new_id}, expected {vocab_size} (tokenizer/model mismatch)")
    model.resize_token_embeddings(vocab_size + 1, mean_resizing=False)
    return new_id


def _copy_row(model, dst: int, src: int) -> None:
    """Token ``dst`` starts as token ``src``: its input embedding and output row."""
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[dst] = emb[src]
        out = model.get_output_embeddings().weight
        if out.data_ptr() != emb.data_ptr():  # untied heads need the row too
            out[dst] = out[src]


#: The generation-config fields that make up the decoder prompt of plain ``generate()``.
PROMPT_FIELDS = ("language", "task", "forced_decoder_ids")


def prompt_with_language(gen, code: str, task: str = "transcribe") -> str:
    """Make plain ``generate()`` / ``pipeline()`` prompt with ``<|code|>`` and ``task``; returns the token.

    transformers' Whisper ``generate`` reads ``generation_config.language`` and ``.task``
    and, when neither is set, detects a language per clip (or follows the deprecated
    ``forced_decoder_ids``, which it ignores once they are set: they are dropped). The
    token form is stored: ``generate`` looks it up in ``lang_to_id`` as it is, so it works
    for Whisper's languages and for a token :func:`setup_language` added alike.
    """
    token = language_token(code)
    lang_to_id = getattr(gen, "lang_to_id", None) or {}
    if token not in lang_to_id:
        raise LanguageError(f"{token} is not in the generation config's lang_to_id: cannot prompt with it")
    gen.language, gen.task, gen.forced_decoder_ids = token, task, None
    return token


class LabelEncoder:
    """Transcript -> [sot, language, transcribe, notimestamps, text tokens..., eot]."""

    def __init__(self, processor, model, code: str):
        tok = processor.tokenizer
        gen = model.generation_config
        self.tokenizer = tok
        self.sot = int(gen.decoder_start_token_id)
        self.eot = int(gen.eos_token_id if not isinstance(gen.eos_token_id, list) else gen.eos_token_id[0])
        self.lang = int(gen.lang_to_id[language_token(code)])
        self.transcribe = int(gen.task_to_id["transcribe"])
        self.notimestamps = int(gen.no_timestamps_token_id)
        self.prefix = [self.sot, self.lang, self.transcribe, self.notimestamps]
        # Tokens generate() forbids as the first one (Whisper's blank suppression: [" ", <|endoftext|>]).
        self.begin_suppressed = {int(i) for i in (getattr(gen, "begin_suppress_tokens", None) or [])}

    def text_ids(self, text: str) -> list[int]:
        """Text tokens of a transcript, in a form the decoder can actually produce first."""
        text = text.strip()
        # A leading space, as in Whisper's own transcripts: the first word then uses the
        # same word-initial pieces as every other word ...
        ids = self.tokenizer(" " + text, add_special_tokens=False).input_ids
        if ids and ids[0] in self.begin_suppressed:
            # ... unless the space stays a token of its own (scripts the BPE never merged with a
            # space, e.g. Gurmukhi, Devanagari): decoding suppresses a bare space as the first
            # token, so the model would learn a first step it can never take, and at decode time
            # start from its second choice: a stray continuation byte (U+FFFD) or a wrong word.
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return ids

    def __call__(self, text: str) -> tuple[list[int], int]:
        return [*self.prefix, *self.text_ids(text), self.eot], len(self.prefix)

    def special_ids(self) -> list[int]:
        return [*self.prefix, self.eot]

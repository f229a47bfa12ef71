"""A tiny random Whisper with a real tokenizer layout, for tests and smoke runs.

The hub is out of reach, so tests cannot download ``openai/whisper-tiny``. This
builds a model with Whisper's architecture and special-token layout (byte-level
BPE pieces, then ``<|endoftext|>``, ``<|startoftranscript|>``, one token per
language, task tokens, ``<|notimestamps|>``) but a handful of dimensions, so a
training step takes milliseconds. Saved with :func:`save_tiny_whisper`, the
directory loads with plain ``from_pretrained`` and ``transformers.pipeline``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

#: Language tokens of the tiny model, in Whisper's order (a prefix of its list; sa and pa included).
TINY_LANGUAGES = ("en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "hi", "pa", "sa")
_SPECIALS_AFTER_LANGUAGES = (
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
)


def _special_tokens() -> list[str]:
    specials = ["<|endoftext|>", "<|startoftranscript|>"]
    specials += [f"<|{code}|>" for code in TINY_LANGUAGES]
    return specials + list(_SPECIALS_AFTER_LANGUAGES)


def tiny_tokenizer(merges: list[tuple[str, str]] | None = None) -> WhisperTokenizer:
    """A byte-level BPE tokenizer with Whisper's special tokens after the 256 byte pieces."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for a, b in merges or []:
        vocab.setdefault(a + b, len(vocab))
    tok = WhisperTokenizer(vocab=vocab, merges=list(merges or []))
    tok.add_tokens(_special_tokens(), special_tokens=True)
    return tok


def build_tiny_whisper(
    *, d_model: int = 64, layers: int = 2, heads: int = 4, ffn: int = 128, seed: int = 0,
    begin_suppress: bool = False, target_positions: int = 128, english_only: bool = False,
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """A random tiny multilingual Whisper and its processor (80 mel bins, 30 s window).

    ``english_only``: an English-only Whisper as OpenAI's ``*.en`` models are: the same tokenizer
    (language and task tokens included), a generation config without languages or tasks
    (``is_multilingual`` false), prompted with ``<|startoftranscript|><|notimestamps|>`` alone.

    ``begin_suppress``: like the released models, forbid a bare space and
    ``<|endoftext|>`` as the first generated token (``begin_suppress_tokens``).
    ``target_positions``: decoder positions (Whisper's 448 where a runtime assumes them).
    """
    tok = tiny_tokenizer([("Ġ", "a"), ("a", "b"), ("Ġ", "b")])
    ids = {t: tok.convert_tokens_to_ids(t) for t in _special_tokens()}
    eot = ids["<|endoftext|>"]
    sot = ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(tok),
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_source_positions=1500,
        max_target_positions=target_positions,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.eval()
    languages = {} if english_only else {
        "lang_to_id": {f"<|{c}|>": ids[f"<|{c}|>"] for c in TINY_LANGUAGES},
        "task_to_id": {"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
    }  # fmt: skip
    gen = GenerationConfig(
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        is_multilingual=not english_only,
        **languages,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        begin_suppress_tokens=[tok.convert_tokens_to_ids("Ġ"), eot] if begin_suppress else None,
    )
    model.generation_config = gen
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok)
    return model, processor


def save_tiny_whisper(out_dir: str | Path, **kwargs) -> Path:
    """Build a tiny Whisper and save model + processor to ``out_dir`` (a from_pretrained directory)."""
    out_dir = Path(out_dir)
    model, processor = build_tiny_whisper(**kwargs)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


#: Words of the tiny corpus and the tone (Hz) each one is "spoken" as.
TINY_WORDS = {"ab": 440.0, "ba": 660.0, "aab": 880.0, "bb": 1100.0}


def write_tiny_corpus(
    root: str | Path, *, n_train: int = 12, n_dev: int = 4, lang: str = "sa", seed: int = 0
) -> Path:
    """Write 16 kHz WAV clips (one tone per word) and train/dev manifests under ``root``.

    Returns ``root``; manifests are ``root/train.jsonl`` and ``root/dev.jsonl``.
    """
    import numpy as np
    import soundfile as sf

    from data_prep.manifest import Source, Utterance, write_jsonl

    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = list(TINY_WORDS)
    sr = 16000
    for split, n in (("train", n_train), ("dev", n_dev)):
        utts = []
        for i in range(n):
            text = " ".join(rng.choice(words, size=int(rng.integers(1, 4))))
            pieces = []
            for w in text.split():
                t = np.arange(int(0.25 * sr)) / sr
                pieces.append(0.3 * np.sin(2 * np.pi * TINY_WORDS[w] * t))
                pieces.append(np.zeros(int(0.05 * sr)))
            wave = (np.concatenate(pieces) + 0.003 * rng.standard_normal(sum(map(len, pieces)))).astype(np.float32)
            path = root / "audio" / f"{split}{i:03d}.wav"
            sf.write(path, wave, sr)
            utts.append(
                Utterance(
                    id=f"{split}{i:03d}", audio=f"audio/{path.name}", duration=len(wave) / sr, text=text,
                    text_raw=text, language=lang, speaker=f"spk{i % 2}", split=split,
                    source=Source(str(root / f"{split}.tsv"), i + 1),
                )  # fmt: skip
            )
        write_jsonl(root / f"{split}.jsonl", utts)
    return root


def write_tiny_char_vocab(root: str | Path) -> Path:
    """``root/vocab.json``: the character vocabulary of ``root/train.jsonl``, as ``prepare`` writes it.

    CTC systems and joint CTC/attention training read it. Returns its path.
    """
    from data_prep.manifest import read_manifest
    from data_prep.vocab import build_vocab, write_vocab

    path = Path(root) / "vocab.json"
    write_vocab(path, build_vocab(read_manifest(Path(root) / "train.jsonl")))
    return path


def write_same_text_corpus(root: str | Path, text: str, lang: str, *, n: int = 4, dev: bool = False) -> Path:
    """``n`` train clips (a 0.5 s tone each) that all say ``text``; with ``dev``, a dev manifest of the first.

    For tests that need a model to memorise one sentence. Returns ``root``.
    """
    import numpy as np
    import soundfile as sf

    from data_prep.manifest import Source, Utterance, write_jsonl

    root = Path(root)
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    utts = []
    for i in range(n):
        t = np.arange(8000) / 16000
        wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.003 * rng.standard_normal(len(t))).astype(np.float32)
        sf.write(root / f"c{i}.wav", wave, 16000)
        utts.append(Utterance(id=f"c{i}", audio=f"c{i}.wav", duration=0.5, text=text, text_raw=text, language=lang,
                              speaker="s", split="train", source=Source("t.tsv", i + 1)))  # fmt: skip
    write_jsonl(root / "train.jsonl", utts)
    if dev:
        write_jsonl(root / "dev.jsonl", utts[:1])
    return root

"""A new language token survives training, export and a plain transformers reload."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

from pipeline.config import config_from_dict
from pipeline.decode.manifest import decode_file
from pipeline.decode.recognizer import SearchOptions
from pipeline.models.encoder import generate_trimmed, mel_length, uses_trimmed_encoder
from pipeline.models.language import N_TIMESTAMPS, LabelEncoder, LanguageError, setup_language
from pipeline.testing.tiny import build_tiny_whisper, save_tiny_whisper, write_tiny_corpus
from pipeline.train.trainer import Trainer


def test_new_language_token_is_initialised_from_related_language():
    model, processor = build_tiny_whisper()
    gen = model.generation_config
    n = model.get_input_embeddings().weight.shape[0]
    assert setup_language(model, processor, "sa") == gen.lang_to_id["<|sa|>"]  # known: nothing added
    new_id = setup_language(model, processor, "xx", init_from="hi")
    assert new_id == n and len(processor.tokenizer) == n + 1
    emb = model.get_input_embeddings().weight
    assert torch.equal(emb[new_id], emb[gen.lang_to_id["<|hi|>"]])
    assert model.get_output_embeddings().weight.shape[0] == n + 1  # the tied head grew too
    assert gen.lang_to_id["<|xx|>"] == gen.lang_to_id["xx"] == new_id
    assert processor.tokenizer.convert_tokens_to_ids("<|xx|>") == new_id
    with pytest.raises(LanguageError, match="new_language_init_from"):
        setup_language(model, processor, "yy")
    with pytest.raises(LanguageError, match="<|qq|>"):
        setup_language(model, processor, "yy", init_from="qq")


def test_missing_timestamp_tokens_are_filled_before_adding():
    """A tokenizer without Whisper's 1501 timestamp tokens must not hand out a timestamp row."""
    model, processor = build_tiny_whisper()
    n = len(processor.tokenizer)
    cfg = WhisperConfig(**{**model.config.to_dict(), "vocab_size": n + N_TIMESTAMPS})
    big = WhisperForConditionalGeneration(cfg)
    big.generation_config = model.generation_config
    new_id = setup_language(big, processor, "xx", init_from="hi")
    assert new_id == n + N_TIMESTAMPS
    assert processor.tokenizer.convert_ids_to_tokens(n) == "<|0.00|>"
    assert processor.tokenizer.convert_ids_to_tokens(n + N_TIMESTAMPS - 1) == "<|30.00|>"


def test_new_language_survives_training_and_reload(tmp_path):
    torch.set_num_threads(1)
    model_dir = save_tiny_whisper(tmp_path / "model")
    data = write_tiny_corpus(tmp_path / "data", n_train=8, n_dev=2, lang="xx")
    cfg = config_from_dict(
        {
            "data": {"lang": "xx", "manifests_dir": str(data)},
            "model": {"name": str(model_dir), "new_language_init_from": "hi"},
            "train": {"regime": "cached-encoder", "lr": 3e-3, "warmup_steps": 1, "max_steps": 4,
                      "batch_seconds": 4.0, "eval_every": 2, "threads": 1},  # fmt: skip
            "output_dir": str(tmp_path / "exp"),
        }
    )
    Trainer(cfg, progress=False).train()
    best = tmp_path / "exp" / "best"
    assert uses_trimmed_encoder(best)
    assert json.loads((best / "asr_adapt.json").read_text())["language_token"] == "<|xx|>"

    model = WhisperForConditionalGeneration.from_pretrained(best)
    processor = WhisperProcessor.from_pretrained(best)
    xx = processor.tokenizer.convert_tokens_to_ids("<|xx|>")
    assert xx == model.config.vocab_size - 1
    assert model.generation_config.lang_to_id["xx"] == xx
    audio = (0.1 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)
    feats = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    out = model.generate(feats, language="xx", max_new_tokens=3, return_dict_in_generate=True)
    assert out.sequences[0, 1].item() == xx  # <|startoftranscript|> <|xx|> ...
    out = generate_trimmed(model, feats, [mel_length(len(audio))], language="xx", max_new_tokens=3,
                           return_dict_in_generate=True)  # fmt: skip
    assert out.sequences[0, 1].item() == xx
    # Plain transformers' ASR pipeline loads the directory and runs it.
    asr = transformers.pipeline("automatic-speech-recognition", model=str(best))
    result = asr(audio, generate_kwargs={"language": "xx", "max_new_tokens": 3})
    assert isinstance(result["text"], str)


def test_an_english_only_model_gets_whispers_multilingual_prompt_with_the_new_language():
    """An English-only Whisper (whisper-tiny.en) has no language or task token in its prompt; its tokenizer
    still carries them (rows never trained), so <|sa|> is that token, initialised from the named one."""
    model, processor = build_tiny_whisper(english_only=True)
    gen, tok = model.generation_config, processor.tokenizer
    n = model.get_input_embeddings().weight.shape[0]
    with pytest.raises(LanguageError, match="English-only.*new_language_init_from"):
        setup_language(model, processor, "sa")
    with pytest.raises(LanguageError, match=r"<\|qq\|> is not in the English-only model's tokenizer"):
        setup_language(model, processor, "sa", init_from="qq")
    assert not getattr(gen, "lang_to_id", None)  # a refusal changes nothing
    sa = setup_language(model, processor, "sa", init_from="en")
    assert sa == tok.convert_tokens_to_ids("<|sa|>") and model.get_input_embeddings().weight.shape[0] == n
    emb = model.get_input_embeddings().weight
    assert torch.equal(emb[sa], emb[tok.convert_tokens_to_ids("<|en|>")])
    assert gen.lang_to_id == {"<|sa|>": sa, "sa": sa} and gen.is_multilingual
    transcribe = tok.convert_tokens_to_ids("<|transcribe|>")
    assert gen.task_to_id == {"transcribe": transcribe, "translate": tok.convert_tokens_to_ids("<|translate|>")}
    assert LabelEncoder(processor, model, "sa").prefix == [gen.decoder_start_token_id, sa, transcribe,
                                                           gen.no_timestamps_token_id]  # fmt: skip
    assert setup_language(model, processor, "sa", init_from="en") == sa  # known now: nothing added

    # A language the tokenizer lacks is appended, as for a multilingual model
    model, processor = build_tiny_whisper(english_only=True)
    xx = setup_language(model, processor, "xx", init_from="en")
    assert xx == n and len(processor.tokenizer) == n + 1 == model.get_output_embeddings().weight.shape[0]
    assert model.generation_config.lang_to_id == {"<|xx|>": xx, "xx": xx}


def test_an_english_only_model_trains_and_decodes_with_a_new_language(tmp_path):
    torch.set_num_threads(1)
    model_dir = save_tiny_whisper(tmp_path / "model", english_only=True)
    data = write_tiny_corpus(tmp_path / "data", n_train=8, n_dev=2, lang="sa")
    cfg = config_from_dict({
        "data": {"lang": "sa", "manifests_dir": str(data)},
        "model": {"name": str(model_dir), "language": "sa", "new_language_init_from": "en"},
        "train": {"regime": "cached-encoder", "restrict_vocab": True, "lr": 3e-3, "warmup_steps": 1, "max_steps": 3,
                  "batch_seconds": 4.0, "eval_every": 3, "threads": 1},
        "output_dir": str(tmp_path / "exp"),
    })  # fmt: skip
    Trainer(cfg, progress=False).train()
    best = tmp_path / "exp" / "best"
    model = WhisperForConditionalGeneration.from_pretrained(best)
    tok = WhisperProcessor.from_pretrained(best).tokenizer
    sa, transcribe = tok.convert_tokens_to_ids("<|sa|>"), tok.convert_tokens_to_ids("<|transcribe|>")
    gen = model.generation_config
    assert gen.is_multilingual and gen.lang_to_id["sa"] == sa and gen.task_to_id["transcribe"] == transcribe
    assert gen.language == "<|sa|>"  # plain generate() prompts as trained
    # The toolkit's decode runs it, prompted as it was trained
    hyps = tmp_path / "hyps.jsonl"
    result = decode_file(data / "dev.jsonl", best, hyps, SearchOptions(batch_size=2))
    assert len(result.hyps) == 2 and not result.errors
    feats = WhisperProcessor.from_pretrained(best).feature_extractor(
        np.zeros(16000, dtype=np.float32), sampling_rate=16000, return_tensors="pt").input_features
    out = model.generate(feats, max_new_tokens=2, return_dict_in_generate=True)
    assert out.sequences[0, :4].tolist() == [gen.decoder_start_token_id, sa, transcribe, gen.no_timestamps_token_id]

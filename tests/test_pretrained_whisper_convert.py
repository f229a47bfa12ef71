"""Round trip: tiny random transformers Whisper -> CTranslate2's own converter -> our reader/converter.

The state dict must come back unchanged (up to the float16 rounding CT2 applied)
and greedy decoding must give the same tokens as ctranslate2.models.Whisper.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ctranslate2 = pytest.importorskip("ctranslate2")
transformers = pytest.importorskip("transformers")

from pipeline.pretrained.ct2_reader import read_ct2_dir  # noqa: E402
from pipeline.pretrained.whisper_convert import build_whisper, convert_ct2_whisper  # noqa: E402

SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|hi|>",
    "<|sa|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]
N_TIMESTAMPS = 12  # the model has more outputs than the tokenizer: these ids are timestamps


def _tiny_tokenizer():
    """A byte-level BPE Whisper tokenizer: 256 byte tokens, a few merges, Whisper's control tokens."""
    from tokenizers import pre_tokenizers
    from transformers import WhisperTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = WhisperTokenizerFast(vocab=vocab, merges=merges)
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    assert tok.convert_tokens_to_ids("<|endoftext|>") == len(vocab)
    return tok


def make_tiny_whisper(out):
    """Save a tiny random WhisperForConditionalGeneration with tokenizer and generation config in ``out``."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    tok = _tiny_tokenizer()
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(tok) + N_TIMESTAMPS,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=64,
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        # Large weights make the random logits decisive, so greedy ties cannot flip between engines.
        init_std=0.3,
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # random, non-zero biases and norms so every tensor is exercised
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        suppress_tokens=[5, 7, ids["<|startoflm|>"]],
        begin_suppress_tokens=[220 if 220 < len(tok) else 0, eot],
        lang_to_id={t: ids[t] for t in ("<|en|>", "<|hi|>", "<|sa|>")},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        is_multilingual=True,
        alignment_heads=[[1, 0], [1, 2]],
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_tiny_ct2(hf_dir, out, quantization="float16"):
    """Convert a saved transformers Whisper with CTranslate2's own converter (as the PyPI packages were made)."""
    converter = ctranslate2.converters.TransformersConverter(str(hf_dir), copy_files=["tokenizer.json"])
    converter.convert(str(out), quantization=quantization, force=True)
    return out


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    return make_tiny_whisper(tmp_path_factory.mktemp("tiny_hf"))


_ct2_convert = make_tiny_ct2


@pytest.fixture(scope="module")
def original(hf_dir):
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(hf_dir, dtype=torch.float32).eval()


@pytest.mark.parametrize("quantization", ["float32", "float16", "bfloat16", "int8"])
def test_state_dict_round_trip(hf_dir, original, tmp_path, quantization):
    ct2_dir = _ct2_convert(hf_dir, tmp_path / "ct2", quantization)
    ct2 = read_ct2_dir(ct2_dir)
    model, processor, gen = build_whisper(ct2, ct2_dir)
    ours = model.state_dict()
    theirs = original.state_dict()
    assert set(ours) == set(theirs)
    for name, ref in theirs.items():
        got = ours[name]
        assert got.shape == ref.shape, name
        if quantization == "float32":
            torch.testing.assert_close(got, ref, rtol=0, atol=0, msg=name)
        elif quantization == "float16":
            torch.testing.assert_close(got, ref.half().float(), rtol=0, atol=0, msg=name)
        elif quantization == "bfloat16":
            torch.testing.assert_close(got, ref.bfloat16().float(), rtol=0, atol=0, msg=name)
        elif ref.ndim > 1:  # int8 matrices: per-row scale, error at most half a quantization step
            step = ref.reshape(ref.shape[0], -1).abs().amax(dim=1) / 127
            err = (got - ref).reshape(ref.shape[0], -1).abs().amax(dim=1)
            assert bool((err <= step * 0.5 * (1 + 1e-5) + 1e-7).all()), name
        else:  # biases and norms stay float32
            torch.testing.assert_close(got, ref, rtol=0, atol=0, msg=name)
    # Config inferred from shapes equals the original one.
    for field in ("vocab_size", "num_mel_bins", "d_model", "encoder_layers", "decoder_layers",
                  "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim",
                  "max_source_positions", "max_target_positions", "activation_function", "scale_embedding"):
        assert getattr(model.config, field) == getattr(original.config, field), field
    # Tokenizer completed with timestamp tokens, generation config from CT2's config.json.
    assert len(processor.tokenizer) == original.config.vocab_size
    assert processor.tokenizer.convert_tokens_to_ids("<|0.00|>") == original.config.vocab_size - N_TIMESTAMPS
    assert gen.suppress_tokens == original.generation_config.suppress_tokens
    assert gen.begin_suppress_tokens == original.generation_config.begin_suppress_tokens
    assert gen.lang_to_id == original.generation_config.lang_to_id
    assert gen.task_to_id == original.generation_config.task_to_id
    assert gen.alignment_heads == original.generation_config.alignment_heads
    assert gen.is_multilingual is True
    assert model.config.suppress_tokens is None and model.config.begin_suppress_tokens is None


def _test_audio() -> list[np.ndarray]:
    try:
        from data_prep.synth import synthesize

        return [synthesize("the cat sat on the mat"), synthesize("one two three four", voice="en+f3")]
    except Exception:  # noqa: BLE001 - espeak missing: any non-trivial signal will do
        rng = np.random.default_rng(0)
        t = np.arange(32000) / 16000
        return [np.sin(2 * np.pi * 220 * t).astype(np.float32), rng.normal(0, 0.1, 24000).astype(np.float32)]


@pytest.mark.parametrize("quantization", ["float32", "float16"])
def test_greedy_tokens_match_ctranslate2(hf_dir, tmp_path, quantization):
    torch.set_num_threads(1)
    ct2_dir = _ct2_convert(hf_dir, tmp_path / "ct2", quantization)
    out = convert_ct2_whisper(ct2_dir, tmp_path / "hf")
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    processor = WhisperProcessor.from_pretrained(out)
    gen = model.generation_config
    prompt = [gen.decoder_start_token_id, gen.lang_to_id["<|en|>"], gen.task_to_id["transcribe"],
              gen.no_timestamps_token_id]
    n_new = 20
    ct = ctranslate2.models.Whisper(str(ct2_dir), compute_type="float32", intra_threads=1)
    for audio in _test_audio():
        feats = processor.feature_extractor([audio], sampling_rate=16000, return_tensors="np").input_features
        ref = ct.generate(ctranslate2.StorageView.from_array(feats), [prompt], beam_size=1,
                          max_length=2 * (len(prompt) + n_new), return_logits_vocab=True)[0]
        ref_ids = ref.sequences_ids[0]
        with torch.inference_mode():
            ids = model.generate(torch.from_numpy(feats), language="en", task="transcribe", max_length=n_new)[0].tolist()
            logits = model(input_features=torch.from_numpy(feats), decoder_input_ids=torch.tensor([prompt])).logits
        if ids[: len(prompt)] == prompt:  # generate() may echo the prompt
            ids = ids[len(prompt) :]
        if gen.eos_token_id in ids:
            ids = ids[: ids.index(gen.eos_token_id)]
        # The engines count the length limit differently: compare what both produced,
        # and where ours stopped by itself the reference must have stopped there too.
        n = min(len(ids), len(ref_ids))
        assert n >= 8, "too few tokens to compare"
        assert ids[:n] == ref_ids[:n]
        if len(ids) < n_new:
            assert len(ref_ids) == len(ids)
        first = np.asarray(ref.logits[0][0], dtype=np.float32)
        # CT2 returns the processed scores: compare where it did not suppress.
        keep = np.isfinite(first) & (first > -1e9)
        np.testing.assert_allclose(logits[0, -1].numpy()[keep], first[keep], atol=1e-3)

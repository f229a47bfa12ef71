"""A new decoder vocabulary (``model.vocabulary: bpe``): tokenizer, embeddings, ids, training, export."""

from __future__ import annotations

import json
import os
import random
import unicodedata

import pytest
import soundfile as sf
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from data_prep.outputs import ResumeError  # noqa: E402
from pipeline.config import ConfigError, config_from_dict  # noqa: E402
from pipeline.models.language import LabelEncoder  # noqa: E402
from pipeline.testing.tiny import (  # noqa: E402
    TINY_LANGUAGES,
    build_tiny_whisper,
    save_tiny_whisper,
    write_same_text_corpus,
)
from pipeline.train.new_vocab import (  # noqa: E402
    VocabularyError,
    adopt_vocabulary,
    mean_tokens,
    train_bpe,
)
from pipeline.train.trainer import Trainer  # noqa: E402

#: Sanskrit sentences (NFC): conjuncts with virama, vowel signs, anusvara, visarga, avagraha-free.
SENTENCES = [
    "धर्मक्षेत्रे कुरुक्षेत्रे समवेता युयुत्सवः",
    "मामकाः पाण्डवाश्चैव किमकुर्वत सञ्जय",
    "संस्कृतं देवभाषा इति कथ्यते",
    "अहं प्रतिदिनं विद्यालयं गच्छामि",
    "रामः वनं गच्छति सीता च अनुगच्छति",
    "वृक्षस्य उपरि खगाः कूजन्ति",
    "सत्यमेव जयते नानृतम्",
    "विद्या ददाति विनयं विनयाद् याति पात्रताम्",
]
WORDS = sorted({w for s in SENTENCES for w in s.split()})
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{c}|>" for c in TINY_LANGUAGES),
            "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
            "<|notimestamps|>"]  # fmt: skip


def corpus(n: int = 150, seed: int = 0) -> list[str]:
    """``n`` train texts: random 3-8 word sequences of :data:`WORDS`, with a leading space."""
    rng = random.Random(seed)
    return [" " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) for _ in range(n)]


@pytest.fixture(scope="module")
def moved():
    """(old model, old tokenizer, new model, new processor) for a tiny Whisper moved onto a BPE."""
    old_model, old_processor = build_tiny_whisper(begin_suppress=True)
    model, processor = build_tiny_whisper(begin_suppress=True)
    new = train_bpe(corpus(), 400, processor.tokenizer)
    adopt_vocabulary(model, processor, new)
    return old_model, old_processor.tokenizer, model, processor


def test_texts_are_nfc():
    assert all(unicodedata.normalize("NFC", s) == s for s in SENTENCES)


def test_bpe_needs_fewer_tokens_and_round_trips(moved):
    _, old, _, processor = moved
    new = processor.tokenizer
    held_out = [" " + s for s in SENTENCES]  # whole sentences, never seen as such
    assert mean_tokens(new, held_out) < 0.5 * mean_tokens(old, held_out)
    for text in held_out + corpus(20, seed=1):
        ids = new(text, add_special_tokens=False).input_ids
        assert new.decode(ids) == text
        assert all(i < len(new) - len(SPECIALS) for i in ids)  # text pieces only
    # Deterministic: the same texts give the same vocabulary (a resumed run relies on it).
    again = train_bpe(corpus(), 400, old)
    assert again.get_vocab() == new.get_vocab()


def test_special_tokens_follow_the_text_tokens_in_whispers_order(moved):
    _, old, model, processor = moved
    new = processor.tokenizer
    ids = new.convert_tokens_to_ids(SPECIALS)
    base = len(new) - len(SPECIALS)
    assert ids == list(range(base, len(new)))  # contiguous, last, in Whisper's order
    assert new.convert_ids_to_tokens(base - 1) not in SPECIALS
    assert set(ids) <= set(new.all_special_ids)  # transformers' ASR pipeline strips these
    labels, prefix = LabelEncoder(processor, model, "sa")(SENTENCES[0])
    assert labels[:prefix] == new.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|sa|>", "<|transcribe|>", "<|notimestamps|>"]
    )
    assert labels[-1] == new.convert_tokens_to_ids("<|endoftext|>")
    assert new.decode(labels, skip_special_tokens=True).strip() == SENTENCES[0]
    assert "<|" in new.decode(labels)


def test_embeddings_are_the_mean_of_the_old_pieces(moved):
    old_model, old, model, processor = moved
    new = processor.tokenizer
    old_emb = old_model.get_input_embeddings().weight
    emb = model.get_input_embeddings().weight
    assert emb.shape == (len(new), old_emb.shape[1])
    assert model.get_output_embeddings().weight is emb  # still tied
    # A merged token made of whole characters: its old pieces are what the old tokenizer makes of its text.
    # (GPT-2's pre-tokenizer splits " गच्छति" before the virama and the vowel sign: " गच" "्" "छत" "ि".)
    new_id = new(" गच्छति", add_special_tokens=False).input_ids[0]
    assert new.decode([new_id]) == " गच"
    old_ids = old(" गच", add_special_tokens=False).input_ids
    assert len(old_ids) > 1
    torch.testing.assert_close(emb[new_id], old_emb[old_ids].mean(dim=0))
    assert not torch.equal(emb[new_id], old_emb[old_ids[0]])
    # A single byte piece is its old row; a special token keeps its old row.
    byte = new.convert_tokens_to_ids("Ġ")
    assert torch.equal(emb[byte], old_emb[old.convert_tokens_to_ids("Ġ")])
    for tok in ("<|sa|>", "<|notimestamps|>", "<|endoftext|>"):
        assert torch.equal(emb[new.convert_tokens_to_ids(tok)], old_emb[old.convert_tokens_to_ids(tok)])
    assert model.model.decoder.embed_tokens.padding_idx == new.convert_tokens_to_ids("<|endoftext|>")


def test_generation_config_points_at_the_new_tokens(moved):
    _, _, model, processor = moved
    new = processor.tokenizer
    gen, cfg = model.generation_config, model.config
    eot, sot = new.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>"])
    assert gen.decoder_start_token_id == cfg.decoder_start_token_id == sot
    assert gen.eos_token_id == gen.pad_token_id == cfg.eos_token_id == cfg.pad_token_id == eot
    assert gen.no_timestamps_token_id == new.convert_tokens_to_ids("<|notimestamps|>")
    assert gen.prev_sot_token_id == new.convert_tokens_to_ids("<|startofprev|>")
    assert gen.lang_to_id == {f"<|{c}|>": new.convert_tokens_to_ids(f"<|{c}|>") for c in TINY_LANGUAGES}
    assert gen.task_to_id == {"translate": new.convert_tokens_to_ids("<|translate|>"),
                              "transcribe": new.convert_tokens_to_ids("<|transcribe|>")}  # fmt: skip
    assert gen.begin_suppress_tokens == [new.convert_tokens_to_ids("Ġ"), eot]
    assert cfg.vocab_size == len(new)


def test_config_values():
    base = {"data": {"lang": "sa", "manifests_dir": "d"}, "output_dir": "o"}
    cfg = config_from_dict({**base, "model": {"vocabulary": "bpe"}})
    assert cfg.model.vocabulary == "bpe" and cfg.model.vocabulary_size == 0
    for model, match in [
        ({"vocabulary": "sentencepiece"}, "whisper or bpe"),
        ({"vocabulary": "bpe", "vocabulary_size": 256}, ">= 300"),
        ({"vocabulary_size": 500}, "bpe only"),
        ({"type": "ctc", "vocabulary": "bpe"}, "model.type whisper"),
    ]:
        with pytest.raises(ConfigError, match=match):
            config_from_dict({**base, "model": model})
    with pytest.raises(VocabularyError, match="no train text"):
        train_bpe([], 400, build_tiny_whisper()[1].tokenizer)


# ---------------------------------------------------------------------------------- training


TEXT = SENTENCES[4]


def write_corpus(root, n: int = 4):
    """``n`` train clips (a tone each) that all say :data:`TEXT`, and a dev manifest of one of them."""
    return write_same_text_corpus(root, TEXT, "sa", n=n, dev=True)


def make_cfg(model_dir, data, out, **train):
    t = {"regime": "full", "trimmed_encoder": False, "lr": 3e-3, "warmup_steps": 2, "max_steps": 60,
         "batch_seconds": 4.0, "eval_every": 30, "log_every": 1, "threads": 1, **train}  # fmt: skip
    return config_from_dict(
        {
            "data": {"lang": "sa", "manifests_dir": str(data)},
            "model": {"name": str(model_dir), "vocabulary": "bpe", "vocabulary_size": 300},
            "train": t,
            "augment": {"speed_perturb": [1.0]},
            "decode": {"batch_size": 2},
            "output_dir": str(out),
        }
    )


def test_memorized_sentence_decodes_from_the_export(tmp_path):
    """Train on the new vocabulary; best/ decodes the sentence with our decode and with transformers' pipeline."""
    import transformers
    from transformers import WhisperTokenizer

    from pipeline.cli import main
    from pipeline.decode.hyps import read_hyps

    torch.set_num_threads(1)
    model_dir = save_tiny_whisper(tmp_path / "model", begin_suppress=True)
    data = write_corpus(tmp_path / "data")
    out = tmp_path / "exp"
    tr = Trainer(make_cfg(model_dir, data, out, restrict_vocab=True), progress=False)
    tr.setup()
    n_text = len(tr.processor.tokenizer) - len(SPECIALS)
    assert n_text < 300  # one sentence saturates the merges
    assert max(tr.train_ex[0].labels[4:-1]) < n_text  # labels are new text tokens
    assert len(tr.train_ex[0].labels) < 0.5 * len(old_labels(model_dir))
    tr.train()

    best = out / "best"
    info = json.loads((best / "asr_adapt.json").read_text())
    assert info["vocabulary"] == "bpe" and info["vocabulary_text_tokens"] == n_text
    assert (
        WhisperTokenizer.from_pretrained(best).get_vocab()
        == WhisperTokenizer.from_pretrained(out / "vocab").get_vocab()
    )
    assert transformers.AutoConfig.from_pretrained(best).vocab_size == n_text + len(SPECIALS)
    vocab_info = json.loads((out / "vocab" / "vocab_info.json").read_text())
    assert (
        vocab_info["tokens_per_train_text"] == len(tr.train_ex[0].labels) - 5
    )  # minus the 4 prompt tokens, eot
    assert vocab_info["tokens_per_train_text"] < 0.5 * vocab_info["old_tokens_per_train_text"]

    hyps = tmp_path / "hyps.jsonl"
    assert (
        main(["decode", "--model", str(best), "--manifest", str(data / "dev.jsonl"), "--out", str(hyps)]) == 0
    )
    assert [h.text for h in read_hyps(hyps)] == [TEXT]

    wave, _ = sf.read(data / "c0.wav", dtype="float32")
    asr = transformers.pipeline("automatic-speech-recognition", model=str(best))
    result = asr(wave, generate_kwargs={"language": "sa", "task": "transcribe", "max_new_tokens": 60})
    assert result["text"].strip() == TEXT


def old_labels(model_dir):
    """:data:`TEXT`'s label sequence under the model's own (old) tokenizer."""
    from pipeline.models.whisper import load_whisper

    model, processor = load_whisper(model_dir)
    return LabelEncoder(processor, model, "sa")(TEXT)[0]


def test_resume_reuses_the_vocabulary_exactly(tmp_path):
    """Killed after a checkpoint and resumed, a bpe run ends like an uninterrupted one (frozen new embeddings)."""
    from pipeline.train.checkpoint import list_checkpoints

    torch.set_num_threads(1)
    model_dir = save_tiny_whisper(tmp_path / "model", begin_suppress=True)
    data = write_corpus(tmp_path / "data")
    # Frozen token embeddings are not in the checkpoint: the resumed run must rebuild them identically.
    train = {"regime": "cached-encoder", "trimmed_encoder": True, "encoder_trainable_top_layers": 1,
             "freeze_token_embeddings": True, "max_steps": 7, "eval_every": 0, "checkpoint_every": 3,
             "keep_checkpoints": 1, "batch_seconds": 1.0}  # fmt: skip
    a = Trainer(make_cfg(model_dir, data, tmp_path / "a", **train), progress=False)
    a.train()
    b1 = Trainer(make_cfg(model_dir, data, tmp_path / "b", **train), progress=False)
    assert b1.train(until_step=5)["interrupted"]
    assert [s for s, _ in list_checkpoints(tmp_path / "b" / "checkpoints")] == [3]
    stamp = (tmp_path / "b" / "vocab" / "tokenizer.json").stat().st_mtime_ns
    b2 = Trainer(make_cfg(model_dir, data, tmp_path / "b", **train), progress=False)
    b2.train()
    assert (tmp_path / "b" / "vocab" / "tokenizer.json").stat().st_mtime_ns == stamp  # reused, not relearnt
    pa = dict(a.unwrapped.model.named_parameters())
    pb = dict(b2.unwrapped.model.named_parameters())
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), k
    log_a = [json.loads(x)["train_loss"] for x in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x)["train_loss"] for x in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert log_a == log_b

    # Another vocabulary size under the same output_dir would not fit the checkpoints: the run's identity
    # refuses it before the vocabulary is touched.
    other = make_cfg(model_dir, data, tmp_path / "b", **train)
    other.model.vocabulary_size = 1000
    with pytest.raises(ResumeError, match=r"setting model.vocabulary_size \(300 -> 1000\)"):
        Trainer(other, progress=False).setup()
    assert (tmp_path / "b" / "vocab" / "tokenizer.json").stat().st_mtime_ns == stamp


# ---------------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_whisper_base_moves_onto_a_devanagari_bpe(tmp_path):
    """The bundled whisper-base: fewer tokens, Whisper's layout incl. timestamps, reload as a plain directory."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from pipeline.models.whisper import load_whisper

    model, processor = load_whisper("whisper-base")
    old = processor.tokenizer
    old_ids = {
        t: old.convert_tokens_to_ids(t) for t in ("<|notimestamps|>", "<|0.00|>", "<|30.00|>", "<|sa|>")
    }
    assert old_ids["<|0.00|>"] == old_ids["<|notimestamps|>"] + 1
    texts = corpus()
    new = train_bpe(texts, 1000, old)
    held_out = [" " + s for s in SENTENCES]
    assert mean_tokens(new, held_out) < 0.7 * mean_tokens(old, held_out)
    adopt_vocabulary(model, processor, new)
    gen = model.generation_config
    assert new.convert_tokens_to_ids("<|0.00|>") == gen.no_timestamps_token_id + 1
    assert new.convert_tokens_to_ids("<|30.00|>") == len(new) - 1 == model.config.vocab_size - 1
    assert gen.lang_to_id["<|sa|>"] == new.convert_tokens_to_ids("<|sa|>")
    assert gen.suppress_tokens and max(gen.suppress_tokens) < len(new)
    assert new.decode(new(held_out[0], add_special_tokens=False).input_ids) == held_out[0]
    model.save_pretrained(tmp_path / "m")
    processor.save_pretrained(tmp_path / "m")
    again = WhisperForConditionalGeneration.from_pretrained(tmp_path / "m")
    assert torch.equal(again.get_input_embeddings().weight, model.get_input_embeddings().weight)
    assert WhisperProcessor.from_pretrained(tmp_path / "m").tokenizer.get_vocab() == new.get_vocab()


def test_vocab_bench_tokens_reports_lengths(tmp_path):
    from benchmarks.vocab import tokens

    model_dir = save_tiny_whisper(tmp_path / "model")
    data = write_corpus(tmp_path / "data")
    base, floor, bpe = tokens(data / "train.jsonl", [300], str(model_dir))
    assert floor["tokens_per_text"] <= bpe["tokens_per_text"] < 0.5 * base["tokens_per_text"]
    assert bpe["text_tokens"] < 300  # one sentence saturates the merges

"""A plain transformers CTC folder (``save_pretrained`` of a ``...ForCTC`` and its processor) wherever a CTC
checkpoint is accepted: loading, ``decode``, the longform aligner."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import soundfile as sf
import torch
from align_fixtures import tone_recording
from ctc_fixtures import PITCHES, SR, TEXTS, tone_audio

from data_prep.manifest import read_manifest
from pipeline.cli import main as cli
from pipeline.decode.ctc import ctc_logits, load_ctc_acoustics
from pipeline.decode.hyps import read_hyps
from pipeline.models.ctc_checkpoint import is_ctc_checkpoint, load_ctc_model
from pipeline.models.ctc_vocab import VocabError
from pipeline.testing.tiny import write_tiny_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CHARS = sorted(PITCHES)


@pytest.fixture(autouse=True)
def _quiet():
    logging.getLogger("transformers").setLevel(logging.ERROR)


def _conv(norm: str) -> dict:
    """A tiny feature encoder with the usual 320-sample stride (20 ms frames)."""
    return dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                conv_dim=(8,) * 7, conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_kernel=(10, 3, 3, 3, 3, 2, 2),
                feat_extract_norm=norm, do_stable_layer_norm=norm == "layer", num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2, mask_time_prob=0.0, pad_token_id=0)  # fmt: skip


def write_folder(root, kind: str = "wav2vec2", *, special=("<pad>", "<unk>", "|"), chars=CHARS,
                 do_normalize: bool = True):  # fmt: skip
    """What a fine-tuning script leaves: the model's and its processor's ``save_pretrained``.

    ``wav2vec2``: wav2vec2-base's layout (group norm, no attention mask), a head over the tokenizer's full
    length (``<s>``, ``</s>`` added after vocab.json) and the processor's one ``processor_config.json``;
    ``hubert``: layer norm with an attention mask, a head over vocab.json only, tokenizer and feature
    extractor saved one by one (``preprocessor_config.json``).
    """
    from transformers import (
        HubertConfig,
        HubertForCTC,
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    root.mkdir(parents=True)
    vocab_file = root.parent / f"{root.name}-vocab.json"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate([*special, *chars])}))
    pad, unk, word = special
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file), pad_token=pad, unk_token=unk, word_delimiter_token=word)
    torch.manual_seed(0)
    if kind == "wav2vec2":
        model = Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=len(tokenizer), **_conv("group")))
        fe = Wav2Vec2FeatureExtractor(do_normalize=do_normalize, return_attention_mask=False)
        Wav2Vec2Processor(feature_extractor=fe, tokenizer=tokenizer).save_pretrained(str(root))
    else:
        model = HubertForCTC(HubertConfig(vocab_size=len(special) + len(chars), **_conv("layer")))
        fe = Wav2Vec2FeatureExtractor(do_normalize=do_normalize, return_attention_mask=True)
        tokenizer.save_pretrained(str(root))
        fe.save_pretrained(str(root))
    model.save_pretrained(str(root))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("hf") / "w2v")


@pytest.mark.parametrize("kind,do_normalize", [("wav2vec2", True), ("hubert", False)])
def test_log_probs_are_the_models_own(tmp_path, kind, do_normalize):
    """Our path gives what the model gives on its own feature extractor's input."""
    from transformers import AutoFeatureExtractor, AutoModelForCTC

    root = write_folder(tmp_path / kind, kind, do_normalize=do_normalize)
    assert is_ctc_checkpoint(root)
    net, voc, fe = load_ctc_acoustics(root)
    assert not net.training and voc.blank == 0 and voc.word == 2 and len(voc) == net.config.vocab_size
    wave = tone_audio("ab cd") + 0.2  # an offset normalization removes
    logp, lengths = ctc_logits(net, [wave], fe)
    ref_model = AutoModelForCTC.from_pretrained(str(root)).eval()
    inputs = AutoFeatureExtractor.from_pretrained(str(root))(wave, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        ref = ref_model(**inputs).logits.log_softmax(-1)
    assert logp.shape == ref.shape and int(lengths[0]) == ref.shape[1]
    torch.testing.assert_close(logp, ref, atol=1e-5, rtol=1e-5)


def test_head_over_the_tokenizer_takes_its_added_tokens(folder):
    _, voc = load_ctc_model(folder)
    assert voc.tokens == ["<pad>", "<unk>", "|", *CHARS, "<s>", "</s>"]
    assert voc.ids_to_text(voc.collapse([3, 0, 2, 4, 7, 8])) == "a b"


def test_decode_writes_one_hypothesis_per_utterance(folder, tmp_path):
    data = write_tiny_corpus(tmp_path / "data", n_train=1, n_dev=3)
    out = tmp_path / "hyps.jsonl"
    assert cli(["decode", "--model", str(folder), "--manifest", str(data / "dev.jsonl"), "--out", str(out)]) == 0
    hyps = read_hyps(out)
    assert [h.id for h in hyps] == [u.id for u in read_manifest(data / "dev.jsonl")]
    assert all(set(h.text) <= {*CHARS, " "} for h in hyps)


def test_longform_prepare_aligns_with_the_folder(folder, tmp_path, capsys):
    root = tmp_path / "corpus" / "s1"
    root.mkdir(parents=True)
    wave, _ = tone_recording(TEXTS[:3], pause_s=0.5)
    sf.write(root / "talk.wav", wave, SR)
    (root / "talk.txt").write_text("\n".join(TEXTS[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["prepare", "--format", "longform", "--src", str(tmp_path / "corpus"), "--align-model", str(folder),
            "--lang", "en", "--out", str(out), "--split-ratios", "1,0,0", "--no-progress", "--vad", "energy",
            "--trim-vad", "none", "--min-align-score", "-1000"]  # fmt: skip
    assert cli(args) == 0, capsys.readouterr().err
    utts = read_manifest(out / "manifest.jsonl")
    assert utts and " ".join(u.text for u in utts) == " ".join(TEXTS[:3])


def test_renamed_special_tokens_are_honoured(tmp_path):
    root = write_folder(tmp_path / "renamed", special=("[PAD]", "[UNK]", "_"))
    _, voc = load_ctc_model(root)
    assert (voc.blank, voc.unk, voc.word) == (0, 1, 2)
    assert voc.encode("a b") == [3, 2, 4] and voc.ids_to_text([3, 2, 4, 1]) == "a b"


def test_capitals_only_vocabulary_is_read_in_lower_case(tmp_path):
    _, voc = load_ctc_model(write_folder(tmp_path / "upper", chars=[c.upper() for c in CHARS]))
    assert voc.encode("ab") == [3, 4] and voc.ids_to_text([3, 2, 4]) == "a b"


def test_multilingual_vocabulary_is_one_line_naming_the_file(folder, tmp_path, capsys):
    root = tmp_path / "mms"
    shutil.copytree(folder, root)
    single = json.loads((root / "vocab.json").read_text())
    (root / "vocab.json").write_text(json.dumps({"eng": single, "fra": single}))
    with pytest.raises(VocabError, match="vocab.json: one vocabulary per language"):
        load_ctc_model(root)
    data = write_tiny_corpus(tmp_path / "data", n_train=1, n_dev=1)
    out = tmp_path / "hyps.jsonl"
    assert cli(["decode", "--model", str(root), "--manifest", str(data / "dev.jsonl"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(root / "vocab.json") in err and not out.exists()


def test_a_folder_without_a_ctc_head_is_still_refused(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    root = tmp_path / "base"
    Wav2Vec2Model(Wav2Vec2Config(**_conv("group"))).save_pretrained(str(root))
    (root / "vocab.json").write_text(json.dumps({"<pad>": 0}))
    assert not is_ctc_checkpoint(root)
    with pytest.raises(FileNotFoundError, match="not a CTC checkpoint"):
        load_ctc_model(root)

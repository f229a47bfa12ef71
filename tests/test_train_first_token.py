"""Label sequences start with a token the decoder may produce first (no U+FFFD first character).

Whisper's generate() suppresses a bare space as the first token. In scripts whose
bytes the BPE never merged with a space (Gurmukhi here), " " + text tokenizes to a
bare space first: a model trained on that is forced off its learned path at the
first step and starts with a stray continuation byte.
"""

from __future__ import annotations

import os

import pytest
import soundfile as sf
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.config import config_from_dict  # noqa: E402
from pipeline.models.language import LabelEncoder  # noqa: E402
from pipeline.testing.tiny import build_tiny_whisper, save_tiny_whisper, write_same_text_corpus  # noqa: E402
from pipeline.train.trainer import Trainer  # noqa: E402

TEXT = "ਅੱਜ ਚਾਰ"


def test_labels_skip_a_leading_space_the_decoder_suppresses():
    model, processor = build_tiny_whisper(begin_suppress=True)
    tok = processor.tokenizer
    space = tok.convert_tokens_to_ids("Ġ")
    assert space in model.generation_config.begin_suppress_tokens
    assert tok(" " + TEXT, add_special_tokens=False).input_ids[0] == space  # the trap

    enc = LabelEncoder(processor, model, "pa")
    labels, prefix = enc(TEXT)
    first = labels[prefix]
    assert first not in model.generation_config.begin_suppress_tokens
    assert tok.decode(labels[prefix:-1]) == TEXT
    # Where the space merges into the first word's piece (Latin script), the space is kept.
    assert enc.text_ids("ab ba") == tok(" ab ba", add_special_tokens=False).input_ids
    assert tok.convert_ids_to_tokens(enc.text_ids("ab ba"))[0] == "Ġa"
    # A model that does not suppress the bare space keeps Whisper's leading-space form.
    plain_model, plain_processor = build_tiny_whisper()
    plain = LabelEncoder(plain_processor, plain_model, "pa")
    assert plain.text_ids(TEXT) == tok(" " + TEXT, add_special_tokens=False).input_ids


def write_corpus(root, n: int = 4):
    """``n`` clips (a tone each) that all say :data:`TEXT`; train manifest only."""
    return write_same_text_corpus(root, TEXT, "pa", n=n)


@pytest.mark.parametrize("restrict_vocab", [True, False], ids=["restricted", "full-vocab"])
def test_memorized_gurmukhi_decodes_with_its_first_character(tmp_path, restrict_vocab):
    from pipeline.decode.whisper import transcribe_arrays
    from pipeline.models.whisper import load_whisper

    torch.set_num_threads(1)
    model_dir = save_tiny_whisper(tmp_path / "model", begin_suppress=True)
    data = write_corpus(tmp_path / "data")
    cfg = config_from_dict(
        {
            "data": {"lang": "pa", "manifests_dir": str(data)},
            "model": {"name": str(model_dir)},
            "train": {"regime": "full", "lr": 3e-3, "warmup_steps": 2, "max_steps": 80, "batch_seconds": 4.0,
                      "restrict_vocab": restrict_vocab, "threads": 1},  # fmt: skip
            "augment": {"speed_perturb": [1.0]},
            "output_dir": str(tmp_path / "exp"),
        }
    )
    Trainer(cfg, progress=False).train()
    model, processor = load_whisper(tmp_path / "exp" / "best")
    wave, _ = sf.read(data / "c0.wav", dtype="float32")
    [text] = transcribe_arrays(model, processor, [wave], language="pa", progress=False)
    assert "\ufffd" not in text
    assert text == TEXT

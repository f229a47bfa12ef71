"""A model soup: the weight average of models trained from one start, usable like any of them."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from data_prep.outputs import OutputRefused
from pipeline.config import config_from_dict
from pipeline.testing.tiny import save_tiny_whisper, write_tiny_char_vocab, write_tiny_corpus
from pipeline.train.soup import SoupError, make_soup
from pipeline.train.trainer import Trainer


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Two joint-CTC decoders trained from one tiny Whisper with seeds 0 and 1."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("soup")
    model_dir = save_tiny_whisper(root / "model")
    data = write_tiny_corpus(root / "data", n_train=10, n_dev=2)
    write_tiny_char_vocab(data)
    bests = []
    for seed in (0, 1):
        cfg = config_from_dict({
            "data": {"lang": "sa", "manifests_dir": str(data)},
            "model": {"name": str(model_dir)},
            "train": {"regime": "cached-encoder", "encoder_trainable_top_layers": 1, "restrict_vocab": True,
                      "ctc_weight": 0.3, "lr": 3e-3, "warmup_steps": 1, "max_steps": 4, "batch_seconds": 4.0,
                      "eval_every": 0, "threads": 1, "seed": seed},
            "decode": {"batch_size": 4},
            "output_dir": str(root / f"exp{seed}"),
        })  # fmt: skip
        Trainer(cfg, progress=False).train()
        bests.append(root / f"exp{seed}" / "best")
    return bests, data


def test_the_soup_is_the_mean_of_the_weights_and_decodes_like_its_models(two_seeds, tmp_path):
    from pipeline.decode.whisper import transcribe_arrays
    from pipeline.models.ctc_checkpoint import load_ctc_model
    from pipeline.models.whisper import load_whisper

    (a, b), data = two_seeds
    out = make_soup([a, b], tmp_path / "soup")
    for name in ("model.safetensors", "ctc/model.safetensors"):  # the joint CTC checkpoint is averaged too
        wa, wb, ws = (load_file(str(d / name)) for d in (a, b, out))
        assert ws.keys() == wa.keys()
        differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
        assert differ  # the two seeds trained apart
        for k in wa:
            torch.testing.assert_close(ws[k], ((wa[k].float() + wb[k].float()) / 2).to(wa[k].dtype))
    adapt = json.loads((out / "asr_adapt.json").read_text())
    assert adapt["soup_of"] == [str(a), str(b)]
    assert "dev_cer" not in adapt and "step" not in adapt  # one run's figures are not the soup's
    assert adapt["encoder_input"] == "trimmed" and adapt["language"] == "sa"
    # Everything else is the first model's: same tokenizer, generation config (restricted softmax).
    assert (out / "generation_config.json").read_bytes() == (a / "generation_config.json").read_bytes()

    model, processor = load_whisper(str(out))
    audio = (0.1 * np.sin(np.arange(16000) / 5.0)).astype(np.float32)
    (text,) = transcribe_arrays(model, processor, [audio], language=None, batch_size=1, progress=False)
    assert isinstance(text, str)
    ctc_model, _ = load_ctc_model(out / "ctc")
    assert ctc_model is not None

    # It trains further like any best/ (self-training starts from it), and is rewritten whole.
    again = make_soup([a, b], out)
    assert again == out and not list(tmp_path.glob(".soup.*"))


def test_models_that_differ_beyond_their_weights_are_refused(two_seeds, tmp_path):
    (a, b), _ = two_seeds
    other = tmp_path / "other"
    shutil.copytree(b, other)
    gen = json.loads((other / "generation_config.json").read_text())
    gen["suppress_tokens"] = gen.get("suppress_tokens", [])[:-1]  # another restricted vocabulary
    (other / "generation_config.json").write_text(json.dumps(gen))
    with pytest.raises(SoupError, match="generation_config.json differs"):
        make_soup([a, other], tmp_path / "soup")

    shutil.rmtree(other)
    shutil.copytree(b, other)
    adapt = json.loads((other / "asr_adapt.json").read_text())
    adapt["language"] = "hi"
    (other / "asr_adapt.json").write_text(json.dumps(adapt))
    with pytest.raises(SoupError, match="language is 'hi'"):
        make_soup([a, other], tmp_path / "soup")

    tiny = save_tiny_whisper(tmp_path / "untrained")  # no ctc/, no asr_adapt.json
    with pytest.raises(SoupError, match="files differ"):
        make_soup([a, tiny], tmp_path / "soup")
    with pytest.raises(OutputRefused, match="is the input"):  # the shared output guard
        make_soup([a, b], a)
    with pytest.raises(SoupError, match="at least two"):
        make_soup([a], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_soup_command_reports_errors_and_writes_the_model(two_seeds, tmp_path, capsys):
    from pipeline.cli import main

    (a, b), _ = two_seeds
    assert main(["soup", "--models", str(a), "--out", str(tmp_path / "s")]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["soup", "--models", str(a), str(b), "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "model.safetensors").is_file()

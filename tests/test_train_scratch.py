"""``model.init: scratch``: the base model's architecture trained from random weights, the from-scratch system
the transfer report checks negative transfer against. No pretrained weight may survive."""

from __future__ import annotations

import json

import pytest
import torch
from transformers.models.whisper.modeling_whisper import sinusoids

from data_prep.manifest import read_manifest
from pipeline.config import ConfigError, config_from_dict
from pipeline.models.whisper import load_whisper
from pipeline.testing.tiny import build_tiny_whisper, write_tiny_corpus
from pipeline.train.trainer import Trainer
from tests.tree_fixtures import tree_digest

#: Not learned: transformers sets the encoder's position table to fixed sinusoids in any Whisper.
FIXED = {"model.encoder.embed_positions.weight"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny 'pretrained' Whisper whose every tensor was moved off its initial values (as training does:
    layer norms away from 1, biases away from 0), and a tiny corpus."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("scratch")
    model, processor = build_tiny_whisper()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in FIXED:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    return root / "model", write_tiny_corpus(root / "data", n_train=6, n_dev=2)


def make_cfg(assets, out, init: str, **train):
    model_dir, data = assets
    return config_from_dict({
        "data": {"lang": "sa", "manifests_dir": str(data)}, "model": {"name": str(model_dir), "init": init},
        "train": {"regime": "full", "max_steps": 2, "batch_seconds": 4.0, "eval_every": 0, "threads": 1, **train},
        "decode": {"batch_size": 4}, "output_dir": str(out),
    })  # fmt: skip


def start_weights(assets, out, init: str, **train) -> dict[str, torch.Tensor]:
    tr = Trainer(make_cfg(assets, out, init, **train), progress=False).setup()
    return {k: v.detach().clone() for k, v in tr.unwrapped.whisper.state_dict().items()}


def test_no_pretrained_weight_survives_a_scratch_start(assets, tmp_path):
    pretrained = load_whisper(assets[0])[0].state_dict()
    scratch = start_weights(assets, tmp_path / "scratch", "scratch")
    assert scratch.keys() == pretrained.keys() and len(scratch) > 50
    for name, tensor in scratch.items():
        assert tensor.shape == pretrained[name].shape, name  # the same architecture
        if name in FIXED:
            assert torch.equal(tensor, sinusoids(*tensor.shape).to(tensor.dtype)), name
        else:
            assert not (tensor == pretrained[name]).any(), name  # not one value carried over
    # the comparison can fail: a pretrained start keeps every tensor
    kept = start_weights(assets, tmp_path / "pretrained", "pretrained")
    assert all(torch.equal(kept[k], pretrained[k]) for k in pretrained)


def test_a_scratch_start_is_drawn_from_the_training_seed(assets, tmp_path):
    a = start_weights(assets, tmp_path / "a", "scratch", seed=3)
    b = start_weights(assets, tmp_path / "b", "scratch", seed=3)
    c = start_weights(assets, tmp_path / "c", "scratch", seed=4)
    name = "model.decoder.layers.0.fc1.weight"
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a[name], c[name])


def test_scratch_is_refused_where_it_has_no_meaning(assets, tmp_path):
    with pytest.raises(ConfigError, match="model.init must be pretrained or scratch"):
        make_cfg(assets, tmp_path, "random")
    with pytest.raises(ConfigError, match="adapters on frozen random weights"):
        make_cfg(assets, tmp_path, "scratch", regime="lora")


def test_a_scratch_start_never_reuses_the_pretrained_encoders_cached_states(assets, tmp_path):
    """The recipe's systems share one train.cache_dir. Under the cached-encoder regime a scratch start's lower
    encoder layers are random (and frozen): its states are its own, cached apart from the pretrained encoder's,
    which stay as they were."""
    cache_dir = tmp_path / "encoder_cache"

    def cache_of(name: str, init: str, seed: int = 0):
        cfg = make_cfg(assets, tmp_path / name, init, regime="cached-encoder", encoder_trainable_top_layers=1,
                       cache_dir=str(cache_dir), seed=seed)  # fmt: skip
        return Trainer(cfg, progress=False).setup().parts.train_set.cache

    pretrained = cache_of("ft", "pretrained")
    before = tree_digest(pretrained.dir)
    ids = [u.id for u in read_manifest(assets[1] / "train.jsonl")]
    scratch = cache_of("scratch", "scratch")
    assert scratch.dir.parent == pretrained.dir.parent and scratch.dir != pretrained.dir
    assert sorted(k.split("@")[0] for k in scratch.index) == sorted(ids)  # every clip's states computed afresh
    for utt_id in ids:
        a, b = scratch.get(utt_id), pretrained.get(utt_id)
        assert a.shape == b.shape and not torch.allclose(a, b, atol=1e-2), utt_id
    assert tree_digest(pretrained.dir) == before
    meta = json.loads((scratch.dir / "meta.json").read_text())
    assert meta["base_model"] == f"{assets[0]} architecture, random init (seed 0)"
    # another seed draws another encoder: a cache of its own again; the same seed finds its own
    assert cache_of("scratch_s1", "scratch", seed=1).dir not in (scratch.dir, pretrained.dir)
    assert cache_of("scratch_again", "scratch").dir == scratch.dir
    assert cache_of("ft_again", "pretrained").dir == pretrained.dir

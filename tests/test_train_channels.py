"""augment.channels: multi-condition training through degrade's channels, drawn per (seed, epoch, clip),
cached once per (speed factor, channel), babble made of other labeled training speakers only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, config_from_dict
from pipeline.models.encoder import encode_trimmed
from pipeline.pseudo_label import FLAG as PSEUDO_LABEL_FLAG
from pipeline.testing.tiny import save_tiny_whisper, write_tiny_corpus
from pipeline.train.channels import TrainChannels
from pipeline.train.data import BatchPlan, FeatureDataset, Item
from pipeline.train.identity import train_identity
from pipeline.train.trainer import Trainer

CHANNELS = ["clean", "telephone", "babble10"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    torch.set_num_threads(1)
    return write_tiny_corpus(tmp_path_factory.mktemp("channels"), n_train=6, n_dev=2)


def recipe(corpus, model_dir, out, **augment) -> dict:
    return {
        "data": {"lang": "sa", "manifests_dir": str(corpus)},
        "model": {"name": str(model_dir)},
        "train": {"regime": "cached-encoder", "encoder_trainable_top_layers": 1, "lr": 1e-3, "warmup_steps": 1,
                  "max_steps": 2, "batch_seconds": 2.0, "eval_every": 0, "threads": 1},
        "augment": augment,
        "output_dir": str(out),
    }  # fmt: skip


def test_plan_draws_a_channel_per_clip_and_epoch_and_keeps_a_plan_without_channels():
    durs = [1.0 + 0.37 * (i % 11) for i in range(40)]
    kw = dict(batch_seconds=8.0, max_batch_size=6, seed=3, speed_factors=[0.9, 1.0])
    plan = BatchPlan(durs, channels=CHANNELS, **kw)
    e0 = plan.all_batches(0)
    assert e0 == BatchPlan(durs, channels=CHANNELS, **kw).all_batches(0)  # a function of (seed, epoch)
    channel_of = [{it.index: it.channel for b in plan.all_batches(e) for it in b} for e in (0, 1)]
    assert channel_of[0] != channel_of[1] and set(channel_of[0].values()) == set(CHANNELS)
    other_seed = BatchPlan(durs, channels=CHANNELS, **{**kw, "seed": 4}).all_batches(0)
    assert {it.index: it.channel for b in other_seed for it in b} != channel_of[0]
    # One channel: the batches of a plan without channels, item for item.
    assert BatchPlan(durs, channels=["clean"], **kw).all_batches(0) == BatchPlan(durs, **kw).all_batches(0)
    # Every clip's batch and speed factor do not depend on the channels.
    without = BatchPlan(durs, **kw).all_batches(0)
    assert [[(it.index, it.factor) for it in b] for b in e0] == [[(it.index, it.factor) for it in b] for b in without]


def test_babble_is_made_of_other_labeled_training_speakers_only(corpus, monkeypatch):
    from data_prep.degrade import BabblePool
    from data_prep.manifest import read_manifest
    from pipeline.train.data import Example

    utts = read_manifest(corpus / "train.jsonl")
    examples = [Example(i, u, corpus, (1, 2), 1) for i, u in enumerate(utts)]
    # A pseudo-labeled clip (another split's audio) of a third speaker: never babble.
    pseudo = dataclasses.replace(utts[0], id="dev_pl", speaker="spk9", flags=(PSEUDO_LABEL_FLAG,))
    examples.append(Example(len(examples), pseudo, corpus, (1, 2), 1))
    heard: list = []
    read = BabblePool.audio
    monkeypatch.setattr(BabblePool, "audio", lambda self, u: heard.append(u) or read(self, u))
    channels = TrainChannels(examples)
    for ex in examples:
        heard.clear()
        wave = ex.utt.load_audio(corpus)
        y = channels.apply(wave, ex.utt, "babble10", 1.0)
        assert heard and all(u.speaker != ex.utt.speaker and u.id != "dev_pl" for u in heard), ex.utt.id
        assert y.shape == wave.shape and not np.allclose(y, wave)
        assert np.array_equal(y, TrainChannels(examples).apply(wave, ex.utt, "babble10", 1.0))  # deterministic
    assert "spk9" not in channels.pool.speakers
    # The same clips listed by a manifest elsewhere (pseudo-label rebases their paths): the same babble, the
    # same cached states.
    elsewhere = corpus / "selftrain"
    moved = [dataclasses.replace(ex, utt=ex.utt.replace(audio=f"../{ex.utt.audio}"), manifest_dir=elsewhere)
             for ex in examples]  # fmt: skip
    assert TrainChannels(moved).fingerprint(["babble10"]) == channels.fingerprint(["clean", "babble10"])
    assert TrainChannels(examples[1:]).fingerprint(["babble10"]) != channels.fingerprint(["babble10"])
    assert channels.fingerprint(["clean", "telephone"]) == ""  # no babble: the cache of a run without channels


def test_states_are_cached_once_per_speed_factor_and_channel(corpus, tmp_path):
    model_dir = save_tiny_whisper(tmp_path / "model", d_model=32, heads=2, ffn=64)
    cfg = config_from_dict(recipe(corpus, model_dir, tmp_path / "out", speed_perturb=[0.9, 1.0], channels=CHANNELS))
    trainer = Trainer(cfg, progress=False).setup()
    cache = trainer.parts.train_set.cache
    n = len(trainer.train_ex)
    assert len(cache.index) == n * 2 * 3  # every clip at every (factor, channel), once
    ex = trainer.train_ex[1]
    states = {c: cache.get(ex.utt.id, 0.9, c) for c in CHANNELS}
    assert not torch.equal(states["clean"], states["telephone"]) and not torch.equal(states["clean"], states["babble10"])
    # What is cached is the encoder's states of the clip through that channel at that speed.
    feats = FeatureDataset(trainer.train_ex, trainer.processor.feature_extractor, None, 0)[Item(1, 0.9, 0, channel="babble10")]
    with torch.no_grad():
        ref, _ = encode_trimmed(trainer.parts.module.whisper.model.encoder, feats["features"][None],
                                torch.tensor([feats["length"]]), stop=trainer.split)  # fmt: skip
    assert torch.allclose(states["babble10"], ref[0], atol=2e-2, rtol=2e-3)
    # The training reads each item's channel; a second setup (a resumed run) computes nothing new.
    item = next(it for b in trainer.plan.all_batches(0) for it in b if it.channel == "telephone")
    assert torch.equal(trainer.parts.train_set[item]["states"], cache.get(trainer.train_ex[item.index].utt.id,
                                                                           item.factor, "telephone"))  # fmt: skip
    again = Trainer(cfg, progress=False).setup().parts.train_set.cache
    assert again.dir == cache.dir and again.index.entries() == cache.index.entries()
    # Another babble pool (other clips) is another cache: its states are other sounds.
    plain = config_from_dict(recipe(corpus, model_dir, tmp_path / "plain", speed_perturb=[0.9, 1.0]))
    assert Trainer(plain, progress=False).setup().parts.train_set.cache.dir != cache.dir


def test_channels_are_part_of_the_training_identity(corpus, tmp_path):
    tree = recipe(corpus, tmp_path / "m", tmp_path / "out")
    plain = train_identity(config_from_dict(tree))
    multi = train_identity(config_from_dict({**tree, "augment": {"channels": CHANNELS}}))
    assert plain != multi and "augment.channels" in " ".join(multi.differences(plain))


@pytest.mark.parametrize("channels, message", [
    (["clean", "phone"], "augment.channels: unknown channel 'phone'"),
    (["babble"], "augment.channels: unknown channel 'babble'"),
    (["babble99"], "augment.channels: channel 'babble99': expected a level between -20 and 60 dB"),
    ([], "augment.channels must be a non-empty list"),
])  # fmt: skip
def test_config_refuses_unknown_channels(channels, message):
    with pytest.raises(ConfigError, match=message) as e:
        config_from_dict({"augment": {"channels": channels}}, "cfg.yaml")
    assert "\n" not in str(e.value)

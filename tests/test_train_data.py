"""Dynamic batching, label sequences, collation and the encoder-state cache."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.config import ConfigError
from pipeline.models.encoder import encode_trimmed
from pipeline.models.language import LabelEncoder
from pipeline.testing.tiny import build_tiny_whisper, write_tiny_corpus
from pipeline.train.cache import EncoderStateCache, encoder_fingerprint
from pipeline.train.data import (
    IGNORE_INDEX,
    BatchPlan,
    FeatureDataset,
    Item,
    collate,
    even_out,
    load_examples,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    root = write_tiny_corpus(tmp_path_factory.mktemp("corpus"), n_train=10, n_dev=2)
    model, processor = build_tiny_whisper()
    enc = LabelEncoder(processor, model, "sa")
    examples, skipped = load_examples(root / "train.jsonl", enc)
    return model, processor, enc, examples


def test_batch_plan_is_deterministic_and_complete():
    durs = [1.0 + 0.37 * (i % 11) for i in range(40)]
    kw = dict(batch_seconds=8.0, max_batch_size=6, seed=3, speed_factors=[0.9, 1.0, 1.1])
    plan = BatchPlan(durs, **kw)
    e0, e0b, e1 = plan.all_batches(0), BatchPlan(durs, **kw).all_batches(0), plan.all_batches(1)
    assert e0 == e0b
    assert e0 != e1
    for batches in (e0, e1):
        assert sorted(it.index for b in batches for it in b) == list(range(40))  # every clip once per epoch
        for b in batches:
            assert len(b) <= 6
            assert len(b) == 1 or len(b) * max(durs[it.index] / it.factor for it in b) <= 8.0 + 1e-9
    assert {it.factor for b in e0 for it in b} == {0.9, 1.0, 1.1}


def test_batch_plan_ranks_are_disjoint():
    durs = [2.0] * 30
    ranks = [BatchPlan(durs, batch_seconds=6.0, max_batch_size=8, seed=0, world_size=2, rank=r) for r in (0, 1)]
    ids = [{it.index for b in p.epoch_batches(0) for it in b} for p in ranks]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert len(ranks[0].epoch_batches(0)) == len(ranks[1].epoch_batches(0))


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("durs", [[2.0] * 31, [1.0 + 0.37 * (i % 11) for i in range(29)], [9.0] * 5],
                         ids=["even", "mixed", "one-clip-batches"])
def test_batch_plan_ranks_see_every_clip_once_per_epoch(world, durs):
    plans = [BatchPlan(durs, batch_seconds=6.0, max_batch_size=8, seed=1, speed_factors=[0.9, 1.0], world_size=world,
                       rank=r) for r in range(world)]  # fmt: skip
    for epoch in (0, 1):
        per_rank = [p.epoch_batches(epoch) for p in plans]
        seen = sorted(it.index for batches in per_rank for b in batches for it in b)
        assert seen == list(range(len(durs)))  # every clip, none twice, none dropped
        assert len({len(batches) for batches in per_rank}) == 1  # the ranks step together
        assert all(b for batches in per_rank for b in batches)


def test_batch_plan_of_one_process_is_not_evened_out():
    durs = [1.0 + 0.37 * (i % 11) for i in range(29)]
    plan = BatchPlan(durs, batch_seconds=6.0, max_batch_size=8, seed=1)
    assert plan.epoch_batches(0) == plan.all_batches(0) == even_out(plan.all_batches(0), 1)
    with pytest.raises(ConfigError, match="fewer than the 3 processes"):
        BatchPlan([1.0, 1.0], batch_seconds=6.0, max_batch_size=8, seed=1, world_size=3).all_batches(0)


def test_labels_and_collate(setup):
    model, processor, enc, examples = setup
    labels, prefix_len = enc("ab ba")
    gen = model.generation_config
    assert labels[:4] == [gen.decoder_start_token_id, gen.lang_to_id["<|sa|>"], gen.task_to_id["transcribe"],
                          gen.no_timestamps_token_id]  # fmt: skip
    assert labels[-1] == gen.eos_token_id and prefix_len == 4
    assert processor.tokenizer.decode(labels[4:-1]) == " ab ba"
    ds = FeatureDataset(examples, processor.feature_extractor, None, seed=0)
    batch = collate([ds[Item(0, 1.0, 0)], ds[Item(1, 1.1, 0)]], pad_id=enc.eot)
    assert batch["features"].shape[:2] == (2, 80)
    assert batch["lengths"].max() == batch["features"].shape[-1]
    tgt, inp = batch["targets"], batch["decoder_input_ids"]
    assert (tgt[:, :3] == IGNORE_INDEX).all()  # language/task/notimestamps are forced, not predicted
    assert tgt[0, 3] == examples[0].labels[4]
    assert inp[0, 0] == gen.decoder_start_token_id
    # Speed 1.1 shortens the clip.
    plain = ds[Item(1, 1.0, 0)]["length"]
    assert batch["lengths"][1] < plain


def features_by_id(examples, processor):
    """``features_of(utt_id, factor) -> (features, mel length)``, what EncoderStateCache.build reads."""
    ds = FeatureDataset(examples, processor.feature_extractor, None, seed=0)
    by_id = {ex.utt.id: ex.index for ex in examples}

    def features_of(utt_id, factor):
        s = ds[Item(by_id[utt_id], factor, 0)]
        return s["features"], s["length"]

    return features_of


def test_state_cache_build_resume_and_read(setup, tmp_path):
    model, processor, _, examples = setup
    enc = model.model.encoder
    features_of = features_by_id(examples, processor)

    jobs = [(ex.utt.id, f) for ex in examples for f in (1.0, 1.1)]
    fp = encoder_fingerprint(enc, 1)
    cache = EncoderStateCache(tmp_path, fp, {"stop": 1})
    assert cache.build(enc, jobs[:5], features_of, stop=1, batch_size=3, shard_size=2, progress=False) == 5
    # A new cache object (a resumed run) only computes what is missing.
    cache2 = EncoderStateCache(tmp_path, fp)
    assert cache2.build(enc, jobs, features_of, stop=1, batch_size=3, shard_size=4, progress=False) == len(jobs) - 5
    index = json.loads((cache2.dir / "index.json").read_text())["entries"]
    assert len(index) == len(jobs)
    feats, n = features_of(examples[3].utt.id, 1.1)
    with torch.no_grad():
        ref, lens = encode_trimmed(enc, feats[None], torch.tensor([n]), stop=1)
    got = EncoderStateCache(tmp_path, fp).get(examples[3].utt.id, 1.1)
    assert got.shape == ref[0].shape and got.dtype == torch.float32
    assert torch.allclose(got, ref[0], atol=2e-2, rtol=2e-3)  # stored as float16
    assert encoder_fingerprint(enc, 2) != fp


def test_state_cache_shared_by_two_builders(setup, tmp_path):
    """Two trainings that opened the same cache before either built: nothing is lost or computed twice."""
    model, processor, _, examples = setup
    enc = model.model.encoder
    features_of = features_by_id(examples, processor)

    jobs = [(ex.utt.id, 1.0) for ex in examples]
    fp = encoder_fingerprint(enc, 1)
    first, second = EncoderStateCache(tmp_path, fp), EncoderStateCache(tmp_path, fp)
    assert first.build(enc, jobs[:6], features_of, stop=1, batch_size=2, shard_size=2, progress=False) == 6
    # The second one's index predates the first build: it must see those entries, not overwrite them.
    assert second.build(enc, jobs[3:], features_of, stop=1, batch_size=2, shard_size=2, progress=False) == 4
    index = json.loads((second.dir / "index.json").read_text())["entries"]
    assert sorted(index) == sorted(f"{u}@1" for u, _ in jobs)
    fresh = EncoderStateCache(tmp_path, fp)
    for u, f in jobs:
        assert fresh.get(u, f).shape[1] == enc.config.d_model

    # Truly concurrent builders (forked processes): each clip is computed once in all.
    import multiprocessing

    fp2 = encoder_fingerprint(enc, 2)
    ctx = multiprocessing.get_context("fork")  # the child runs the closure; nothing is pickled
    counts = ctx.Queue()

    def build_in_child():
        cache = EncoderStateCache(tmp_path, fp2)
        counts.put(cache.build(enc, jobs, features_of, stop=2, batch_size=2, shard_size=2, progress=False))

    children = [ctx.Process(target=build_in_child) for _ in range(2)]
    for c in children:
        c.start()
    for c in children:
        c.join(60)
        assert c.exitcode == 0
    assert counts.get(timeout=5) + counts.get(timeout=5) == len(jobs)
    assert EncoderStateCache(tmp_path, fp2).missing([f"{u}@1" for u, _ in jobs]) == []

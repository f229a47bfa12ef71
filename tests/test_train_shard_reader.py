"""Training reads the encoder-state cache shard by shard: a few files open, none mapped, so that its
memory does not grow with the cache; every clip still gets its own states."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, load_file, save_file

from pipeline.models.language import LabelEncoder
from pipeline.testing.tiny import build_tiny_whisper, write_tiny_corpus
from pipeline.train.cache import CacheIndex, EncoderStateCache, build_train_state_cache
from pipeline.train.data import BatchPlan, StateDataset, collate, load_examples
from pipeline.train.shard_reader import ShardReader

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")


def shard_files_held(folder: Path) -> tuple[int, int]:
    """(shard files of ``folder`` this process has open, those it has mapped into memory)."""
    folder = str(folder.resolve())
    open_ = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(folder) and "shard-" in target:
            open_.add(target)
    mapped = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
              if line.rstrip().endswith(".safetensors") and folder in line}  # fmt: skip
    return len(open_), len(mapped)


def write_cache(folder: Path, n_shards: int, per_shard: int) -> dict[str, torch.Tensor]:
    """A cache folder as EncoderStateCache writes it: shards of fp16 states and index.json."""
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    states, entries = {}, {}
    for s in range(n_shards):
        name = f"shard-{s:05d}.safetensors"
        shard = {f"u{s}-{i}@1": torch.randn(3 + i + s, 8, generator=gen).half() for i in range(per_shard)}
        save_file(shard, str(folder / name))
        for key, t in shard.items():
            entries[key] = {"shard": name, "frames": t.shape[0]}
        states.update(shard)
    (folder / "index.json").write_text(json.dumps({"entries": entries}))
    return states


def test_reading_every_state_of_many_shards_keeps_few_files_open_and_none_mapped(tmp_path):
    states = write_cache(tmp_path / "fp", n_shards=12, per_shard=3)
    cache = EncoderStateCache(tmp_path, "fp")  # the default: at most 4 shard files open
    most = 0
    for key in sorted(states, key=lambda k: hash(k) % 97):  # shards visited out of order, again and again
        utt, factor = key.rsplit("@", 1)
        got = cache.get(utt, float(factor))
        assert got.dtype == torch.float32 and torch.equal(got, states[key].float())
        n_open, n_mapped = shard_files_held(cache.dir)
        assert n_mapped == 0
        most = max(most, n_open)
    assert 1 <= most <= 4


def test_shard_reader_closes_the_least_recently_used_file_and_reads_any_dtype(tmp_path):
    tensors = {
        "f16": torch.randn(5, 4).half(), "bf16": torch.randn(3, 2).bfloat16(), "f32": torch.randn(7),
        "i64": torch.arange(6).reshape(2, 3), "empty": torch.zeros(0, 4).half(),
    }  # fmt: skip
    for i in range(3):
        save_file({k: v + i if v.numel() else v for k, v in tensors.items()}, str(tmp_path / f"s{i}.safetensors"))
    reader = ShardReader(tmp_path, max_open=2)
    for i in (0, 1, 0, 2):
        for name in tensors:
            assert torch.equal(reader.read(f"s{i}.safetensors", name), load_file(str(tmp_path / f"s{i}.safetensors"))[name])
    assert reader.open_shards == ["s0.safetensors", "s2.safetensors"]  # s1 was least recently used
    with pytest.raises(KeyError, match="nope"):
        reader.read("s0.safetensors", "nope")
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 20)
    with pytest.raises(ValueError, match="bad.safetensors: not a safetensors file"):
        reader.read("bad.safetensors", "f16")
    reader.close()
    assert reader.open_shards == [] and shard_files_held(tmp_path) == (0, 0)


def test_cache_index_is_index_json_in_compact_form():
    entries = {"a@1": {"shard": "shard-00000.safetensors", "frames": 7},
               "b@0.9": {"shard": "shard-00001.safetensors", "frames": 3}}  # fmt: skip
    index = CacheIndex.from_entries(entries)
    assert len(index) == 2 and "a@1" in index and "c@1" not in index
    assert index.shard_of("b@0.9") == "shard-00001.safetensors" and index.frames_of("a@1") == 7
    assert index.shard_of("c@1") is None
    index.update(CacheIndex.from_entries({"a@1": {"shard": "shard-00002.safetensors", "frames": 7}}))
    assert index.entries() == {**entries, "a@1": {"shard": "shard-00002.safetensors", "frames": 7}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(tiny Whisper, processor, 8 train examples)."""
    torch.set_num_threads(1)
    corpus = write_tiny_corpus(tmp_path_factory.mktemp("stream"), n_train=8, n_dev=1)
    model, processor = build_tiny_whisper(layers=2)
    model.eval()
    examples, _ = load_examples(corpus / "train.jsonl", LabelEncoder(processor, model, "sa"))
    return model, processor, examples


def build_cache(tiny, root: Path, **kw):
    model, processor, examples = tiny
    return build_train_state_cache(root, model.model.encoder, 1, processor.feature_extractor, examples, [0.9, 1.0],
                                   base_model="tiny", seed=0, device="cpu", progress=False, **kw)  # fmt: skip


def test_a_build_writes_a_shard_once_it_holds_shard_bytes_of_states(tiny, tmp_path):
    examples = tiny[2]
    few = build_cache(tiny, tmp_path / "few", batch_size=2, shard_size=100)
    assert len(list(few.dir.glob("shard-*.safetensors"))) == 1
    by_bytes = build_cache(tiny, tmp_path / "bytes", batch_size=2, shard_size=100, shard_bytes=1)
    batches = 2 * len(examples) // 2  # every clip at two speeds, two clips a batch: a shard after each batch
    assert len(list(by_bytes.dir.glob("shard-*.safetensors"))) == batches
    for key in few.index:
        assert torch.equal(by_bytes.reader.read(by_bytes.index.shard_of(key), key), few.reader.read(few.index.shard_of(key), key))


def test_training_batches_carry_each_clips_own_states_through_the_streaming_reader(tiny, tmp_path):
    examples = tiny[2]
    cache = build_cache(tiny, tmp_path / "cache", batch_size=1, shard_size=1)
    shards = sorted(cache.dir.glob("shard-*.safetensors"))
    assert len(shards) == 2 * len(examples)  # one clip a shard: every batch crosses shards
    reference = {k: v for s in shards for k, v in load(s.read_bytes()).items()}  # read whole, not mapped
    dataset = StateDataset(examples, EncoderStateCache(cache.dir.parent, cache.dir.name), None, seed=0)
    plan = BatchPlan([ex.utt.duration for ex in examples], batch_seconds=6.0, max_batch_size=3, seed=1,
                     speed_factors=[0.9, 1.0])  # fmt: skip
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=plan.epoch_batches(0), collate_fn=lambda s: collate(s, 0))
    seen = 0
    for batch, items in zip(loader, plan.epoch_batches(0)):
        for row, item in enumerate(items):
            key = f"{examples[item.index].utt.id}@{item.factor:g}"
            n = int(batch["lengths"][row])
            assert batch["ids"][row] == examples[item.index].utt.id
            assert n == reference[key].shape[0]
            assert torch.equal(batch["states"][row, :n], reference[key].float())
            assert not batch["states"][row, n:].any()  # zero padding after the clip's own frames
            seen += 1
        assert shard_files_held(cache.dir)[1] == 0
    assert seen == len(examples)

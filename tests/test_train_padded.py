"""train.padded_share: a share of the batches feeds the encoder the 30-s padded window every Whisper
runtime feeds, from a cache of its own; the others stay trimmed."""

from __future__ import annotations

import pytest
import torch

from pipeline.config import config_from_dict
from pipeline.models.language import LabelEncoder
from pipeline.testing.tiny import build_tiny_whisper, save_tiny_whisper, write_tiny_corpus
from pipeline.train.cache import build_train_state_cache
from pipeline.train.data import BatchPlan, FeatureDataset, Item, collate, load_examples
from pipeline.train.regimes import Seq2SeqTrainModule
from pipeline.train.trainer import Trainer

WINDOW_FRAMES = 1500  # encoder positions of the 30-s window (3000 mel frames, stride-2 convolution)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    torch.set_num_threads(1)
    return write_tiny_corpus(tmp_path_factory.mktemp("padded"), n_train=8, n_dev=2)


def test_plan_gives_the_share_of_batches_padded_clips_besides_the_trimmed_ones():
    durs = [1.0 + 0.37 * (i % 11) for i in range(40)]
    kw = dict(max_batch_size=6, seed=3, speed_factors=[0.9, 1.0, 1.1])
    assert not any(it.padded for b in BatchPlan(durs, batch_seconds=8.0, **kw).all_batches(0) for it in b)
    for share, seconds in ((0.25, 8.0), (1.0, 8.0), (0.5, 65.0)):
        plain = BatchPlan(durs, batch_seconds=seconds, **kw).all_batches(0)
        mixed = BatchPlan(durs, batch_seconds=seconds, **kw, padded_share=share).all_batches(0)
        assert len(mixed) == len(plain)
        with_padded = 0
        for p, m in zip(plain, mixed):
            assert [it for it in m if not it.padded] == p  # every trimmed clip as without padded ones
            again = [(it.index, it.factor) for it in m if it.padded]
            if again:
                with_padded += 1
                # 30 s a clip against batch_seconds, at least one: they cost about what the batch does
                assert len(again) == min(len(p), max(1, int(seconds // 30)))
                assert set(again) <= {(it.index, it.factor) for it in p}
        assert with_padded == round(share * len(plain))
    epochs = [[any(it.padded for it in b) for b in BatchPlan(durs, batch_seconds=8.0, **kw, padded_share=0.25)
               .all_batches(e)] for e in (0, 1)]  # fmt: skip
    assert epochs[0] != epochs[1]  # drawn anew each epoch
    with pytest.raises(ValueError, match="padded_share"):
        BatchPlan(durs, batch_seconds=8.0, **kw, padded_share=1.5)


def test_padded_states_are_what_the_encoder_gives_for_the_padded_window(corpus, tmp_path):
    model, processor = build_tiny_whisper(layers=2)
    model.eval()
    examples, _ = load_examples(corpus / "train.jsonl", LabelEncoder(processor, model, "sa"))
    examples = examples[:3]
    encoder, fe = model.model.encoder, processor.feature_extractor
    kw = dict(base_model="tiny", seed=0, batch_size=2, shard_size=10, device="cpu", progress=False)
    padded = build_train_state_cache(tmp_path, encoder, 1, fe, examples, [1.0], trimmed=False, **kw)
    trimmed = build_train_state_cache(tmp_path, encoder, 1, fe, examples, [1.0], **kw)
    assert padded.dir != trimmed.dir
    for ex in examples:
        wave = ex.utt.load_audio(ex.manifest_dir, sr=16000)
        features = fe(wave, sampling_rate=16000, return_tensors="pt").input_features  # padded to 30 s
        with torch.no_grad():
            expected = encoder(features, output_hidden_states=True).hidden_states[1][0]
        got = padded.get(ex.utt.id)
        assert got.shape == (WINDOW_FRAMES, model.config.d_model) == expected.shape
        torch.testing.assert_close(got, expected, atol=2e-2, rtol=1e-2)  # stored as float16
        assert trimmed.get(ex.utt.id).shape[0] < WINDOW_FRAMES


def test_feature_batches_marked_padded_get_the_30_s_window(corpus):
    model, processor = build_tiny_whisper()
    examples, _ = load_examples(corpus / "train.jsonl", LabelEncoder(processor, model, "sa"))
    data = FeatureDataset(examples, processor.feature_extractor, None, seed=0, trimmed=True)
    trimmed, padded = data[Item(0, 1.0, 0)], data[Item(0, 1.0, 0, padded=True)]
    assert padded["features"].shape[-1] == padded["length"] == 2 * WINDOW_FRAMES
    assert trimmed["length"] < 2 * WINDOW_FRAMES
    torch.testing.assert_close(padded["features"][:, : trimmed["length"]], trimmed["features"])


def recipe(corpus, model_dir, out, share: float) -> dict:
    return {
        "data": {"lang": "sa", "manifests_dir": str(corpus)},
        "model": {"name": str(model_dir)},
        "train": {"regime": "cached-encoder", "encoder_trainable_top_layers": 1, "padded_share": share,
                  "lr": 1e-3, "warmup_steps": 1, "max_steps": 4, "batch_seconds": 2.0, "eval_every": 0,
                  "threads": 1},
        "output_dir": str(out),
    }  # fmt: skip


def epoch_state_frames(trainer: Trainer) -> list[tuple[int, int | None]]:
    """(trimmed, padded sub-batch) frames of the encoder states of every micro-batch of the first epoch,
    as the loss module receives them."""
    steps = trainer._step_batches()
    frames = []
    while not frames or trainer.progress.epoch == 0:
        for b in next(steps):
            inputs = trainer._inputs(b)
            frames.append((inputs["states"].shape[1], inputs["padded"]["states"].shape[1] if "padded" in inputs
                           else None))  # fmt: skip
    return frames


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_trainer_feeds_the_share_of_padded_batches_and_trains_on_them(corpus, tmp_path, share):
    model_dir = save_tiny_whisper(tmp_path / "model", d_model=32, heads=2, ffn=64)
    cfg = config_from_dict(recipe(corpus, model_dir, tmp_path / "out", share))
    trainer = Trainer(cfg, progress=False).setup()
    frames = epoch_state_frames(trainer)
    assert len(frames) >= 4 and all(t < 100 for t, _ in frames)  # trimmed (clips under 2 s)
    assert sum(p == WINDOW_FRAMES for _, p in frames) == round(share * len(frames))
    assert all(p in (None, WINDOW_FRAMES) for _, p in frames)
    if share:  # only the clips the plan puts on the padded window are cached so
        planned = trainer.plan.padded_items(trainer.total_steps, 1)
        assert 0 < len(trainer.parts.train_set.padded_cache.index) == len(planned) < len(trainer.train_ex)
        trainer = Trainer(cfg, progress=False)  # a fresh run: every batch of 4 steps, padded ones included
        assert trainer.train()["step"] == 4  # a non-finite loss would have stopped it
        assert (tmp_path / "out" / "best" / "model.safetensors").is_file()


def test_a_step_with_a_padded_sub_batch_learns_from_both_inputs(corpus):
    torch.manual_seed(0)
    model, processor = build_tiny_whisper()
    examples, _ = load_examples(corpus / "train.jsonl", LabelEncoder(processor, model, "sa"))
    data = FeatureDataset(examples, processor.feature_extractor, None, seed=0)
    items = [Item(0, 1.0, 0), Item(1, 1.0, 0), Item(1, 1.0, 0, padded=True)]
    batch = collate([data[it] for it in items], pad_id=processor.tokenizer.eos_token_id)
    assert batch["features"].shape[0] == 2 and batch["padded"]["features"].shape == (1, 80, 2 * WINDOW_FRAMES)
    module = Seq2SeqTrainModule(model, split=0, lower_frozen=False).eval()
    keys = ("decoder_input_ids", "targets", "lengths", "features")
    trimmed = {k: batch[k] for k in keys}
    padded = {k: batch["padded"][k] for k in keys}
    with torch.no_grad():
        both, alone, window = module(**trimmed, padded=padded), module(**trimmed), module(**padded)
    torch.testing.assert_close(both, (alone + window) / 2)
    assert not torch.isclose(alone, window)

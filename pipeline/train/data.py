"""Training data: examples, duration-based dynamic batches, and collation.

One :class:`Example` per usable utterance (text already tokenized into the
decoder's label sequence). :class:`BatchPlan` decides, for each epoch, which
speed factor and channel (``augment.channels``) every clip gets and how clips are grouped: clips are sorted by
(jittered) duration so a batch pads little, cut into batches of at most
``batch_seconds`` padded audio, and the batch order is shuffled — all from
``(seed, epoch)``, so a resumed run sees exactly the same batches. Under DDP
each rank takes every ``world_size``-th batch, their number evened out first
(:func:`even_out`) so that every clip is seen once per epoch, by one rank.
With ``padded_share`` > 0 that share of the batches (drawn from ``(seed, epoch)``
too) also carries some of its clips on the 30-s padded window every Whisper
runtime feeds (as many as ``batch_seconds`` allows at 30 s each, at least one):
:func:`collate` puts them in a sub-batch of their own (``batch["padded"]``), whose
loss the trainer averages with the trimmed one's.

Two datasets feed the trainer: :class:`FeatureDataset` (audio -> augmented
log-mel) and :class:`StateDataset` (cached encoder states, see
:mod:`pipeline.train.cache`). Augmentation randomness is seeded per
(seed, epoch, clip), independent of worker processes.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data_prep.degrade import CLEAN
from data_prep.manifest import Utterance, read_manifest
from pipeline.config import AugmentConfig, ConfigError
from pipeline.models.augment import add_noise, spec_augment, speed_perturb
from pipeline.models.ctc_loss import pad_labels as pad_ctc_labels
from pipeline.models.encoder import SAMPLE_RATE, mel_length
from pipeline.train.channels import TrainChannels

log = logging.getLogger(__name__)

WINDOW_S = 30.0  # Whisper's input window
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One utterance ready for training: its record and decoder label sequence.

    Label sequences are int32 arrays (:func:`label_array`): 4 bytes a token where a tuple of
    Python ints takes 40, for every train clip, for the whole run.
    """

    index: int
    utt: Utterance
    manifest_dir: Path
    labels: Sequence[int]  # prefix tokens + text tokens + end-of-text
    prefix_len: int  # tokens the decoder is given, not asked to predict (sot, language, task, notimestamps)
    ctc_labels: Sequence[int] = ()  # character ids of the text (joint CTC/attention training only)

    @property
    def audio_path(self) -> Path:
        return self.utt.audio_path(self.manifest_dir)


def label_array(ids: Sequence[int]) -> array:
    """A label sequence as :class:`Example` keeps it."""
    return array("i", ids)


def load_examples(
    manifest: str | Path,
    encode: Callable[[str], tuple[list[int], int]],
    *,
    max_duration: float = WINDOW_S,
    min_duration: float = 0.0,
    max_labels: int = 448,
) -> tuple[list[Example], dict[str, int]]:
    """Read a manifest into examples; returns (examples, counts of skipped utterances by reason)."""
    manifest = Path(manifest)
    utts = read_manifest(manifest, unique_ids=False)  # a repeated line weights its clip (oversampling)
    skipped = {"too_long": 0, "too_short": 0, "empty_text": 0, "label_too_long": 0}
    out: list[Example] = []
    for utt in utts:
        if utt.duration > min(max_duration, WINDOW_S):
            skipped["too_long"] += 1
            continue
        if utt.duration < min_duration:
            skipped["too_short"] += 1
            continue
        if not utt.text.strip():
            skipped["empty_text"] += 1
            continue
        labels, prefix_len = encode(utt.text)
        if len(labels) > max_labels:
            skipped["label_too_long"] += 1
            continue
        out.append(Example(len(out), utt, manifest.parent, label_array(labels), prefix_len))
    if any(skipped.values()):
        log.info("%s: skipped %s", manifest, {k: v for k, v in skipped.items() if v})
    return out, skipped


# ---------------------------------------------------------------------------------------------
# batching


@dataclass(frozen=True)
class Item:
    """A clip as scheduled in one epoch: example index, the speed factor and the channel it is played at."""

    index: int
    factor: float
    epoch: int
    padded: bool = False  # the encoder sees the 30-s padded window, as Whisper runtimes feed it
    channel: str = CLEAN  # augment.channels (pipeline.train.channels)


class BatchPlan:
    """Duration-based dynamic batching, deterministic in (seed, epoch, rank)."""

    def __init__(
        self,
        durations: Sequence[float],
        *,
        batch_seconds: float,
        max_batch_size: int,
        seed: int,
        speed_factors: Sequence[float] = (1.0,),
        channels: Sequence[str] = (CLEAN,),
        world_size: int = 1,
        rank: int = 0,
        jitter: float = 0.1,
        padded_share: float = 0.0,
    ):
        if not durations:
            raise ValueError("no training utterances")
        if not 0.0 <= padded_share <= 1.0:
            raise ValueError(f"padded_share must be in [0, 1], got {padded_share}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_seconds = batch_seconds
        self.max_batch_size = max_batch_size
        self.seed = seed
        self.factors = np.asarray(list(speed_factors), dtype=np.float64)
        self.channels = list(channels)
        self.world_size = world_size
        self.rank = rank
        self.jitter = jitter
        self.padded_share = padded_share

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, 7919])

    def all_batches(self, epoch: int) -> list[list[Item]]:
        """Every rank's batches of ``epoch`` (truncated to a multiple of the world size)."""
        rng = self._rng(epoch)
        n = len(self.durations)
        factors = self.factors[rng.integers(0, len(self.factors), n)]
        # A slowed-down clip must still fit Whisper's 30 s window.
        factors = np.where(self.durations / factors > WINDOW_S, 1.0, factors)
        dur = self.durations / factors
        channels = self._channels(epoch, n)
        key = dur * np.exp(rng.uniform(-self.jitter, self.jitter, n))
        order = np.argsort(key, kind="stable")
        batches: list[list[Item]] = []
        current: list[Item] = []
        longest = 0.0
        for i in order:
            d = float(dur[i])
            longest_if = max(longest, d)
            if current and (
                (len(current) + 1) * longest_if > self.batch_seconds or len(current) >= self.max_batch_size
            ):
                batches.append(current)
                current, longest_if = [], d
            current.append(Item(int(i), float(factors[i]), epoch, channel=channels[i]))
            longest = longest_if
        if current:
            batches.append(current)
        perm = rng.permutation(len(batches))
        batches = [batches[j] for j in perm]
        if n < self.world_size:
            raise ConfigError(f"the train set has {n} utterances, fewer than the {self.world_size} processes: "
                              "train on fewer processes")
        return self._mark_padded(even_out(batches, self.world_size), epoch)

    def _channels(self, epoch: int, n: int) -> list[str]:
        """Each clip's channel in ``epoch``, drawn from (seed, epoch) with a generator of its own: with one
        channel the plan is that of a run without channels."""
        if len(self.channels) == 1:
            return self.channels * n
        rng = np.random.default_rng([self.seed, epoch, 15485863])
        return [self.channels[k] for k in rng.integers(0, len(self.channels), n)]

    def padded_batch_size(self) -> int:
        """Padded clips a batch gets: ``batch_seconds`` counts 30 s for each (at least one clip), so that
        they cost about what the trimmed batch does."""
        return max(1, min(self.max_batch_size, int(self.batch_seconds // WINDOW_S)))

    def _mark_padded(self, batches: list[list[Item]], epoch: int) -> list[list[Item]]:
        """``round(padded_share * len(batches))`` of the batches, drawn from (seed, epoch), also get
        :meth:`padded_batch_size` of their clips (drawn too) again, on the padded window.

        A generator of its own: the trimmed items are those of a plan without padded ones.
        """
        n = int(round(self.padded_share * len(batches)))
        if n == 0:
            return batches
        rng = np.random.default_rng([self.seed, epoch, 104729])
        size = self.padded_batch_size()
        for j in rng.permutation(len(batches))[:n]:
            batch = batches[j]
            again = sorted(rng.choice(len(batch), min(size, len(batch)), replace=False))
            batches[j] = batch + [dataclasses.replace(batch[k], padded=True) for k in again]
        return batches

    def epoch_batches(self, epoch: int) -> list[list[Item]]:
        """This rank's batches of ``epoch``: every ``world_size``-th, from the ``rank``-th on."""
        return self.all_batches(epoch)[self.rank :: self.world_size]

    def padded_items(self, total_steps: int, grad_accum: int) -> set[tuple[int, float, str]]:
        """(example index, speed factor, channel) of every padded clip, on any process, of the epochs that
        ``total_steps`` optimizer steps reach: what a run needs on the padded window."""
        out: set[tuple[int, float, str]] = set()
        epoch, steps = 0, 0
        while steps < total_steps and self.padded_share > 0:
            batches = self.all_batches(epoch)
            out.update((it.index, it.factor, it.channel) for b in batches for it in b if it.padded)
            steps += len(step_sizes(len(batches) // self.world_size, 0, grad_accum))
            epoch += 1
        return out

    def steps_per_epoch(self, grad_accum: int) -> int:
        """Optimizer steps in an epoch (the first epoch's plan; later ones differ by a batch or two)."""
        return len(step_sizes(len(self.epoch_batches(0)), 0, grad_accum))


def even_out(batches: list[list[Item]], world_size: int) -> list[list[Item]]:
    """``batches`` made a multiple of ``world_size`` in number, every clip still in exactly one.

    Under DDP every process takes the same number of batches (each optimizer step waits for all of
    them), so a count that does not divide evenly is evened out: the batch with the most clips is
    cut in two (both halves fit the batch budget) until it divides; with too few clips for that
    (mostly one-clip batches), the two batches with the fewest clips are merged instead. With one
    process nothing changes.
    """
    batches = list(batches)
    n = sum(len(b) for b in batches)
    while len(batches) % world_size:
        more = -(-len(batches) // world_size) * world_size
        if n >= more:  # enough clips for the next multiple: cut the largest batch (the first of equals)
            i = max(range(len(batches)), key=lambda k: (len(batches[k]), -k))
            half = len(batches[i]) // 2
            batches[i : i + 1] = [batches[i][:half], batches[i][half:]]
        else:
            i, j = sorted(sorted(range(len(batches)), key=lambda k: (len(batches[k]), k))[:2])
            batches[i] = batches[i] + batches.pop(j)
    return batches


def step_sizes(n_batches: int, pos: int, grad_accum: int) -> list[int]:
    """Micro-batches of each optimizer step left in an epoch of ``n_batches``, from micro-batch ``pos`` on.

    Steps take ``grad_accum`` micro-batches each; the epoch's last one takes what is left, so every
    epoch of at least one batch makes at least one step (a small train set with a large ``grad_accum``
    still trains, and no batch is dropped).
    """
    return [min(grad_accum, n_batches - p) for p in range(pos, n_batches, grad_accum)]


# ---------------------------------------------------------------------------------------------
# datasets


def _item_rng(seed: int, item: Item) -> tuple[np.random.Generator, torch.Generator]:
    seq = [seed, item.epoch, item.index, int(round(item.factor * 1000))]
    if item.channel != CLEAN:
        seq.append(zlib.crc32(item.channel.encode()))
    np_rng = np.random.default_rng(seq)
    gen = torch.Generator().manual_seed(int(np_rng.integers(0, 2**62)))
    return np_rng, gen


class FeatureDataset(torch.utils.data.Dataset):
    """Audio -> (speed perturbation, channel, noise) -> Whisper log-mel -> SpecAugment.

    Features are computed on the standard 30 s window (as at decode time) and,
    when ``trimmed`` and the item is not a padded one, cut to the clip's real length.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        feature_extractor,
        augment: AugmentConfig | None,
        seed: int,
        trimmed: bool = True,
    ):
        self.examples = examples
        self.fe = feature_extractor
        self.augment = augment
        self.seed = seed
        self.trimmed = trimmed
        self.channels = TrainChannels(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def wave(self, item: Item, np_rng: np.random.Generator | None) -> np.ndarray:
        ex = self.examples[item.index]
        wave = ex.utt.load_audio(ex.manifest_dir, sr=SAMPLE_RATE)
        wave = speed_perturb(wave, item.factor, SAMPLE_RATE)
        wave = self.channels.apply(wave, ex.utt, item.channel, item.factor)
        a = self.augment
        if a is not None and np_rng is not None and a.noise_prob > 0 and np_rng.random() < a.noise_prob:
            wave = add_noise(wave, float(np_rng.uniform(*a.noise_snr_db)), np_rng)
        return wave

    def __getitem__(self, item: Item) -> dict:
        np_rng, gen = _item_rng(self.seed, item)
        wave = self.wave(item, np_rng if self.augment else None)
        feats = self.fe(wave, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]
        n = mel_length(len(wave), feats.shape[-1])
        trimmed = self.trimmed and not item.padded
        x = torch.from_numpy(np.ascontiguousarray(feats[:, :n] if trimmed else feats))
        a = self.augment
        if a is not None and (a.time_masks or a.freq_masks):
            x = spec_augment(
                x,
                time_masks=a.time_masks,
                time_max_width=int(round(a.time_mask_max_s * SAMPLE_RATE / 160)),
                freq_masks=a.freq_masks,
                freq_max_width=a.freq_mask_max_bins,
                length=n,
                generator=gen,
            )
        ex = self.examples[item.index]
        return {
            "features": x,
            "length": n if trimmed else x.shape[-1],
            "padded": item.padded,
            "labels": ex.labels,
            "prefix_len": ex.prefix_len,
            "ctc_labels": ex.ctc_labels,
            "id": ex.utt.id,
        }


class StateDataset(torch.utils.data.Dataset):
    """Cached encoder states (S, d) of each clip at its speed factor and channel, with time masking.

    ``cache`` holds the trimmed states; ``padded_cache`` those of the 30-s padded window, which
    padded items read (S = the encoder's 1500 positions).
    """

    def __init__(self, examples: Sequence[Example], cache, augment: AugmentConfig | None, seed: int,
                 padded_cache=None):  # fmt: skip
        self.examples = examples
        self.cache = cache
        self.padded_cache = padded_cache
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, item: Item) -> dict:
        ex = self.examples[item.index]
        if item.padded and self.padded_cache is None:
            raise ValueError("a padded batch but no cache of padded encoder states (train.padded_share)")
        x = (self.padded_cache if item.padded else self.cache).get(ex.utt.id, item.factor, item.channel)
        a = self.augment
        if a is not None and a.time_masks:
            _, gen = _item_rng(self.seed, item)
            # Encoder frames are 20 ms; masked frames become 0 (no "neutral" value exists for states).
            x = spec_augment(
                x,
                time_masks=a.time_masks,
                time_max_width=int(round(a.time_mask_max_s * 50)),
                time_axis=0,
                generator=gen,
                fill=0.0,
            )
        return {
            "states": x,
            "length": x.shape[0],
            "padded": item.padded,
            "labels": ex.labels,
            "prefix_len": ex.prefix_len,
            "ctc_labels": ex.ctc_labels,
            "id": ex.utt.id,
        }


def _pad_labels(samples: Sequence[dict], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder inputs (labels[:-1], padded with ``pad_id``) and targets (labels[1:], prefix/pad = -100)."""
    width = max(len(s["labels"]) for s in samples) - 1
    inputs = torch.full((len(samples), width), pad_id, dtype=torch.long)
    targets = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(samples):
        lab = torch.tensor(s["labels"], dtype=torch.long)
        inputs[i, : len(lab) - 1] = lab[:-1]
        tgt = lab[1:].clone()
        tgt[: s["prefix_len"] - 1] = IGNORE_INDEX  # forced prefix tokens are given at decode time
        targets[i, : len(tgt)] = tgt
    return inputs, targets


def collate(samples: Sequence[dict], pad_id: int) -> dict:
    """Pad a list of dataset samples into a batch (features or states, zero-padded).

    Samples on the 30-s padded window (``padded``) among trimmed ones form a sub-batch of their own,
    ``batch["padded"]`` (padding the trimmed clips to 1500 frames would cost what the window does);
    ``batch["ids"]`` names every clip of both.
    """
    trimmed = [s for s in samples if not s.get("padded")]
    padded = [s for s in samples if s.get("padded")]
    if not trimmed or not padded:
        return _collate_one(samples, pad_id)
    batch = _collate_one(trimmed, pad_id)
    batch["padded"] = _collate_one(padded, pad_id)
    batch["ids"] = batch["ids"] + batch["padded"].pop("ids")
    return batch


def _collate_one(samples: Sequence[dict], pad_id: int) -> dict:
    key = "features" if "features" in samples[0] else "states"
    lengths = torch.tensor([s["length"] for s in samples], dtype=torch.long)
    if key == "features":
        t = max(s[key].shape[-1] for s in samples)
        x = torch.zeros(len(samples), samples[0][key].shape[0], t)
        for i, s in enumerate(samples):
            x[i, :, : s[key].shape[-1]] = s[key]
    else:
        t = max(s[key].shape[0] for s in samples)
        x = torch.zeros(len(samples), t, samples[0][key].shape[1])
        for i, s in enumerate(samples):
            x[i, : s[key].shape[0]] = s[key]
    inputs, targets = _pad_labels(samples, pad_id)
    batch = {key: x, "lengths": lengths, "decoder_input_ids": inputs, "targets": targets, "ids": [s["id"] for s in samples]}
    if samples[0].get("ctc_labels"):
        batch["ctc_labels"], batch["ctc_lengths"] = pad_ctc_labels([s["ctc_labels"] for s in samples])
    return batch


def batch_seconds_of(batch: list[Item], examples: Sequence[Example]) -> float:
    """Seconds of audio in a batch (after speed perturbation)."""
    return float(sum(examples[it.index].utt.duration / it.factor for it in batch))

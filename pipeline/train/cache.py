"""On-disk cache of (lower) Whisper encoder states, trimmed to each clip's length (or of its 30-s padded window).

With a frozen encoder, or one whose top k layers train, everything below layer
L-k gives the same output at every epoch: computing it once turns a training
step into "top k layers + decoder". States are stored per (utterance, speed
factor, channel) as float16 (half the disk and page-cache footprint; the rounding is far
below the model's own noise) in sharded safetensors files:

    <cache_dir>/<fingerprint>/meta.json                 what was cached (model, layer, ...)
    <cache_dir>/<fingerprint>/index.json                key -> shard file, frames
    <cache_dir>/<fingerprint>/shard-00000.safetensors   {"<utt id>@<factor>[#<channel>]": (S, d) fp16}

A shard is written to a temporary name and renamed, then the index is
rewritten atomically, so a killed build resumes from the last whole shard.
Builds take an exclusive lock on the directory and re-read the index under it:
two trainings that share a cache (a recipe's decoder and CTC systems, or a
sweep) never overwrite each other's shards or index entries, and the second
one computes only what the first did not.
The fingerprint hashes the encoder weights the states depend on, so a cache is
never reused for a different model or split point; with babble among the channels
(``augment.channels``) it also hashes the clips babble is made of.

A training reads the states back one clip at a time (:mod:`pipeline.train.shard_reader`: a
few shard files open, none mapped into memory) and keeps only the index, compactly
(:class:`CacheIndex`): its memory does not grow with the cache, whose size on disk does
(d_model x 2 bytes x 50 frames a second: 184 MB per hour of audio and speed factor for whisper-base).

States of the 30-s padded window (``trimmed=False``, for ``train.padded_share``) live in a
cache of their own (another fingerprint): 1500 frames a clip whatever its length, i.e.
1500 x d_model x 2 bytes (1.5 MB for whisper-base) per clip and speed factor; a run caches
only the clips its batch plan puts on the padded window.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from array import array
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from data_prep.degrade import CLEAN
from data_prep.outputs import atomic_write_text
from pipeline.models.encoder import encode_trimmed
from pipeline.train.shard_reader import ShardReader

log = logging.getLogger(__name__)


MAX_SHARD_BYTES = 64 * 2**20  # states a build holds before writing them as a shard


def cache_key(utt_id: str, factor: float, channel: str = CLEAN) -> str:
    """A clip's key: its id, speed factor and (unless clean) channel."""
    return f"{utt_id}@{factor:g}" + ("" if channel == CLEAN else f"#{channel}")


def encoder_fingerprint(encoder: torch.nn.Module, stop: int, extra: dict | None = None) -> str:
    """Hash of the weights that determine the states after layer ``stop`` (plus ``extra`` settings)."""
    h = hashlib.sha256()
    h.update(json.dumps({"stop": stop, **(extra or {})}, sort_keys=True).encode())
    modules = [encoder.conv1, encoder.conv2, encoder.embed_positions, *encoder.layers[:stop]]
    for m in modules:
        for name, t in sorted(m.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class CacheIndex:
    """Which shard holds each cached key, and its frame count: one dict of row numbers and two
    arrays, rather than a dict per entry (what ``index.json`` holds, in memory for the whole run)."""

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}
        self._shard = array("i")  # row -> position in self.shards
        self._frames = array("i")
        self.shards: list[str] = []  # the shard file names, in the order first seen
        self._shard_pos: dict[str, int] = {}

    @classmethod
    def from_entries(cls, entries: dict[str, dict]) -> CacheIndex:
        """From ``index.json``'s ``{key: {"shard": name, "frames": n}}``."""
        index = cls()
        for key, entry in entries.items():
            index.add(key, entry["shard"], int(entry["frames"]))
        return index

    def entries(self) -> dict[str, dict]:
        """``index.json``'s form of the index."""
        return {key: {"shard": self.shards[self._shard[row]], "frames": self._frames[row]} for key, row in self._rows.items()}

    def add(self, key: str, shard: str, frames: int) -> None:
        pos = self._shard_pos.get(shard)
        if pos is None:
            pos = self._shard_pos[shard] = len(self.shards)
            self.shards.append(shard)
        row = self._rows.get(key)
        if row is None:
            self._rows[key] = len(self._shard)
            self._shard.append(pos)
            self._frames.append(frames)
        else:
            self._shard[row], self._frames[row] = pos, frames

    def update(self, other: CacheIndex) -> None:
        """Add (or overwrite with) every entry of ``other``."""
        for key, row in other._rows.items():
            self.add(key, other.shards[other._shard[row]], other._frames[row])

    def shard_of(self, key: str) -> str | None:
        row = self._rows.get(key)
        return None if row is None else self.shards[self._shard[row]]

    def frames_of(self, key: str) -> int | None:
        row = self._rows.get(key)
        return None if row is None else self._frames[row]

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self):
        return iter(self._rows)


class EncoderStateCache:
    """Read/write access to one cache directory (one model, one split layer)."""

    def __init__(self, root: str | Path, fingerprint: str, meta: dict | None = None, *, max_open_shards: int = 4):
        self.dir = Path(root) / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "meta.json"
        if meta is not None and not meta_path.exists():
            atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self.index = self._read_index()
        self.reader = ShardReader(self.dir, max_open=max_open_shards)

    def _read_index(self) -> CacheIndex:
        path = self.dir / "index.json"
        if not path.exists():
            return CacheIndex()
        try:
            return CacheIndex.from_entries(json.loads(path.read_text(encoding="utf-8"))["entries"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: corrupt cache index ({e}); delete {self.dir} to rebuild") from e

    def _write_index(self) -> None:
        atomic_write_text(self.dir / "index.json", json.dumps({"entries": self.index.entries()}, sort_keys=True) + "\n")

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def missing(self, keys: Sequence[str]) -> list[str]:
        return [k for k in keys if k not in self.index]

    # -- reading ---------------------------------------------------------------------------

    def get(self, utt_id: str, factor: float = 1.0, channel: str = CLEAN) -> torch.Tensor:
        """States (S, d) as float32, read from their shard file (at most ``max_open_shards`` files open,
        none mapped: see :mod:`pipeline.train.shard_reader`)."""
        key = cache_key(utt_id, factor, channel)
        shard = self.index.shard_of(key)
        if shard is None:
            raise KeyError(f"{key} is not in the encoder cache {self.dir}")
        return self.reader.read(shard, key).float()

    # -- building --------------------------------------------------------------------------

    def _next_shard_name(self) -> str:
        used = set(self.index.shards)
        i = len(used)
        while f"shard-{i:05d}.safetensors" in used or (self.dir / f"shard-{i:05d}.safetensors").exists():
            i += 1
        return f"shard-{i:05d}.safetensors"

    def _flush(self, pending: dict[str, torch.Tensor]) -> None:
        if not pending:
            return
        name = self._next_shard_name()
        tmp = self.dir / f".{name}.tmp"
        save_file(pending, str(tmp))
        os.replace(tmp, self.dir / name)
        for key, t in pending.items():
            self.index.add(key, name, int(t.shape[0]))
        self._write_index()
        pending.clear()

    @torch.no_grad()
    def build(
        self,
        encoder: torch.nn.Module,
        jobs: Sequence[tuple[str, float, str]],
        features_of,
        *,
        stop: int,
        batch_size: int = 8,
        shard_size: int = 200,
        shard_bytes: int = MAX_SHARD_BYTES,
        device: torch.device | str = "cpu",
        progress: bool = True,
    ) -> int:
        """Compute and store the states of every (utt id, factor, channel) job not cached yet.

        ``features_of(utt_id, factor, channel) -> (features (n_mels, T), mel_length)``. Jobs
        should be sorted by duration so that batches pad little. A shard is written once it
        holds ``shard_size`` clips or ``shard_bytes`` of states, whichever comes first: what the
        build holds in memory (200 padded windows of whisper-base would be 300 MB). Returns the
        number of clips computed.
        """
        with open(self.dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            self.index.update(self._read_index())  # what other processes added since we opened it
            todo = [job for job in jobs if cache_key(*job) not in self.index]
            if not todo:
                return 0
            self._build_locked(encoder, todo, features_of, stop, batch_size, (shard_size, shard_bytes), device, progress)
        return len(todo)

    def _build_locked(
        self, encoder: torch.nn.Module, todo: list[tuple[str, float, str]], features_of, stop: int, batch_size: int,
        shard_limits: tuple[int, int], device: torch.device | str, progress: bool,
    ) -> None:  # fmt: skip
        was_training = encoder.training
        encoder.eval()
        pending: dict[str, torch.Tensor] = {}
        bar = tqdm(total=len(todo), desc="caching encoder states", unit="clip", disable=not progress)
        try:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                feats, lens = zip(*(features_of(*job) for job in chunk))
                t = max(x.shape[-1] for x in feats)
                batch = torch.zeros(len(feats), feats[0].shape[0], t)
                for i, x in enumerate(feats):
                    batch[i, :, : x.shape[-1]] = x
                dtype = next(encoder.parameters()).dtype
                hidden, enc_lens = encode_trimmed(
                    encoder, batch.to(device, dtype), torch.tensor(lens, device=device), stop=stop
                )
                for i, job in enumerate(chunk):
                    pending[cache_key(*job)] = hidden[i, : int(enc_lens[i])].to("cpu", torch.float16).contiguous()
                if len(pending) >= shard_limits[0] or sum(x.nbytes for x in pending.values()) >= shard_limits[1]:
                    self._flush(pending)
                bar.update(len(chunk))
            self._flush(pending)
        finally:
            bar.close()
            encoder.train(was_training)


def train_state_cache_id(
    encoder: torch.nn.Module, stop: int, feature_extractor, trimmed: bool = True, channels_id: str = ""
) -> tuple[str, dict]:
    """(fingerprint, settings) of the train-state cache for ``encoder`` below layer ``stop``
    (``trimmed``: the clips' real lengths, else the 30-s padded window; ``channels_id``: what the channels
    depend on, :meth:`pipeline.train.channels.TrainChannels.fingerprint`)."""
    extra = {"n_mels": feature_extractor.feature_size, "sr": feature_extractor.sampling_rate, "trimmed": trimmed}
    if channels_id:  # else the fingerprint of a cache without channels
        extra["channels"] = channels_id
    return encoder_fingerprint(encoder, stop, extra), extra


def open_train_state_cache(
    root: str | os.PathLike, encoder: torch.nn.Module, stop: int, feature_extractor, trimmed: bool = True,
    channels_id: str = "",
) -> EncoderStateCache:
    """The train-state cache of ``encoder`` below layer ``stop`` under ``root``, to read what is there."""
    return EncoderStateCache(root, train_state_cache_id(encoder, stop, feature_extractor, trimmed, channels_id)[0])


def build_train_state_cache(
    root: str | os.PathLike, encoder: torch.nn.Module, stop: int, feature_extractor, examples: Sequence,
    speed_factors: Sequence[float], *, base_model: str, seed: int, batch_size: int, shard_size: int,
    device, progress: bool = True, trimmed: bool = True, only: set[tuple[int, float, str]] | None = None,
    channels: Sequence[str] = (CLEAN,), shard_bytes: int = MAX_SHARD_BYTES,
) -> EncoderStateCache:  # fmt: skip
    """Lower encoder states (after layer ``stop``) of every train example at every speed factor and
    channel, on each clip's real length or (``trimmed=False``) on the 30-s padded window; ``only``: just
    these (example index, speed factor, channel) triples.

    Both trainers build their cache through it (:meth:`pipeline.train.loop.TrainingLoop._train_state_cache`):
    the same encoder and split point give the same fingerprint, so one recipe's second
    system reuses the first one's cache.
    """
    from pipeline.train.data import FeatureDataset, Item

    plain = FeatureDataset(examples, feature_extractor, None, seed, trimmed=trimmed)
    fingerprint, extra = train_state_cache_id(encoder, stop, feature_extractor, trimmed,
                                              plain.channels.fingerprint(channels))  # fmt: skip
    cache = EncoderStateCache(root, fingerprint, {"base_model": base_model, "stop_layer": stop, **extra})
    by_id = {ex.utt.id: ex.index for ex in examples}

    def features_of(utt_id: str, factor: float, channel: str) -> tuple[torch.Tensor, int]:
        s = plain[Item(by_id[utt_id], factor, 0, channel=channel)]
        return s["features"], s["length"]

    # Longest first within similar lengths: batches pad little.
    jobs = sorted(((ex.utt.id, f, c) for ex in examples for f in sorted(set(speed_factors)) for c in dict.fromkeys(channels)
                   if only is None or (ex.index, f, c) in only),
                  key=lambda j: examples[by_id[j[0]]].utt.duration / j[1])  # fmt: skip
    n = cache.build(encoder, jobs, features_of, stop=stop, batch_size=batch_size, shard_size=shard_size,
                    shard_bytes=shard_bytes, device=device, progress=progress)  # fmt: skip
    if n:
        log.info("cached %s encoder states (after layer %d) of %d train clips in %s",
                 "trimmed" if trimmed else "30-s padded", stop, n, cache.dir)  # fmt: skip
    return cache

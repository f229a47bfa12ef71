"""Shifted test sets: a prepared split heard through a telephone line, in noise, among other talkers, or in a
reverberant room (``python -m pipeline degrade``), to measure how much a system loses outside its domain.

    python -m pipeline degrade --manifest data/x/test.jsonl --condition telephone --seed 0 \\
        --out data/x_shifted/test_telephone

OUT (written beside it and swapped in whole: a reader sees the old folder or the new one)
    <OUT name>.jsonl   the degraded utterances: the same ids, texts and speakers, ``audio`` pointing at
                       ``audio/NNNNNN.flac`` (16 kHz, 16 bit; NNNNNN: the input line), so ``score`` names
                       the test set after the folder and pairs its utterances with the clean ones
    rejects.jsonl      input utterances that could not be degraded, each with a reason
    degrade.json       the condition, seed, inputs, counts and what was measured on the written audio:
                       SNR per clip (additive noise), RT60 of each impulse response (reverb), energy above
                       4 kHz (telephone), with their means

Conditions (:class:`Condition`): ``telephone`` (8 kHz, 300-3400 Hz, 8-bit mu-law), ``noise`` (stationary
pink or brown noise at ``snr_db``), ``babble`` (``talkers`` other speakers of ``--noise-manifest``, e.g. the
training split, at ``snr_db``), ``reverb`` (a synthetic impulse response with reverberation time ``rt60_s``).
Every clip draws its randomness from (seed, utterance id) alone: the same inputs and seed write the same bytes.
The inputs are only read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.manifest import Reject, Source, Utterance, read_manifest, read_manifest_lines, write_jsonl
from data_prep.outputs import (
    RunIdentity,
    atomic_write_text,
    build_dir,
    check_replaceable,
    check_resume,
    exclusive,
    guard_output,
    read_identity,
    replace_dir,
    write_identity,
)

CONDITIONS = ("telephone", "noise", "babble", "reverb")
DEGRADE_JSON = "degrade.json"
REJECTS_FILE = "rejects.jsonl"
AUDIO_DIR = "audio"
IDENTITY_FILE = ".run.json"
#: What ``prepare`` records its settings in, next to the manifests (its text-rules name is carried over).
PREPARE_JSON = "prepare.json"
#: Highest sample level written; a louder mix is turned down as a whole (its SNR unchanged).
PEAK = 0.999


class DegradeError(ValueError):
    """Settings or inputs ``degrade`` cannot work with; the message names the option or file."""


@dataclass(frozen=True)
class Condition:
    """One acoustic condition. ``snr_db``: noise and babble; ``color``: noise; ``talkers``: babble;
    ``rt60_s``: reverb."""

    kind: str
    snr_db: float = 10.0
    color: str = "pink"
    talkers: int = 4
    rt60_s: float = 0.5

    def __post_init__(self) -> None:
        from data_prep.degrade_dsp import NOISE_COLORS

        if self.kind not in CONDITIONS:
            raise DegradeError(f"--condition must be one of {', '.join(CONDITIONS)}, not {self.kind!r}")
        if not (math.isfinite(self.snr_db) and -20 <= self.snr_db <= 60):
            raise DegradeError(f"--snr {self.snr_db}: expected a level between -20 and 60 dB")
        if self.color not in NOISE_COLORS:
            raise DegradeError(f"--noise-color must be one of {', '.join(NOISE_COLORS)}, not {self.color!r}")
        if self.talkers < 1:
            raise DegradeError(f"--talkers {self.talkers}: at least one talker makes babble")
        if not (math.isfinite(self.rt60_s) and 0.05 <= self.rt60_s <= 5):
            raise DegradeError(f"--rt60 {self.rt60_s}: expected 0.05 to 5 seconds")

    @property
    def additive(self) -> bool:
        return self.kind in ("noise", "babble")

    @property
    def label(self) -> str:
        """A short name: telephone, noise_pink_10db, babble_10db, reverb_0.5s."""
        snr = f"{self.snr_db:g}db"
        return {"telephone": "telephone", "noise": f"noise_{self.color}_{snr}", "babble": f"babble_{snr}",
                "reverb": f"reverb_{self.rt60_s:g}s"}[self.kind]  # fmt: skip

    def settings(self) -> dict:
        """The settings that shape this condition (the others are defaults it ignores)."""
        extra = {"noise": {"snr_db": self.snr_db, "color": self.color},
                 "babble": {"snr_db": self.snr_db, "talkers": self.talkers},
                 "reverb": {"rt60_s": self.rt60_s}}.get(self.kind, {})  # fmt: skip
        return {"kind": self.kind, **extra}


#: The channel of a clip as recorded (``augment.channels``: no condition applied).
CLEAN = "clean"
_CHANNEL_FORMS = "clean, telephone, babble<SNR dB>, noise<SNR dB> (pink), reverb<RT60 s>, e.g. babble10 or reverb0.5"


def channel_condition(name: str) -> Condition | None:
    """The condition a training channel name stands for (None: ``clean``): ``telephone``, ``babble<SNR dB>``,
    ``noise<SNR dB>`` (pink noise), ``reverb<RT60 s>``, each with degrade's defaults otherwise."""
    if name == CLEAN:
        return None
    match = re.fullmatch(r"(telephone)|(babble|noise|reverb)(-?\d+(?:\.\d+)?)", name)
    if match is None:
        raise DegradeError(f"unknown channel {name!r}: expected {_CHANNEL_FORMS}")
    if match.group(1):
        return Condition("telephone")
    kind, value = match.group(2), float(match.group(3))
    try:
        return Condition(kind, rt60_s=value) if kind == "reverb" else Condition(kind, snr_db=value)
    except DegradeError as e:
        raise DegradeError(f"channel {name!r}: {str(e).split(': ', 1)[-1]}") from e


@dataclass(frozen=True)
class ClipStats:
    """What was measured on one written clip (None: not measured for this condition)."""

    id: str
    snr_db: float | None = None  # energy of the (scaled) clean clip over that of written - clean
    rt60_s: float | None = None  # of the impulse response it was convolved with (Schroeder T20)
    above_4k_db: float | None = None  # share of the written clip's energy above 4 kHz, in dB
    attenuation_db: float = 0.0  # the whole mix turned down to stay below full scale

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items() if v is not None}


@dataclass
class DegradeSummary:
    """The record written to degrade.json."""

    condition: Condition
    seed: int
    manifest: str
    noise_manifest: str | None
    text_rules: str | None
    written: int = 0
    rejected: Counter = field(default_factory=Counter)
    clips: list[ClipStats] = field(default_factory=list)

    def measured(self) -> dict:
        """Mean, min and max of each measurement over the written clips."""
        out = {}
        for name in ("snr_db", "rt60_s", "above_4k_db", "attenuation_db"):
            values = [getattr(c, name) for c in self.clips if getattr(c, name) is not None]
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                out[name] = {"mean": round(sum(finite) / len(finite), 4), "min": round(min(finite), 4),
                             "max": round(max(finite), 4)}  # fmt: skip
        return out

    def to_json(self) -> dict:
        return {
            "v": 1, "condition": self.condition.settings(), "label": self.condition.label, "seed": self.seed,
            "manifest": self.manifest, "noise_manifest": self.noise_manifest, "text_rules": self.text_rules,
            "counts": {"input": self.written + sum(self.rejected.values()), "written": self.written,
                       "rejected": dict(sorted(self.rejected.items()))},
            "measured": self.measured(), "clips": [c.to_json() for c in self.clips],
        }  # fmt: skip


def clip_generator(seed: int, utt_id: str):
    """The random generator of one clip: a function of the seed and the utterance id only."""
    import torch

    digest = hashlib.sha256(f"{seed}\0{utt_id}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def derived_text_rules(folder: str | os.PathLike) -> str | None:
    """The text-rules name a degraded set in ``folder`` carries over from its source (None: none recorded)."""
    try:
        rules = json.loads((Path(folder) / DEGRADE_JSON).read_text(encoding="utf-8"))["text_rules"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rules if isinstance(rules, str) and rules else None


def text_rules_of(manifest: str | os.PathLike) -> str | None:
    """The text-rules name the manifest was normalized with: from ``prepare.json`` next to it (or, for a
    degraded set, its ``degrade.json``); None when neither records one."""
    folder = Path(manifest).parent
    try:
        rules = json.loads((folder / PREPARE_JSON).read_text(encoding="utf-8"))["process"]["rules"]
    except (OSError, ValueError, KeyError, TypeError):
        return derived_text_rules(folder)
    return rules if isinstance(rules, str) and rules else None


class BabblePool:
    """The noise manifest's clips by speaker, read when first used."""

    def __init__(self, manifest: str | os.PathLike):
        self.dir = Path(manifest).parent
        # a training manifest may repeat lines
        self._index((u, self.dir) for u in read_manifest(manifest, unique_ids=False))

    @classmethod
    def of(cls, clips: Iterable[tuple[Utterance, Path]]) -> BabblePool:
        """A pool of (utterance, folder its audio path is relative to) pairs, e.g. a training set's clips."""
        pool = cls.__new__(cls)
        pool.dir = None
        pool._index(clips)
        return pool

    def _index(self, clips: Iterable[tuple[Utterance, Path]]) -> None:
        by_speaker: dict[str, dict[str, Utterance]] = {}
        self._dirs: dict[str, Path] = {}
        for u, folder in clips:
            by_speaker.setdefault(u.speaker, {})[u.id] = u
            self._dirs[u.id] = Path(folder)
        self.speakers = {s: [d[k] for k in sorted(d)] for s, d in sorted(by_speaker.items())}
        self._audio: dict[str, object] = {}

    def fingerprint(self) -> str:
        """A short hash of the pool's clips (speaker, id, audio file and window): what babble built from it
        depends on, whichever folder the manifest that lists them lies in."""
        h = hashlib.sha256()
        for spk, utts in self.speakers.items():
            for u in utts:
                audio = os.path.abspath(os.path.join(self._dirs[u.id], u.audio))
                h.update(f"{spk}\0{u.id}\0{audio}\0{u.offset}\0{u.duration}\n".encode())
        return h.hexdigest()[:12]

    def audio(self, utt: Utterance):
        import torch

        if utt.id not in self._audio:
            self._audio[utt.id] = torch.from_numpy(utt.load_audio(self._dirs[utt.id]))
        return self._audio[utt.id]

    def others(self, utt: Utterance) -> list[str]:
        """Speakers other than ``utt``'s (every speaker when ``utt``'s is unknown)."""
        return [s for s in self.speakers if s != utt.speaker or not utt.speaker]

    def talkers(self, utt: Utterance, k: int, n: int, generator) -> list[list]:
        """Up to ``k`` other speakers' clips (each starting at a random clip), enough for ``n`` samples."""
        import torch

        others = self.others(utt)
        picked = [others[int(i)] for i in torch.randperm(len(others), generator=generator)[:k]]
        out = []
        for spk in picked:
            clips = [c for c in self.speakers[spk] if c.id != utt.id]
            start = int(torch.randint(0, len(clips), (1,), generator=generator))
            audio, total = [], 0
            for c in clips[start:] + clips[:start]:
                a = self.audio(c)
                if a.numel():
                    audio.append(a)
                    total += a.numel()
                if total >= 2 * n:
                    break
            if audio:
                out.append(audio)
        return out


def _reject(reason: str, detail: str, where: Source, utt: Utterance) -> Reject:
    return Reject(reason, detail, where, utt.id, utt.audio, utt.text_raw)


def _load(utt: Utterance, manifest_dir: Path, where: Source, cond: Condition):
    """The clip's samples as a tensor, or a Reject saying why there are none to degrade."""
    import numpy as np
    import torch

    from data_prep.audio import AudioError

    path = utt.audio_path(manifest_dir)
    if not path.exists():
        return _reject("missing_audio", f"{path}: file not found", where, utt)
    try:
        y = utt.load_audio(manifest_dir)
    except AudioError as e:
        reason = "nan_samples" if "NaN" in str(e) else "unreadable_audio"
        return _reject(reason, str(e), where, utt)
    if y.size == 0:
        return _reject("zero_length", f"{path}: no samples in the utterance's window", where, utt)
    if cond.additive and float(np.ptp(y)) == 0.0:
        return _reject("silent_audio", f"{path}: every sample is the same: no signal to set a noise level "
                       "against", where, utt)  # fmt: skip
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


def degrade_clip(x, cond: Condition, generator, talkers: Sequence[Sequence] = ()):
    """(degraded samples, what to measure against: the clean clip, or the impulse response)."""
    from data_prep import degrade_dsp as dsp

    if cond.kind == "telephone":
        return dsp.telephone(x), None
    if cond.kind == "reverb":
        rir = dsp.synthetic_rir(cond.rt60_s, generator)
        return dsp.reverberate(x, rir), rir
    if cond.kind == "noise":
        noise = dsp.colored_noise(x.shape[-1], cond.color, generator)
    else:
        noise = dsp.babble(talkers, x.shape[-1], generator)
    return dsp.mix_at_snr(x, noise, cond.snr_db), None


def full_scale_gain(y) -> float:
    """The gain that brings ``y`` (a tensor) below full scale (1.0 when it is already): the whole clip turned
    down, so that additive noise keeps its SNR."""
    peak = float(y.abs().max()) if y.numel() else 0.0
    return PEAK / peak if peak > PEAK else 1.0


def _write_clip(x, y, rir, cond: Condition, path: Path, utt_id: str) -> ClipStats:
    """Write ``y`` (turned down below full scale if needed) as 16-bit FLAC; measure what was written."""
    import numpy as np
    import torch

    from data_prep import degrade_dsp as dsp
    from data_prep.audio import to_pcm16, write_flac

    gain = full_scale_gain(y)
    pcm = to_pcm16((y * gain).numpy())
    write_flac(path, pcm)
    written = torch.from_numpy(pcm.astype(np.float32) / 32767.0)
    stats = ClipStats(utt_id, attenuation_db=max(0.0, -20 * math.log10(gain)))  # never -0.0
    if cond.additive:
        return dataclasses.replace(stats, snr_db=dsp.snr_db(x * gain, written))
    if cond.kind == "reverb":
        return dataclasses.replace(stats, rt60_s=dsp.rt60_of(rir))
    share = dsp.band_energy_fraction(written, 4000.0)
    return dataclasses.replace(stats, above_4k_db=10 * math.log10(max(share, 1e-30)))  # JSON has no -inf


def _guard(out: Path, manifest: str | os.PathLike, noise_manifest: str | os.PathLike | None,
           rows: Sequence[tuple[int, Utterance]]) -> None:  # fmt: skip
    """Refuse an OUT that is, holds or lies in an input: the manifests and the folders of their audio."""
    folders = {u.audio_path(Path(manifest).parent).parent for _, u in rows}
    guard_output(out, [manifest, noise_manifest, *sorted(folders)])
    check_replaceable(out)


def degrade(manifest: str | os.PathLike, out: str | os.PathLike, condition: Condition, *, seed: int = 0,
            noise_manifest: str | os.PathLike | None = None, id_suffix: str = "",
            force: bool = False) -> DegradeSummary:  # fmt: skip
    """Write the degraded copy of ``manifest`` into ``out`` (see the module docstring); returns its record.

    ``id_suffix``: appended to every utterance id (the audio is that of the same ids without it), for
    sets of one split in several conditions that are pooled, e.g. as unlabeled audio to pseudo-label;
    a test set keeps its ids, so that ``score`` pairs it with the clean one.
    ``force``: replace an ``out`` that holds a degraded set of other inputs or settings (else refused).
    """
    out = Path(out)
    if id_suffix and not re.fullmatch(r"[A-Za-z0-9_.-]+", id_suffix):
        raise DegradeError(f"--id-suffix {id_suffix!r}: letters, digits, '_', '.' and '-' only")
    if condition.kind == "babble" and noise_manifest is None:
        raise DegradeError("--condition babble needs --noise-manifest (other speakers' audio, e.g. the train split)")
    if condition.kind != "babble" and noise_manifest is not None:
        raise DegradeError(f"--noise-manifest is for --condition babble, not {condition.kind}")
    rows = read_manifest_lines(manifest)
    _guard(out, manifest, noise_manifest, rows)
    pool = BabblePool(noise_manifest) if noise_manifest is not None else None
    if pool is not None:
        guard_output(out, sorted({u.audio_path(pool.dir).parent for us in pool.speakers.values() for u in us}))
    identity = RunIdentity.of("degrade", {"manifest": manifest, "noise_manifest": noise_manifest},
                              {"condition": condition.settings(), "seed": seed,
                               **({"id_suffix": id_suffix} if id_suffix else {})})  # fmt: skip
    with exclusive(out, "degrade"):
        check_resume(read_identity(out / IDENTITY_FILE), identity, force=force, what=f"--out {out}",
                     has_state=out.is_dir() and any(out.iterdir()), state="a degraded set",
                     record=str(out / IDENTITY_FILE))  # fmt: skip
        tmp = build_dir(out)
        summary = DegradeSummary(condition, seed, str(manifest), None if noise_manifest is None else str(noise_manifest),
                                 text_rules_of(manifest))  # fmt: skip
        _write(tmp, out.name, manifest, rows, summary, pool, id_suffix)
        write_identity(tmp / IDENTITY_FILE, identity)
        replace_dir(tmp, out, "degrade")
    return summary


def _write(tmp: Path, name: str, manifest: str | os.PathLike, rows: Sequence[tuple[int, Utterance]],
           summary: DegradeSummary, pool: BabblePool | None, id_suffix: str = "") -> None:  # fmt: skip
    """Every row degraded into ``tmp`` or rejected; the manifest, rejects and degrade.json written."""
    cond, src_dir = summary.condition, Path(manifest).parent
    kept: list[Utterance] = []
    rejects: list[Reject] = []
    for lineno, utt in rows:
        where = Source(str(manifest), lineno)
        x = _load(utt, src_dir, where, cond)
        if isinstance(x, Reject):
            rejects.append(x)
            continue
        g = clip_generator(summary.seed, utt.id)
        talkers = pool.talkers(utt, cond.talkers, x.shape[-1], g) if pool is not None else ()
        if pool is not None and not talkers:
            rejects.append(_reject("no_noise_source", f"{pool.dir}: no clip of a speaker other than "
                                   f"{utt.speaker!r} to build babble from", where, utt))  # fmt: skip
            continue
        y, rir = degrade_clip(x, cond, g, talkers)
        rel = f"{AUDIO_DIR}/{lineno:06d}.flac"
        summary.clips.append(_write_clip(x, y, rir, cond, tmp / rel, utt.id))
        kept.append(utt.replace(id=utt.id + id_suffix, audio=rel, offset=0.0, duration=x.shape[-1] / 16000, gain=1.0, dc_offset=0.0,
                                sample_rate=16000, channels=1, source=where,
                                source_audio=str(utt.audio_path(src_dir)), flags=(*utt.flags, f"degraded:{cond.label}")))  # fmt: skip
    summary.written = len(kept)
    summary.rejected = Counter(r.reason for r in rejects)
    write_jsonl(tmp / f"{name}.jsonl", kept)
    write_jsonl(tmp / REJECTS_FILE, rejects)
    atomic_write_text(tmp / DEGRADE_JSON, json.dumps(summary.to_json(), indent=1, ensure_ascii=False) + "\n")

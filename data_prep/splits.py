"""Speaker-disjoint train/dev/test splits and the report of what overlaps.

Three ways to split (``--split-by``):

``corpus``    keep the corpus's own split files (CV train/dev/test.tsv, audiofolder split folders)
``ratio``     assign whole speakers by duration ratios with a seed (:func:`ratio_assign`)
``speakers``  name the dev/test speakers (``dev=SPK1,test=SPK2+SPK3``); everyone else is train

``auto`` (the default) is ``speakers`` when speakers are named, else ``corpus``
when every accepted utterance has a corpus split, else ``ratio``. When the
corpus's own split leaves dev or test empty (a Common Voice release without
dev.tsv), ``auto`` carves the missing split out of the train speakers by the
ratios (:func:`carve_missing`, mode ``corpus+carved``); ``--split-by corpus``
keeps the corpus's split as it is. Utterances
without a speaker id are their own pseudo-speaker (all segments of one input
row stay together) and are left out of the overlap check.
"""

from __future__ import annotations

import random
from collections import defaultdict
from itertools import combinations

from data_prep.manifest import Utterance

SPLITS = ("train", "dev", "test")
SPLIT_BY = ("auto", "corpus", "ratio", "speakers")  # assign_splits may also report "corpus+carved"


class SplitError(ValueError):
    """Splits that cannot be made or violate speaker disjointness."""


def parse_ratios(text: str) -> dict[str, float]:
    """``"0.8,0.1,0.1"`` -> {"train": .8, "dev": .1, "test": .1} (normalized to sum 1)."""
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as e:
        raise SplitError(f"--split-ratios {text!r}: expected three numbers like 0.8,0.1,0.1") from e
    if len(vals) != 3 or any(v < 0 for v in vals) or sum(vals) <= 0 or vals[0] <= 0:
        raise SplitError(f"--split-ratios {text!r}: need three non-negative numbers train,dev,test with train > 0")
    return {s: v / sum(vals) for s, v in zip(SPLITS, vals)}


def parse_speakers(text: str) -> dict[str, str]:
    """``"dev=A,test=B+C"`` -> {"A": "dev", "B": "test", "C": "test"}."""
    out: dict[str, str] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        split, _, names = item.partition("=")
        if split not in SPLITS or not names:
            raise SplitError(f"--split-speakers item {item!r}: expected SPLIT=SPK[+SPK...] with SPLIT in {SPLITS}")
        for name in names.split("+"):
            if name in out and out[name] != split:
                raise SplitError(f"--split-speakers: speaker {name!r} named for {out[name]} and {split}")
            out[name] = split
    return out


def speaker_key(u: Utterance) -> str:
    """The speaker used for splitting; an unknown speaker is its input row (file:line)."""
    return u.speaker or f"<row {u.source}>"


def ratio_assign(hours: dict[str, float], ratios: dict[str, float], seed: int) -> dict[str, str]:
    """Whole speakers to splits, close to ``ratios`` of total duration.

    1. Shuffle speakers with ``seed`` (sorted first, so the input order does not matter).
    2. Every split with a ratio > 0 gets one speaker first, in the priority
       train > test > dev, while speakers last: test and dev take the speaker
       closest to their target, train keeps at least one. So 3 speakers give
       1/1/1 and 2 speakers give train and test.
    3. The rest, longest first, go to the split furthest below its target.
    """
    wanted = [s for s in ("train", "test", "dev") if ratios.get(s, 0) > 0]
    spks = sorted(hours)
    random.Random(seed).shuffle(spks)
    total = sum(hours.values())
    target = {s: ratios.get(s, 0) * total for s in SPLITS}
    got = dict.fromkeys(SPLITS, 0.0)
    assign: dict[str, str] = {}
    for split in wanted[1:]:
        free = [s for s in spks if s not in assign]
        if len(free) <= 1:
            break
        pick = min(free, key=lambda s: abs(hours[s] - target[split]))
        assign[pick] = split
        got[split] += hours[pick]
    rest = sorted((s for s in spks if s not in assign), key=lambda s: -hours[s])
    for spk in rest:
        split = max(wanted, key=lambda s: target[s] - got[s])
        assign[spk] = split
        got[split] += hours[spk]
    return assign


def choose_mode(utts: list[Utterance], split_by: str, named: dict[str, str]) -> str:
    """Resolve ``auto`` (see the module docstring)."""
    if split_by != "auto":
        return split_by
    if named:
        return "speakers"
    if utts and all(u.split in SPLITS for u in utts):
        return "corpus"
    return "ratio"


def speaker_hours(utts: list[Utterance]) -> dict[str, float]:
    hours: dict[str, float] = defaultdict(float)
    for u in utts:
        hours[speaker_key(u)] += u.duration / 3600
    return dict(hours)


def carve_missing(utts: list[Utterance], ratios: dict[str, float], seed: int) -> tuple[list[Utterance], list[str]]:
    """Give an empty dev or test split whole train speakers, by ``ratios``; returns (utts, splits carved).

    Only the train speakers move, so the corpus's own dev or test split stays as it was.
    A split whose ratio is 0, or a train split of one speaker, is left empty.
    """
    present = {u.split for u in utts}
    missing = [s for s in ("dev", "test") if s not in present and ratios.get(s, 0) > 0]
    train_hours = speaker_hours([u for u in utts if u.split == "train"])
    if not missing or len(train_hours) < 2:
        return list(utts), []
    assign = ratio_assign(train_hours, {s: ratios[s] for s in ("train", *missing)}, seed)
    carved = sorted({split for split in assign.values()} - {"train"})
    moved = [u.replace(split=assign[speaker_key(u)]) if u.split == "train" else u for u in utts]
    return moved, carved


def assign_splits(
    utts: list[Utterance], split_by: str, ratios: dict[str, float], seed: int, named: dict[str, str]
) -> tuple[list[Utterance], str]:
    """Utterances with their ``split`` set, and the mode used."""
    mode = choose_mode(utts, split_by, named)
    if mode == "corpus":
        missing = [u.id for u in utts if u.split not in SPLITS]
        if missing:
            raise SplitError(f"--split-by corpus: {len(missing)} utterances have no corpus split (e.g. {missing[0]})")
        if split_by == "auto":
            utts, carved = carve_missing(utts, ratios, seed)
            if carved:
                return utts, "corpus+carved"
        return list(utts), mode
    if mode == "speakers":
        known = {u.speaker for u in utts}
        unknown = sorted(set(named) - known)
        if unknown:
            raise SplitError(f"--split-speakers names unknown speakers {unknown}")
        return [u.replace(split=named.get(u.speaker, "train")) for u in utts], mode
    assign = ratio_assign(speaker_hours(utts), ratios, seed)
    return [u.replace(split=assign[speaker_key(u)]) for u in utts], mode


def overlap_report(utts: list[Utterance]) -> dict:
    """Per split counts, and speakers and sentences shared between splits."""
    spk: dict[str, set[str]] = defaultdict(set)
    sent: dict[str, set[str]] = defaultdict(set)
    per: dict[str, dict] = {s: {"utterances": 0, "hours": 0.0} for s in SPLITS}
    for u in utts:
        if u.speaker:
            spk[u.split].add(u.speaker)
        sent[u.split].add(u.text)
        per[u.split]["utterances"] += 1
        per[u.split]["hours"] += u.duration / 3600
    for s in SPLITS:
        per[s]["speakers"] = len(spk[s])
        per[s]["hours"] = round(per[s]["hours"], 4)
    pairs = {}
    for a, b in combinations(SPLITS, 2):
        shared = sorted(spk[a] & spk[b])
        pairs[f"{a}/{b}"] = {
            "shared_speakers": shared,
            "shared_sentences": len(sent[a] & sent[b]),
        }
    return {"splits": per, "overlap": pairs}


def speaker_overlaps(report: dict) -> list[str]:
    """Human-readable speaker overlaps found by :func:`overlap_report`."""
    return [f"{pair}: {', '.join(v['shared_speakers'])}" for pair, v in report["overlap"].items()
            if v["shared_speakers"]]

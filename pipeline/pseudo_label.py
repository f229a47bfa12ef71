"""Pseudo-labels for self-training: a fine-tuned system's transcripts of unlabeled audio.

``python -m pipeline pseudo-label --labeled train.jsonl --unlabeled U.jsonl ... --hyps H.jsonl ... --out OUT``
writes OUT/train.jsonl, the labeled rows followed by every unlabeled utterance whose
hypothesis (joined on utterance id, normalized like the references) passes the checks
below, flagged ``pseudo_label``. The rest go to OUT/rejects.jsonl with a reason, so every
unlabeled utterance ends up in one of the two; OUT/pseudo_label.json counts them.

Checks (the usual failure modes of a decoder run on audio it was not trained on):

- ``no_hypothesis`` / ``empty_hypothesis``: nothing was decoded;
- ``repetition_loop``: an n-gram of 1-4 words repeated more than ``max_repeats`` times
  in a row (a decoder stuck in a loop);
- ``implausible_rate``: characters per second outside the labeled set's range (its 1st
  and 99th percentiles, widened by ``rate_margin``, the lower one after 2 s of allowed
  silence): a hallucination or a truncated output.

The unlabeled manifests only supply audio: their ``text`` (if any) is never read, so dev
or test audio can be used for unsupervised adaptation without its transcripts.
Relative audio paths are rewritten for OUT's directory.

OUT may not be, contain or lie inside an input; one run at a time writes it, under
its in-progress mark; a rerun of other inputs or settings into it (or into a folder
of files it did not write) is refused unless ``--force``: its identity is
OUT/.run.json.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from data_prep.manifest import (
    ManifestError,
    Reject,
    Source,
    Utterance,
    read_manifest,
    read_manifest_lines,
    write_jsonl,
)
from data_prep.outputs import (
    RunIdentity,
    atomic_write_text,
    check_resume,
    exclusive,
    guard_output,
    in_progress,
    read_identity,
    remove_stale_temps,
    write_identity,
)
from data_prep.text.normalize import get_normalizer
from pipeline.decode.hyps import read_hyps_lines
from pipeline.decode.rates import RateBounds

FLAG = "pseudo_label"
#: What OUT holds: the training manifest, the rejects, the summary.
OUTPUT_FILES = ("train.jsonl", "rejects.jsonl", "pseudo_label.json")
#: The identity of the run that wrote OUT.
IDENTITY_FILE = ".run.json"


def repeated_ngram(words: Sequence[str], max_repeats: int) -> str:
    """The first 1-4 word n-gram repeated more than ``max_repeats`` times in a row ("" if none)."""
    for n in range(1, 5):
        for start in range(len(words) - n * (max_repeats + 1) + 1):
            gram = words[start : start + n]
            if all(words[start + k * n : start + (k + 1) * n] == gram for k in range(1, max_repeats + 1)):
                return " ".join(gram)
    return ""


def check(text: str, duration: float, bounds: RateBounds, max_repeats: int) -> tuple[str, str]:
    """("", "") when ``text`` is usable as the label of a clip of ``duration`` s, else (reason, detail)."""
    if not text.strip():
        return "empty_hypothesis", "the decoder wrote nothing"
    loop = repeated_ngram(text.split(), max_repeats)
    if loop:
        return "repetition_loop", f"{loop!r} repeated more than {max_repeats} times in a row"
    implausible = bounds.explain(text, duration)
    if implausible:
        return "implausible_rate", implausible
    return "", ""


def _rebase(utt: Utterance, src_dir: Path, out_dir: Path) -> Utterance:
    """``utt`` with a relative audio path rewritten from ``src_dir`` to ``out_dir``."""
    if Path(utt.audio).is_absolute():
        return utt
    target = os.path.normpath(src_dir / utt.audio)
    return utt.replace(audio=os.path.relpath(target, out_dir))


def read_hyp_texts(paths: Sequence[str | os.PathLike]) -> dict[str, tuple[str, Source]]:
    """Raw hypothesis text and its line, by id, over all ``paths``; an id given twice is an error naming both lines."""
    out: dict[str, tuple[str, Source]] = {}
    for path in paths:
        for lineno, hyp in read_hyps_lines(path):
            if hyp.id in out:
                raise ManifestError(f"{path}:{lineno}: duplicate hypothesis id {hyp.id!r} "
                                    f"(first at {out[hyp.id][1]})")  # fmt: skip
            out[hyp.id] = (hyp.text, Source(str(path), lineno))
    return out


def pseudo_label(
    labeled: str | os.PathLike, unlabeled: Sequence[str | os.PathLike], hyps: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike, *, lang: str, max_repeats: int = 3, rate_margin: float = 1.5, force: bool = False,
) -> dict:  # fmt: skip
    """Write OUT/train.jsonl, OUT/rejects.jsonl and OUT/pseudo_label.json; returns the summary.

    ``force``: replace the outputs of a run of other inputs or settings (else refused, naming what differs).
    """
    out = Path(out_dir)
    guard_output(out, [labeled, *unlabeled, *hyps])
    identity = RunIdentity.of("pseudo-label", {"labeled": labeled, "unlabeled": list(unlabeled), "hyps": list(hyps)},
                              {"lang": lang, "max_repeats": max_repeats, "rate_margin": rate_margin})  # fmt: skip
    with exclusive(out, "pseudo-label"):
        check_resume(read_identity(out / IDENTITY_FILE), identity, force=force, what=f"--out {out}",
                     has_state=any((out / name).exists() for name in OUTPUT_FILES), state="the pseudo-labels",
                     record=str(out / IDENTITY_FILE))  # fmt: skip
        return _pseudo_label(labeled, unlabeled, hyps, out, identity, lang=lang, max_repeats=max_repeats,
                             rate_margin=rate_margin)  # fmt: skip


def _pseudo_label(
    labeled: str | os.PathLike, unlabeled: Sequence[str | os.PathLike], hyps: Sequence[str | os.PathLike],
    out: Path, identity: RunIdentity, *, lang: str, max_repeats: int, rate_margin: float,
) -> dict:  # fmt: skip
    norm = get_normalizer(lang)
    hyp_lines = read_hyp_texts(hyps)
    texts = {k: norm.normalize(text) for k, (text, _) in hyp_lines.items()}

    labeled_utts = read_manifest(labeled, unique_ids=False)  # train: it may repeat lines on purpose
    try:
        bounds = RateBounds.from_labeled(labeled_utts, rate_margin)
    except ValueError as e:
        raise ManifestError(f"{labeled}: {e}") from e
    rows = [_rebase(u, Path(labeled).parent, out) for u in labeled_utts]
    seen = {u.id for u in labeled_utts}
    rejects: list[Reject] = []
    per_source: dict[str, Counter] = {}
    unused = set(texts)
    for manifest in unlabeled:
        counts = per_source.setdefault(str(manifest), Counter())
        # a repeated id is rejected below as duplicate_id, not an error
        for line, utt in read_manifest_lines(manifest, unique_ids=False):
            where = Source(str(manifest), line)
            unused.discard(utt.id)
            if utt.id in seen:
                reason, detail = "duplicate_id", f"{utt.id} is already in the training set"
            elif utt.id not in texts:
                reason, detail = "no_hypothesis", f"no hypothesis for {utt.id} in {', '.join(map(str, hyps))}"
            else:
                reason, detail = check(texts[utt.id], utt.duration, bounds, max_repeats)
            if reason:
                rejects.append(Reject(reason, detail, where, utt.id, utt.audio, texts.get(utt.id, "")))
                counts[reason] += 1
                continue
            seen.add(utt.id)
            rows.append(_rebase(utt, Path(manifest).parent, out).replace(
                text=texts[utt.id], text_raw=texts[utt.id], split="train", flags=(*utt.flags, FLAG)))  # fmt: skip
            counts["accepted"] += 1

    summary = {
        "labeled": len(labeled_utts),
        "accepted": sum(c["accepted"] for c in per_source.values()),
        "rejected": len(rejects),
        "rate_bounds": [round(bounds.low, 3), round(bounds.high, 3)],
        "per_source": {k: dict(v) for k, v in per_source.items()},
        "hyps": [str(h) for h in hyps],
        # hypotheses of no unlabeled utterance: mismatched files, or fewer manifests than hyps files
        "unused_hyps": len(unused),
        "unused_hyps_first": [str(s) for s in sorted((hyp_lines[k][1] for k in unused),
                                                     key=lambda s: (s.file, s.line))[:5]],
    }
    with in_progress(out):  # the identity first: a torn finish is repaired by a rerun of the same run
        for name in (IDENTITY_FILE, *OUTPUT_FILES):
            remove_stale_temps(out / name)
        write_identity(out / IDENTITY_FILE, identity)
        write_jsonl(out / "train.jsonl", rows)
        write_jsonl(out / "rejects.jsonl", rejects)
        atomic_write_text(out / "pseudo_label.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary

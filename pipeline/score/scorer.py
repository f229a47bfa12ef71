"""``score``: join hypotheses to a manifest, normalize both sides, count errors, write outputs.

Reference and hypothesis go through the SAME normalizer as data prep
(:func:`data_prep.text.normalize.get_normalizer`); the manifest text is
already normalized, and normalizing it again is a no-op by construction, but it
guards against a manifest made with older rules. A manifest utterance without
a hypothesis is scored as an empty hypothesis (all deletions) and counted in
``n_missing``; a hypothesis whose id is not in the manifest is an error.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from data_prep.degrade import DEGRADE_JSON, derived_text_rules
from data_prep.manifest import ManifestError, Utterance, read_jsonl, read_manifest
from data_prep.outputs import atomic_write_text, guard_outputs
from pipeline.decode.hyps import Hypothesis
from pipeline.score.alignments import collect_errors, errors_markdown, format_alignments
from pipeline.score.bootstrap import bootstrap_ci
from pipeline.score.metrics import Counts, align_chars, align_words, sum_counts
from pipeline.score.results import KINDS, Results, SpeakerRow, UttCounts, write_results

#: Settings file that ``prepare`` writes next to the manifests.
PREPARE_SETTINGS = "prepare.json"
#: What ``score`` writes into its output folder.
SCORE_FILES = ("results.json", "alignments.txt", "per_speaker.tsv", "errors.md")


class ScoreError(ValueError):
    """Inputs that cannot be scored; the message names the file (and line)."""


@dataclass(frozen=True)
class Scored:
    """A :class:`Results` plus the alignments it came from (for the text outputs)."""

    results: Results
    alignments_txt: str
    errors_md: str
    per_speaker_tsv: str


def read_hyps_for(manifest_ids: set[str], hyps_path: str | os.PathLike, manifest_path: str | os.PathLike
                  ) -> dict[str, Hypothesis]:
    """Hypotheses by id; unknown or duplicate ids are errors naming the hyps file and line."""
    out: dict[str, Hypothesis] = {}
    seen_at: dict[str, int] = {}
    for lineno, obj in read_jsonl(hyps_path):
        try:
            hyp = Hypothesis.from_json(obj)
        except (TypeError, ValueError) as e:
            raise ScoreError(f"{hyps_path}:{lineno}: {e}") from e
        if hyp.id not in manifest_ids:
            raise ScoreError(f"{hyps_path}:{lineno}: hypothesis id {hyp.id!r} is not in the manifest {manifest_path}")
        if hyp.id in seen_at:
            raise ScoreError(f"{hyps_path}:{lineno}: duplicate hypothesis id {hyp.id!r} (first at line {seen_at[hyp.id]})")
        seen_at[hyp.id] = lineno
        out[hyp.id] = hyp
    return out


def manifest_language(utts: list[Utterance], manifest_path: str | os.PathLike) -> str:
    """The normalizer name used to prepare a manifest.

    ``prepare`` records its text-rules name (e.g. ``pa-Latn`` for romanized
    Punjabi, while utterances say ``pa``) in ``prepare.json`` next to the
    manifests, and a set ``degrade`` derived from them carries it over in
    ``degrade.json``; that name wins. Otherwise the manifest's single language.
    """
    langs = sorted({u.language for u in utts})
    settings = Path(manifest_path).parent / PREPARE_SETTINGS
    if settings.is_file():
        try:
            rules = json.loads(settings.read_text(encoding="utf-8"))["process"]["rules"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ScoreError(f"{settings}: cannot read the text-rules name ({e}); pass --lang") from e
        if isinstance(rules, str) and rules:
            return rules
    derived = derived_text_rules(Path(manifest_path).parent)
    if derived:
        return derived
    if len(langs) != 1 or not langs[0]:
        raise ScoreError(f"{manifest_path}: cannot tell the language from the manifest (languages {langs}); pass --lang")
    return langs[0]


def infer_system(hyps_path: str | os.PathLike, testset: str) -> str:
    """System name from the layout exp/<lang>/<system>/<testset>/hyps.jsonl (or exp/<lang>/<system>/hyps.jsonl)."""
    parent = Path(hyps_path).resolve().parent
    return parent.parent.name if parent.name == testset else parent.name


def infer_kind(system: str) -> str:
    """A guess at the kind from the system name; ``--kind`` overrides it."""
    s = system.lower().replace("-", "").replace("_", "")
    if "zeroshot" in s or "baseline" in s or "pretrained" in s:
        return "zeroshot"
    if "scratch" in s or "randinit" in s:
        return "scratch"
    if "finetune" in s or s.startswith("ft") or s.endswith("ft") or "lora" in s:
        return "finetuned"
    return "other"


def _per_speaker(utts: list[UttCounts], word: list[Counts], char: list[Counts]) -> list[SpeakerRow]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, u in enumerate(utts):
        groups[u.speaker].append(i)
    return [
        SpeakerRow(
            speaker=spk,
            n_utts=len(idx),
            n_missing=sum(utts[i].missing for i in idx),
            word=sum_counts([word[i] for i in idx]),
            char=sum_counts([char[i] for i in idx]),
        )
        for spk, idx in sorted(groups.items())
    ]


def per_speaker_tsv(rows: list[SpeakerRow]) -> str:
    head = "speaker\tn_utts\tn_missing\tref_words\twer\tword_S\tword_D\tword_I\tref_chars\tcer\tchar_S\tchar_D\tchar_I"
    lines = [head]
    for r in rows:
        lines.append("\t".join(str(x) for x in (
            r.speaker or "-", r.n_utts, r.n_missing, r.word.ref_len, f"{r.wer:.4f}", r.word.sub, r.word.dele,
            r.word.ins, r.char.ref_len, f"{r.cer:.4f}", r.char.sub, r.char.dele, r.char.ins)))
    return "\n".join(lines) + "\n"


def score_utterances(
    utts: list[Utterance],
    hyps: dict[str, Hypothesis],
    lang: str,
    *,
    system: str,
    kind: str,
    testset: str,
    seed: int = 0,
    n_resamples: int = 1000,
    manifest: str = "",
    hyps_path: str = "",
) -> Scored:
    """Score hypotheses (by id) against manifest utterances; nothing is written."""
    from data_prep.text.normalize import get_normalizer

    if not utts:
        raise ScoreError(f"{manifest or 'manifest'}: no utterances to score")
    if kind not in KINDS:
        raise ScoreError(f"unknown kind {kind!r}; expected one of {KINDS}")
    norm = get_normalizer(lang)
    missing = [u.id not in hyps for u in utts]
    refs = [norm.normalize(u.text) for u in utts]
    hyp_texts = ["" if m else norm.normalize(hyps[u.id].text) for u, m in zip(utts, missing)]
    words, chars = align_words(refs, hyp_texts), align_chars(refs, hyp_texts)
    wc, cc = words.counts(), chars.counts()

    per_utt = [
        UttCounts(id=u.id, speaker=u.speaker, duration=float(u.duration), ref_words=w.ref_len,
                  word_errors=w.errors, ref_chars=c.ref_len, char_errors=c.errors, missing=m)
        for u, w, c, m in zip(utts, wc, cc, missing)
    ]
    word_total, char_total = sum_counts(wc), sum_counts(cc)
    wer_ci = bootstrap_ci([u.word_errors for u in per_utt], [u.ref_words for u in per_utt],
                          n_resamples=n_resamples, seed=seed)
    cer_ci = bootstrap_ci([u.char_errors for u in per_utt], [u.ref_chars for u in per_utt],
                          n_resamples=n_resamples, seed=seed)

    present = [hyps[u.id] for u, m in zip(utts, missing) if not m]
    decode_seconds = sum(h.seconds for h in present) if any(h.seconds > 0 for h in present) else None
    # RTF over the audio that was actually decoded (missing utterances excluded).
    decoded_durs = [u.duration for u, m in zip(utts, missing) if not m]
    audio_seconds = sum(decoded_durs) if decoded_durs and all(d > 0 for d in decoded_durs) else None
    rtf = decode_seconds / audio_seconds if decode_seconds is not None and audio_seconds else None
    models = sorted({h.model for h in present if h.model})

    results = Results(
        system=system, kind=kind, testset=testset, lang=lang, model=", ".join(models),
        manifest=str(manifest), hyps=str(hyps_path),
        n_utts=len(utts), n_missing=sum(missing), missing_ids=[u.id for u, m in zip(utts, missing) if m],
        word=word_total, char=char_total, ser=sum(w.errors > 0 for w in wc) / len(utts),
        wer_ci=wer_ci, cer_ci=cer_ci, bootstrap={"n_resamples": n_resamples, "seed": seed},
        per_speaker=_per_speaker(per_utt, wc, cc),
        decode_seconds=decode_seconds, audio_seconds=audio_seconds, rtf=rtf, utts=per_utt,
    )
    title = f"{system} on {testset} ({lang})"
    header = (
        f"# {title}: WER {100 * results.wer:.2f}% ({word_total.errors}/{word_total.ref_len}), "
        f"CER {100 * results.cer:.2f}%\n"
        f"# normalizer: {lang}; errors in UPPER CASE where the script has case; "
        "EVAL: S=substitution D=deletion I=insertion, *** = no word on that side\n"
    )
    return Scored(
        results=results,
        alignments_txt=format_alignments([u.id for u in utts], [u.speaker for u in utts], words, missing, header),
        errors_md=errors_markdown(collect_errors(words, chars), title),
        per_speaker_tsv=per_speaker_tsv(results.per_speaker),
    )


def score(
    manifest: str | os.PathLike,
    hyps: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    lang: str | None = None,
    system: str | None = None,
    kind: str | None = None,
    testset: str | None = None,
    seed: int = 0,
    n_resamples: int = 1000,
) -> Results:
    """Score ``hyps`` against ``manifest`` and write results.json, alignments.txt,
    per_speaker.tsv and errors.md into ``out`` (default: the hypotheses' directory)."""
    manifest, hyps = Path(manifest), Path(hyps)
    for p in (manifest, hyps):
        if not p.is_file():
            raise ScoreError(f"{p}: file not found")
    out = Path(out) if out is not None else hyps.parent
    guard_outputs([out / name for name in SCORE_FILES], [manifest, hyps, manifest.parent / PREPARE_SETTINGS,
                                                        manifest.parent / DEGRADE_JSON])
    try:
        utts = read_manifest(manifest)
    except ManifestError as e:
        raise ScoreError(str(e)) from e
    testset = testset or manifest.stem
    lang = lang or manifest_language(utts, manifest)
    system = system or infer_system(hyps, testset)
    kind = kind or infer_kind(system)
    try:
        by_id = read_hyps_for({u.id for u in utts}, hyps, manifest)
    except ManifestError as e:
        raise ScoreError(str(e)) from e
    scored = score_utterances(utts, by_id, lang, system=system, kind=kind, testset=testset, seed=seed,
                              n_resamples=n_resamples, manifest=str(manifest), hyps_path=str(hyps))
    out.mkdir(parents=True, exist_ok=True)
    write_results(out / "results.json", scored.results)
    atomic_write_text(out / "alignments.txt", scored.alignments_txt)
    atomic_write_text(out / "per_speaker.tsv", scored.per_speaker_tsv)
    atomic_write_text(out / "errors.md", scored.errors_md)
    return scored.results

"""The transfer verdict: did starting from a pretrained model pay off, on the same utterances?

Three questions, each answered per language and test set, or said plainly to be
unanswerable when the needed systems are absent:

1. Gain over zero-shot: every ``finetuned`` system against every ``zeroshot``
   system scored on the same test set (paired bootstrap over their common
   utterances).
2. Negative transfer: every ``finetuned`` system against every ``scratch``
   system (same architecture trained from random initialization; the report
   cannot check the architecture, but compares the step budgets when both have a
   training log). Flagged when p(fine-tuned better) < :data:`SIGNIFICANCE`.
3. Domain shift: a system scored on two test sets; the gap between its rate on
   the in-domain set (the one named ``test``, else the first by name) and each
   other set, with an interval: paired over the same utterances when the other
   set was derived from the in-domain one (``degrade``: telephone, noise,
   babble, reverb), else from independent resampling of the two sets.

The primary metric (``wer`` or ``cer``) decides flags; the other is reported too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.score.bootstrap import Interval, PairedResult, difference_ci, paired_bootstrap
from pipeline.score.results import Results

#: p(better) a system must reach to count as significantly better.
SIGNIFICANCE = 0.95
METRICS = ("wer", "cer")
IN_DOMAIN_NAME = "test"
DEV_NAME = "dev"


@dataclass
class VerdictItem:
    """One sentence of the verdict. ``status``: ok | info | warn | flag | na."""

    section: str  # zeroshot | scratch | domain_shift
    status: str
    headline: str  # the answer, one clause
    detail: str = ""  # the numbers behind it
    data: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return f"{self.headline}. {self.detail}".strip() if self.detail else f"{self.headline}."


def _unit(metric: str) -> tuple[str, str]:
    return ("word_errors", "ref_words") if metric == "wer" else ("char_errors", "ref_chars")


def paired(a: Results, b: Results, metric: str, n_resamples: int = 1000, seed: int = 0
           ) -> tuple[PairedResult | None, int]:
    """Paired bootstrap of A vs B over their common utterance ids.

    Returns (result or None when no utterance is shared, number of common
    utterances whose reference lengths differ between the two results).
    """
    err, ref = _unit(metric)
    ub = {u.id: u for u in b.utts}
    common = [(u, ub[u.id]) for u in a.utts if u.id in ub]
    if not common:
        return None, 0
    mismatched = sum(getattr(x, ref) != getattr(y, ref) for x, y in common)
    res = paired_bootstrap(
        [getattr(x, err) for x, _ in common],
        [getattr(y, err) for _, y in common],
        [getattr(x, ref) for x, _ in common],
        n_resamples=n_resamples,
        seed=seed,
    )
    return res, mismatched


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def _pair_sentence(a: Results, b: Results, res: PairedResult, metric: str) -> str:
    """'WER 40.0% vs 60.0% (difference -20.0 points [-25.1, -14.9]), p(a better) = 1.000'."""
    d = res.delta
    return (f"{metric.upper()} {pct(res.rate_a)} vs {pct(res.rate_b)} (difference {_pts(d.point)} points, "
            f"95% CI [{_pts(d.low)}, {_pts(d.high)}]), p({a.system} better) = {res.p_a_better:.3f}")


def _pair_data(a: Results, b: Results, results: dict[str, PairedResult], mismatched: int) -> dict:
    return {
        "system_a": a.system, "system_b": b.system, "kind_a": a.kind, "kind_b": b.kind,
        "lang": a.lang, "testset": a.testset, "ref_length_mismatches": mismatched,
        **{m: r.to_json() for m, r in results.items()},
    }


def _compare(a: Results, b: Results, metric: str, n_resamples: int, seed: int
             ) -> tuple[dict[str, PairedResult], int, str] | None:
    """Both metrics' paired tests plus a caveat string; None when nothing is shared."""
    out: dict[str, PairedResult] = {}
    mismatched = 0
    for m in METRICS:
        r, mm = paired(a, b, m, n_resamples, seed)
        if r is None:
            return None
        out[m] = r
        mismatched = max(mismatched, mm)
    notes = []
    n = out[metric].n_utts
    if n < max(len(a.utts), len(b.utts)):
        notes.append(f"only {n} of {len(a.utts)}/{len(b.utts)} utterances are shared; compared on those")
    if mismatched:
        notes.append(f"reference lengths differ on {mismatched} utterances (different normalizer versions?)")
    return out, mismatched, ("; ".join(notes) + ". ") if notes else ""


def _gain_item(ft: Results, zs: Results, metric: str, n_resamples: int, seed: int) -> VerdictItem:
    head = f"{ft.system} (fine-tuned) vs {zs.system} (zero-shot) on {ft.testset}"
    cmp = _compare(ft, zs, metric, n_resamples, seed)
    if cmp is None:
        return VerdictItem("zeroshot", "na", f"{head}: cannot be compared, no utterances in common")
    res, mism, caveat = cmp
    r = res[metric]
    other = next(m for m in METRICS if m != metric)
    gain = r.rate_b - r.rate_a
    rel = f", {100 * gain / r.rate_b:.1f}% relative" if r.rate_b > 0 else ""
    if r.p_a_better >= SIGNIFICANCE:
        status, word = "ok", f"significant gain of {100 * gain:.1f} points{rel}"
    elif r.p_b_better >= SIGNIFICANCE:
        status, word = "flag", "fine-tuning made it significantly WORSE than the zero-shot model"
    else:
        status, word = "warn", f"no significant difference (p < {SIGNIFICANCE})"
    detail = (f"{_pair_sentence(ft, zs, r, metric)}; {_pair_sentence(ft, zs, res[other], other)}. "
              f"{r.n_utts} utterances. {caveat}")
    return VerdictItem("zeroshot", status, f"{head}: {word}", detail.strip(), _pair_data(ft, zs, res, mism))


def _budget_note(ft: Results, sc: Results, budgets: dict[tuple[str, str], float]) -> tuple[str, bool]:
    """A sentence on the two runs' training steps, and whether they differ."""
    bf, bs = budgets.get((ft.lang, ft.system)), budgets.get((sc.lang, sc.system))
    if bf is None or bs is None:
        return "Training budgets unknown (no log.jsonl for both): make sure they match. ", False
    if bf != bs:
        return (f"Budgets DIFFER: {ft.system} logged {bf:g} steps, {sc.system} {bs:g} steps, so this is "
                "not a like-for-like comparison. "), True
    return f"Same budget: {bf:g} steps each. ", False


def _scratch_item(ft: Results, sc: Results, metric: str, n_resamples: int, seed: int,
                  budgets: dict[tuple[str, str], float]) -> VerdictItem:
    head = f"{ft.system} (pretrained start) vs {sc.system} (random init) on {ft.testset}"
    cmp = _compare(ft, sc, metric, n_resamples, seed)
    if cmp is None:
        return VerdictItem("scratch", "na", f"{head}: cannot be compared, no utterances in common")
    res, mism, caveat = cmp
    r = res[metric]
    other = next(m for m in METRICS if m != metric)
    if r.p_a_better >= SIGNIFICANCE:
        status, word = "ok", f"transfer helps: the pretrained start is significantly better (p >= {SIGNIFICANCE})"
    else:
        status = "flag"
        word = (f"negative transfer, the pretrained start is not significantly better than random "
                f"initialization (p({ft.system} better) = {r.p_a_better:.3f} < {SIGNIFICANCE})")
        if r.p_b_better >= SIGNIFICANCE:
            word += f"; the from-scratch model is significantly better (p = {r.p_b_better:.3f})"
    budget, differs = _budget_note(ft, sc, budgets)
    detail = (f"{_pair_sentence(ft, sc, r, metric)}; {_pair_sentence(ft, sc, res[other], other)}. "
              f"{r.n_utts} utterances. {budget}{caveat}")
    data = _pair_data(ft, sc, res, mism)
    data.update(negative_transfer=status == "flag", budget_differs=differs)
    return VerdictItem("scratch", status, f"{head}: {word}", detail.strip(), data)


def in_domain_testset(testsets: Sequence[str]) -> str:
    """The test set that the others are compared against for the domain-shift gap."""
    return IN_DOMAIN_NAME if IN_DOMAIN_NAME in testsets else sorted(testsets)[0]


def derived_from(base: Results, other: Results) -> bool:
    """Whether ``other``'s utterances are ``base``'s (a set ``degrade`` made of them keeps their ids)."""
    ids = {u.id for u in base.utts}
    return bool(other.utts) and all(u.id in ids for u in other.utts)


def shift_gap(base: Results, other: Results, metric: str, n_resamples: int, seed: int
              ) -> tuple[Interval, float, float, int | None]:
    """(gap rate(other) - rate(base) with its 95% interval, the two rates, utterances paired or None).

    A set derived from ``base``'s utterances is compared on the same utterances (paired bootstrap over the
    ones it kept: the interval holds the condition's effect, not which utterances were drawn); another test
    set is resampled independently of ``base``.
    """
    if derived_from(base, other):
        res, _ = paired(other, base, metric, n_resamples, seed)
        return res.delta, res.rate_b, res.rate_a, res.n_utts
    err, ref = _unit(metric)
    ci = difference_ci([getattr(u, err) for u in base.utts], [getattr(u, ref) for u in base.utts],
                       [getattr(u, err) for u in other.utts], [getattr(u, ref) for u in other.utts],
                       n_resamples=n_resamples, seed=seed)
    return ci, getattr(base, metric), getattr(other, metric), None


def _shift_item(base: Results, other: Results, metric: str, n_resamples: int, seed: int) -> VerdictItem:
    if not base.utts or not other.utts:
        return VerdictItem("domain_shift", "na", f"{base.system}: per-utterance counts missing from "
                           f"{base.path or base.testset} or {other.path or other.testset}; rescore to get the gap")
    parts, data = [], {"system": base.system, "kind": base.kind, "lang": base.lang,
                       "in_domain": base.testset, "shifted": other.testset}
    status, n_paired = "info", None
    for m in (metric, *[x for x in METRICS if x != metric]):
        ci, ra, rb, n_paired = shift_gap(base, other, m, n_resamples, seed)
        ratio = f", x{rb / ra:.2f}" if ra > 0 else ""
        parts.append(f"{m.upper()} {pct(ra)} on {base.testset} vs {pct(rb)} on {other.testset}: gap "
                     f"{_pts(ci.point)} points, 95% CI [{_pts(ci.low)}, {_pts(ci.high)}]{ratio}")
        data[m] = {"in_domain": ra, "shifted": rb, "gap": ci.to_json()}
        if m == metric and ci.low > 0:
            status = "warn"
    data["paired_utts"] = n_paired
    verdict = ("significantly worse under the shift" if status == "warn"
               else "no significant degradation under the shift")
    how = (f" Paired over the {n_paired} utterances {other.testset} shares with {base.testset}."
           if n_paired is not None else "")
    return VerdictItem("domain_shift", status, f"{base.system} ({base.kind}) on {other.testset}: {verdict}",
                       "; ".join(parts) + "." + how, data)


def transfer_verdict(
    results: Sequence[Results],
    *,
    metric: str = "wer",
    n_resamples: int = 1000,
    seed: int = 0,
    budgets: dict[tuple[str, str], float] | None = None,
) -> list[VerdictItem]:
    """All verdict sentences for a set of scored systems (see the module docstring).

    ``budgets`` maps (lang, system) to the number of training steps logged.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    budgets = budgets or {}
    shifted = _scored_on_several_sets(results)
    items = _transfer_items(results, shifted_sets(shifted), metric, n_resamples, seed, budgets)
    if not shifted:
        items.append(VerdictItem("domain_shift", "na", "No system was scored on two test sets: the "
                                 "domain-shift gap cannot be measured"))
    for sets in shifted.values():
        base = sets[in_domain_testset(list(sets))]
        items += [_shift_item(base, r, metric, n_resamples, seed)
                  for name, r in sorted(sets.items()) if name != base.testset]
    return items


def _scored_on_several_sets(results: Sequence[Results]) -> dict[tuple[str, str], dict[str, Results]]:
    """(lang, system) -> {test set: results} for every system scored on two test sets or more (dev aside)."""
    by_system: dict[tuple[str, str], dict[str, Results]] = defaultdict(dict)
    for r in results:
        if r.testset != DEV_NAME:  # dev tunes the system (same domain, other speakers): not a shifted test set
            by_system[(r.lang, r.system)][r.testset] = r
    return {k: v for k, v in sorted(by_system.items()) if len(v) >= 2}


def shifted_sets(several: dict[tuple[str, str], dict[str, Results]]) -> set[tuple[str, str]]:
    """(lang, test set) of the sets that are a shift from some system's in-domain set."""
    out = set()
    for (lang, _), sets in several.items():
        base = in_domain_testset(list(sets))
        out |= {(lang, name) for name in sets if name != base}
    return out


def _transfer_items(results: Sequence[Results], shifted: set[tuple[str, str]], metric: str, n_resamples: int,
                    seed: int, budgets: dict[tuple[str, str], float]) -> list[VerdictItem]:
    """The gain and negative-transfer sentences, per language and test set. A missing zero-shot or scratch
    system is stated on in-domain sets only: on a shifted set the domain-shift section speaks."""
    items: list[VerdictItem] = []
    by_set: dict[tuple[str, str], list[Results]] = defaultdict(list)
    for r in results:
        by_set[(r.lang, r.testset)].append(r)
    for (lang, testset), rs in sorted(by_set.items()):
        kinds: dict[str, list[Results]] = defaultdict(list)
        for r in sorted(rs, key=lambda r: r.system):
            kinds[r.kind].append(r)
        where = f"{testset} ({lang})"
        state_missing = (lang, testset) not in shifted
        fts = kinds["finetuned"]
        if not fts:
            if state_missing:
                items.append(VerdictItem("zeroshot", "na", f"No fine-tuned system on {where}: the transfer gain "
                                         "and negative transfer cannot be measured there"))
            continue
        if not kinds["zeroshot"] and state_missing:
            items.append(VerdictItem("zeroshot", "na", f"No zero-shot system on {where}: the gain over the "
                                     "pretrained model cannot be measured"))
        if not kinds["scratch"] and state_missing:
            items.append(VerdictItem("scratch", "na", f"No from-scratch system (kind=scratch) on {where}: "
                                     "negative transfer cannot be checked"))
        for ft in fts:
            items += [_gain_item(ft, zs, metric, n_resamples, seed) for zs in kinds["zeroshot"]]
            items += [_scratch_item(ft, sc, metric, n_resamples, seed, budgets) for sc in kinds["scratch"]]
    return items

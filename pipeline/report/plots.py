"""Report figures as PNG bytes (matplotlib, Agg backend: no display needed).

Each function takes scored results and returns PNG bytes, or None when there
is nothing to draw. Every system keeps one colour across all figures.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

from pipeline.score.results import Results  # noqa: E402

DPI = 100
WIDTH_IN = 10.5


def system_colors(systems: Sequence[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {s: cmap(i % 10) for i, s in enumerate(sorted(set(systems)))}


def _png(fig, top: float = 1.0) -> bytes:
    """PNG bytes of ``fig``; ``top`` < 1 leaves room for a figure-level legend."""
    buf = io.BytesIO()
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _testsets(results: Sequence[Results]) -> list[str]:
    return sorted({f"{r.testset} ({r.lang})" for r in results})


def _label(r: Results) -> str:
    return f"{r.testset} ({r.lang})"


def plot_rates(results: Sequence[Results]) -> bytes | None:
    """WER and CER with 95% intervals: groups are test sets, bars are systems."""
    if not results:
        return None
    sets, systems = _testsets(results), sorted({r.system for r in results})
    colors = system_colors(systems)
    by = {(_label(r), r.system): r for r in results}
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 3.8))
    width = 0.8 / len(systems)
    for ax, metric in zip(axes, ("wer", "cer")):
        for j, s in enumerate(systems):
            xs, ys, lo, hi = [], [], [], []
            for i, t in enumerate(sets):
                r = by.get((t, s))
                if r is None:
                    continue
                ci = getattr(r, f"{metric}_ci")
                xs.append(i + (j - (len(systems) - 1) / 2) * width)
                ys.append(100 * getattr(r, metric))
                lo.append(100 * max(0.0, getattr(r, metric) - ci.low))
                hi.append(100 * max(0.0, ci.high - getattr(r, metric)))
            bars = ax.bar(xs, ys, width * 0.95, yerr=[lo, hi], capsize=3, color=colors[s], label=s)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        ax.set_xticks(range(len(sets)), sets)
        ax.set_ylabel(f"{metric.upper()} (%)")
        ax.set_title(f"{metric.upper()} with 95% bootstrap interval")
        ax.margins(y=0.1)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    return _png(fig)


def plot_error_types(results: Sequence[Results]) -> bytes | None:
    """Substitutions, deletions and insertions per system and test set, as % of reference words."""
    if not results:
        return None
    rs = sorted(results, key=lambda r: (_label(r), r.system))
    labels = [f"{r.system}\n{_label(r)}" for r in rs]
    fig, axes = plt.subplots(1, 2, figsize=(WIDTH_IN, 1.9 + 0.45 * len(rs)))
    for ax, unit in zip(axes, ("word", "char")):
        bottom = np.zeros(len(rs))
        for name, attr, color in (("substitutions", "sub", "#4c72b0"), ("deletions", "dele", "#dd8452"),
                                  ("insertions", "ins", "#c44e52")):
            vals = np.array([100 * getattr(getattr(r, unit), attr) / max(getattr(r, unit).ref_len, 1) for r in rs])
            ax.barh(range(len(rs)), vals, left=bottom, color=color, label=name)
            bottom += vals
        ax.set_yticks(range(len(rs)), labels if unit == "word" else [""] * len(rs), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"% of reference {'words' if unit == 'word' else 'characters'}")
        ax.set_title(f"{'Word' if unit == 'word' else 'Character'} errors by type")
        ax.grid(axis="x", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=3, fontsize=9, frameon=False)
    return _png(fig, top=1 - 0.45 / fig.get_figheight())


def plot_speakers(results: Sequence[Results], metric: str = "wer") -> bytes | None:
    """Per-speaker error rate: one panel per test set, bars per system."""
    rs = [r for r in results if r.per_speaker]
    if not rs:
        return None
    sets = _testsets(rs)
    colors = system_colors([r.system for r in rs])
    n_spk = max(len({s.speaker for r in rs if _label(r) == t for s in r.per_speaker}) for t in sets)
    # Few speakers per set: panels side by side; many: one full-width panel per set.
    side = len(sets) <= 3 and n_spk * len(sets) <= 12
    shape, size = ((1, len(sets)), (WIDTH_IN, 3.4)) if side else ((len(sets), 1), (WIDTH_IN, 3.0 * len(sets)))
    fig, axes = plt.subplots(*shape, figsize=size, squeeze=False)
    for ax, t in zip(axes.flat, sets):
        group = sorted([r for r in rs if _label(r) == t], key=lambda r: r.system)
        speakers = sorted({s.speaker for r in group for s in r.per_speaker})
        width = min(0.8 / len(group), 0.25)
        for j, r in enumerate(group):
            rows = {s.speaker: s for s in r.per_speaker}
            xs = [i + (j - (len(group) - 1) / 2) * width for i, spk in enumerate(speakers) if spk in rows]
            ys = [100 * getattr(rows[spk], metric) for spk in speakers if spk in rows]
            bars = ax.bar(xs, ys, width * 0.95, color=colors[r.system], label=r.system)
            if len(speakers) <= 12:
                ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        ax.set_xlim(-0.6, len(speakers) - 0.4)
        ax.margins(y=0.12)
        ax.set_xticks(range(len(speakers)), [s or "(unknown)" for s in speakers],
                      rotation=30 if len(speakers) > 6 else 0, ha="right" if len(speakers) > 6 else "center",
                      fontsize=8)
        ax.set_ylabel(f"{metric.upper()} (%)")
        ax.set_title(f"{metric.upper()} per speaker: {t}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


def duration_bins(durations: Sequence[float], n_bins: int = 5) -> np.ndarray:
    """Bin edges at duration quantiles (so every bin holds utterances), deduplicated."""
    d = np.asarray([x for x in durations if x > 0], dtype=float)
    if d.size == 0:
        return np.array([])
    edges = np.unique(np.round(np.quantile(d, np.linspace(0, 1, n_bins + 1)), 1))
    if edges.size < 2:
        edges = np.array([d.min(), d.max() + 1e-6])
    edges[-1] = max(edges[-1], d.max()) + 1e-6
    edges[0] = min(edges[0], d.min())
    return edges


def binned_rates(r: Results, edges: np.ndarray, metric: str = "wer") -> list[float | None]:
    """Corpus-level rate of the utterances in each duration bin (None when a bin is empty)."""
    err, ref = ("word_errors", "ref_words") if metric == "wer" else ("char_errors", "ref_chars")
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for u in r.utts:
        b = int(np.searchsorted(edges, u.duration, side="right")) - 1
        if 0 <= b < len(edges) - 1:
            sums[b][0] += getattr(u, err)
            sums[b][1] += getattr(u, ref)
    return [sums[b][0] / sums[b][1] if b in sums and sums[b][1] else None for b in range(len(edges) - 1)]


def plot_duration(results: Sequence[Results], metric: str = "wer") -> bytes | None:
    """Error rate against utterance duration (quantile bins), one panel per test set."""
    rs = [r for r in results if any(u.duration > 0 for u in r.utts)]
    if not rs:
        return None
    sets = _testsets(rs)
    colors = system_colors([r.system for r in rs])
    fig, axes = plt.subplots(1, len(sets), figsize=(WIDTH_IN, 3.6), squeeze=False)
    for ax, t in zip(axes[0], sets):
        group = sorted([r for r in rs if _label(r) == t], key=lambda r: r.system)
        edges = duration_bins([u.duration for u in group[0].utts])
        if edges.size < 2:
            continue
        names = [f"{a:.1f}-{b:.1f}s" for a, b in zip(edges[:-1], edges[1:])]
        for r in group:
            ys = [np.nan if v is None else 100 * v for v in binned_rates(r, edges, metric)]
            ax.plot(range(len(names)), ys, marker="o", color=colors[r.system], label=r.system)
        ax.set_xticks(range(len(names)), names, fontsize=8, rotation=20)
        ax.set_xlabel("utterance duration")
        ax.set_ylabel(f"{metric.upper()} (%)")
        ax.set_title(f"{metric.upper()} by duration: {t}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    return _png(fig)


def plot_training(logs: dict[str, list[dict]]) -> bytes | None:
    """Training loss and dev CER (dev WER dashed) against step, one line per system."""
    logs = {k: v for k, v in logs.items() if v}
    if not logs:
        return None
    colors = system_colors(list(logs))
    fig, (ax_loss, ax_dev) = plt.subplots(1, 2, figsize=(WIDTH_IN, 3.6))
    drew_loss = drew_dev = False
    for name, rows in sorted(logs.items()):
        c = colors[name]
        pts = [(o["step"], o["train_loss"]) for o in rows if isinstance(o.get("train_loss"), (int, float))]
        if pts:
            ax_loss.plot(*zip(*pts), color=c, label=name, lw=1.2)
            drew_loss = True
        for key, style in (("dev_cer", "-"), ("dev_wer", "--")):
            pts = [(o["step"], 100 * o[key]) for o in rows if isinstance(o.get(key), (int, float))]
            if pts:
                ax_dev.plot(*zip(*pts), style, color=c, marker=".", label=f"{name} {key[4:].upper()}")
                drew_dev = True
    if not (drew_loss or drew_dev):
        plt.close(fig)
        return None
    ax_loss.set_title("training loss")
    ax_dev.set_title("dev error rate (CER solid, WER dashed)")
    ax_dev.set_ylabel("%")
    for ax in (ax_loss, ax_dev):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return _png(fig)

"""Corpus statistics: hours and utterances per split and speaker, durations, characters.

Writes ``stats.json``, a short ``stats.md`` and ``durations.png`` (matplotlib Agg).
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import sys
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data_prep.manifest import Utterance
from data_prep.outputs import atomic_write_text
from data_prep.splits import SPLITS

HIST_BIN_S = 1.0
PLOT_TIMEOUT_S = 600.0  # see start_plot_durations


def compute_stats(utts: list[Utterance], accounting: dict) -> dict:
    """All numbers of stats.json (deterministic: sorted keys, rounded floats)."""
    per_split: dict[str, dict] = {}
    for split in SPLITS:
        rows = [u for u in utts if u.split == split]
        spk: dict[str, list[float]] = defaultdict(list)
        for u in rows:
            spk[u.speaker].append(u.duration)
        durs = np.array([u.duration for u in rows]) if rows else np.zeros(0)
        per_split[split] = {
            "utterances": len(rows),
            "hours": round(float(durs.sum()) / 3600, 4),
            "speakers": len(spk),
            "duration_s": {
                "min": round(float(durs.min()), 3) if rows else 0.0,
                "mean": round(float(durs.mean()), 3) if rows else 0.0,
                "max": round(float(durs.max()), 3) if rows else 0.0,
            },
            "per_speaker": {s: {"utterances": len(d), "hours": round(sum(d) / 3600, 4)} for s, d in sorted(spk.items())},
        }
    durs = np.array([u.duration for u in utts]) if utts else np.zeros(0)
    top = int(np.ceil(durs.max() / HIST_BIN_S)) if utts else 1
    counts, edges = np.histogram(durs, bins=np.arange(0, top + HIST_BIN_S, HIST_BIN_S))
    chars = Counter("".join(u.text for u in utts))  # counted in C, not character by character
    chars.pop(" ", None)
    flags = Counter(f.split(":")[0] for u in utts for f in u.flags)
    return {
        "accounting": accounting,
        "total": {"utterances": len(utts), "hours": round(float(durs.sum()) / 3600, 4)},
        "splits": per_split,
        "duration_histogram": {"bin_s": HIST_BIN_S, "counts": counts.tolist()},
        "flags": dict(sorted(flags.items())),
        "characters": dict(sorted(chars.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def plot_durations(utts: list[Utterance], path: Path) -> None:
    """Duration histogram per split (PNG)."""
    # a bare Figure on an Agg canvas: what pyplot would make with the Agg backend (same
    # bytes), without its figure manager or switching this process's backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    top = max([u.duration for u in utts], default=1.0)
    bins = np.arange(0, np.ceil(top) + HIST_BIN_S, HIST_BIN_S)
    for split in SPLITS:
        d = [u.duration for u in utts if u.split == split]
        if d:
            ax.hist(d, bins=bins, alpha=0.6, label=f"{split} ({len(d)})")
    ax.set_xlabel("duration (s)")
    ax.set_ylabel("utterances")
    ax.legend()
    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine behind, for which savefig lays the
    # figure out once more (a whole draw without rendering) before drawing it: nothing is
    # left to lay out, and without an engine the file has the same bytes
    fig.set_layout_engine(None)
    # a name of this process's own: another process drawing the same plot never takes this one's file
    # (the name matches what data_prep.outputs.remove_stale_temps clears after a kill)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # no version stamp: reruns give identical bytes
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def die_with_parent(parent: int) -> None:
    """End this forked child when its parent dies (Linux): the plot of a killed run must not land in
    the folder a rerun is writing, after the rerun's own."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def start_plot_durations(utts: list[Utterance], path: Path) -> Callable[[], None]:
    """:func:`plot_durations` in a forked process, while the caller writes its other files.

    The plot is most of what :func:`~data_prep.assemble.assemble` costs (0.15-0.2 s
    of ~0.3 on the Sanskrit train split) and needs nothing the other files need, so
    the two run on two cores. Returns the function that waits for the process (it
    raises if the plot failed); call it before the outputs count as written. Without
    ``os.fork`` the plot is drawn before this returns. Matplotlib is imported here,
    in the caller, so that it is imported once per process, not once per plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401

    if not hasattr(os, "fork"):
        plot_durations(utts, path)
        return lambda: None
    for stream in (sys.stdout, sys.stderr):  # else the child would inherit (and could write) unwritten output
        if stream is not None:
            stream.flush()
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: draw, report a failure through the pipe, never return
        code = 1
        try:
            os.close(r)
            die_with_parent(parent)
            gc.disable()  # a short life: no collection copying the parent's pages
            plot_durations(utts, path)
            code = 0
        except BaseException:  # noqa: BLE001 - reported to the parent
            os.write(w, traceback.format_exc().encode(errors="replace"))
        finally:
            os._exit(code)
    os.close(w)

    def wait() -> None:
        with os.fdopen(r, "rb") as f:
            # readable once the child has exited (or reports a failure); a child that hangs
            # (a lock some thread of the parent held at the fork) is ended and the plot drawn here
            if not select.select([f], [], [], PLOT_TIMEOUT_S)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                plot_durations(utts, path)
                return
            error = f.read()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise RuntimeError(f"{path}: the plot failed (status {status}):\n{error.decode(errors='replace')}")

    return wait


def to_markdown(stats: dict) -> str:
    """The short human summary."""
    acc = stats["accounting"]
    lines = [
        "# Corpus statistics",
        "",
        f"Input rows {acc['input_rows']} = accepted {acc['accepted_rows']} + rejected {acc['rejected_rows']}; "
        f"{acc['utterances']} utterances ({acc['rows_split_into_segments']} rows split into segments).",
        "",
        "| split | utterances | hours | speakers | mean s | max s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for split, s in stats["splits"].items():
        d = s["duration_s"]
        lines.append(f"| {split} | {s['utterances']} | {s['hours']:.3f} | {s['speakers']} | {d['mean']:.2f} | {d['max']:.2f} |")
    if acc["rejected_by_reason"]:
        lines += ["", "Rejected: " + ", ".join(f"{k} {v}" for k, v in acc["rejected_by_reason"].items()) + "."]
    if stats["flags"]:
        lines += ["", "Flags: " + ", ".join(f"{k} {v}" for k, v in stats["flags"].items()) + "."]
    top = list(stats["characters"].items())[:30]
    lines += ["", f"{len(stats['characters'])} distinct characters; most frequent: "
              + " ".join(f"{c}:{n}" for c, n in top), "", "![durations](durations.png)", ""]
    return "\n".join(lines)


def write_stats(out_dir: Path, utts: list[Utterance], accounting: dict, *, plot: bool = True) -> dict:
    """Write stats.json, stats.md and (unless ``plot`` is false) durations.png; returns the stats."""
    stats = compute_stats(utts, accounting)
    atomic_write_text(out_dir / "stats.json", json.dumps(stats, ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(out_dir / "stats.md", to_markdown(stats))
    if plot:
        plot_durations(utts, out_dir / "durations.png")
    return stats

"""The training log (``log.jsonl``) and its plot (``curve.png``).

Each line: ``{"step", "epoch", "train_loss", "lr", "dev_cer", "dev_wer",
"samples_per_s", "elapsed_s"}`` (dev fields are null between evaluations).
The file is rewritten atomically; on resume the lines after the checkpoint's
step are dropped, so the log reads as one uninterrupted run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from data_prep.manifest import read_jsonl, write_jsonl

FIELDS = ("step", "epoch", "train_loss", "lr", "dev_cer", "dev_wer", "samples_per_s", "elapsed_s")


class TrainLog:
    """Append-only (from the run's point of view) JSONL training log."""

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.records: list[dict] = []
        if resume_step is not None and self.path.exists():
            self.records = [r for _, r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
            write_jsonl(self.path, self.records)

    def add(self, **record) -> dict:
        unknown = set(record) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown log fields {sorted(unknown)}")
        rec = {k: record.get(k) for k in FIELDS}
        self.records.append(rec)
        write_jsonl(self.path, self.records)
        return rec


def plot_curve(records: list[dict], path: str | Path, title: str = "") -> None:
    """Train loss and dev CER/WER against the step, saved as a PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    cer = [(r["step"], r["dev_cer"]) for r in records if r.get("dev_cer") is not None]
    wer = [(r["step"], r["dev_wer"]) for r in records if r.get("dev_wer") is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), color="tab:blue", label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss", color="tab:blue")
    if cer or wer:
        ax2 = ax.twinx()
        if cer:
            ax2.plot(*zip(*cer), "o-", color="tab:red", label="dev CER")
        if wer:
            ax2.plot(*zip(*wer), "s--", color="tab:orange", label="dev WER")
        ax2.set_ylabel("dev error rate")
        ax2.legend(loc="upper right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)

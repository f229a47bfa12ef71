"""Detect the classic CTC failure: the model has collapsed to emitting only blanks.

Early in CTC training every frame's best class is the blank (it is on every
path), and greedy decoding returns empty strings; a healthy run leaves this
phase within a few hundred steps. A run that is still there after warm-up is
usually stuck (WER 100 %), and more steps at the same settings rarely help.
:class:`BlankCollapseMonitor` watches the dev greedy outputs at each evaluation
and says so, with the usual remedies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

HINT = (
    "CTC looks collapsed to blanks: {empty:.0%} of {n} dev outputs are empty at step {step}. Usual remedies: "
    "raise the learning rate of the new head (1e-3..3e-3) and lower the encoder's (1e-5..5e-5); "
    "use a longer warm-up; check that vocab.json matches the labels (blank = <pad> = id 0, "
    "the same file the model was built with); use a Transformer/BiLSTM head or trainable top encoder layers "
    "instead of a linear probe; a blank-bias init (head init_blank_prob=0.9) shortens the blank-only phase."
)


@dataclass
class CollapseReport:
    step: int
    empty_fraction: float
    n: int
    collapsed: bool
    message: str = ""


class BlankCollapseMonitor:
    """Warn when most dev greedy outputs are empty after ``warmup_steps``.

    ``threshold``: fraction of empty hypotheses that counts as collapsed;
    ``patience``: consecutive collapsed evaluations before warning (1 = at once).
    Call :meth:`update` after each dev evaluation; it logs a warning and returns
    a :class:`CollapseReport` whose ``message`` the trainer may also print.
    """

    def __init__(self, warmup_steps: int, threshold: float = 0.8, patience: int = 1):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.warmup_steps = warmup_steps
        self.threshold = threshold
        self.patience = max(1, patience)
        self.strikes = 0
        self.history: list[CollapseReport] = []

    @property
    def collapsed(self) -> bool:
        return bool(self.history) and self.history[-1].collapsed

    def update(self, step: int, hypotheses: Sequence[str]) -> CollapseReport:
        n = len(hypotheses)
        empty = sum(1 for h in hypotheses if not h.strip()) / n if n else 0.0
        bad = n > 0 and step >= self.warmup_steps and empty >= self.threshold
        self.strikes = self.strikes + 1 if bad else 0
        collapsed = bad and self.strikes >= self.patience
        msg = HINT.format(empty=empty, n=n, step=step) if collapsed else ""
        if collapsed:
            log.warning(msg)
        report = CollapseReport(step=step, empty_fraction=empty, n=n, collapsed=collapsed, message=msg)
        self.history.append(report)
        return report

    def state_dict(self) -> dict:
        """What a checkpoint stores, so that a resumed run keeps its strike count and history."""
        return {"strikes": self.strikes, "history": [asdict(r) for r in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.strikes = int(state.get("strikes", 0))
        self.history = [CollapseReport(**r) for r in state.get("history", [])]

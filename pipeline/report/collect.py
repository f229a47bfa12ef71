"""Find scored experiments (``results.json``) and their training logs (``log.jsonl``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.manifest import ManifestError, read_jsonl
from pipeline.score.results import RESULTS_TYPE, Results, ResultsError, read_results, results_type

RESULTS_NAME = "results.json"
LOG_NAME = "log.jsonl"


class CollectError(ValueError):
    """Inputs a report cannot be made from; the message names the path."""


@dataclass
class Experiment:
    """One system scored on one test set, with the training log found for it (if any)."""

    results: Results
    log_path: Path | None = None
    log: list[dict] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        r = self.results
        return (r.lang, r.system, r.testset)


def find_log(results_path: Path, root: Path) -> Path | None:
    """The nearest log.jsonl from the results' directory up to ``root`` (inclusive)."""
    d = results_path.resolve().parent
    root = root.resolve()
    while True:
        cand = d / LOG_NAME
        if cand.is_file():
            return display_path(cand)
        if d == root or root not in d.parents:
            return None
        d = d.parent


def display_path(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    rel = os.path.relpath(path)
    return Path(rel) if not rel.startswith("..") else path


def read_log(path: Path) -> list[dict]:
    """Training-log records that have a numeric ``step``, in file order."""
    try:
        return [o for _, o in read_jsonl(path) if isinstance(o, dict) and isinstance(o.get("step"), (int, float))]
    except ManifestError as e:
        raise CollectError(str(e)) from e


def _candidates(paths: Sequence[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(results.json, root for the log search) for every input path."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [(f, p) for f in sorted(p.rglob(RESULTS_NAME))]
        elif p.is_file():
            out.append((p, p.resolve().parent.parent))
        else:
            raise CollectError(f"{p}: no such file or directory")
    return out


def collect(paths: Sequence[str | os.PathLike]) -> list[Experiment]:
    """All score results under ``paths`` (report summaries are skipped), with their logs."""
    seen: dict[Path, None] = {}
    by_key: dict[tuple[str, str, str], Experiment] = {}
    logs: dict[Path, list[dict]] = {}
    for f, root in _candidates(paths):
        real = f.resolve()
        if real in seen:
            continue
        seen[real] = None
        kind = results_type(f)
        if kind is not None and kind != RESULTS_TYPE:
            continue  # e.g. a report's own summary results.json
        try:
            res = read_results(f)
        except ResultsError as e:
            raise CollectError(str(e)) from e
        exp = Experiment(res)
        if exp.key in by_key:
            raise CollectError(
                f"{f}: system {res.system!r} on test set {res.testset!r} ({res.lang}) is also in "
                f"{by_key[exp.key].results.path}; give each run its own system name"
            )
        log_path = find_log(f, root)
        if log_path is not None:
            if log_path not in logs:
                logs[log_path] = read_log(log_path)
            exp.log_path, exp.log = log_path, logs[log_path]
        by_key[exp.key] = exp
    if not by_key:
        raise CollectError(f"no {RESULTS_NAME} from `score` found under: {', '.join(map(str, paths))}")
    return list(by_key.values())

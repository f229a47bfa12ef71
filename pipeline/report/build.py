"""Build a report: the scored experiments compared in report.html / report.md, with figures and
the transfer verdict (:func:`report`)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from data_prep.outputs import atomic_write_text, guard_outputs
from pipeline.report.collect import Experiment, collect
from pipeline.report.render import Figure, render_html, render_markdown, sort_results
from pipeline.report.verdict import VerdictItem, transfer_verdict
from pipeline.score.results import Results

SUMMARY_TYPE = "report_summary"
#: What ``report`` writes into ``--out`` besides one PNG per figure.
REPORT_FILES = ("report.md", "results.json", "report.html")


def training_budgets(exps: Sequence[Experiment]) -> dict[tuple[str, str], float]:
    """(lang, system) -> last logged training step."""
    return {(x.results.lang, x.results.system): max(o["step"] for o in x.log) for x in exps if x.log}


def training_logs(exps: Sequence[Experiment]) -> dict[str, list[dict]]:
    """Display name -> log records, one entry per distinct log file."""
    out: dict[str, list[dict]] = {}
    seen: set[Path] = set()
    for x in sorted(exps, key=lambda x: x.key):
        if x.log_path is None or x.log_path in seen:
            continue
        seen.add(x.log_path)
        name = x.results.system
        if any(y.results.system == name and y.results.lang != x.results.lang for y in exps):
            name = f"{name} ({x.results.lang})"
        out[name] = x.log
    return out


def make_figures(exps: Sequence[Experiment], metric: str) -> list[Figure]:
    from pipeline.report import plots

    results = [x.results for x in exps]
    specs = [
        ("rates", "Error rates", "WER and CER per system and test set; whiskers: 95% bootstrap interval.",
         lambda: plots.plot_rates(results)),
        ("error_types", "Error types", "Substitutions, deletions and insertions as a share of the reference length.",
         lambda: plots.plot_error_types(results)),
        ("speakers", "Per speaker", f"{metric.upper()} of each test speaker.",
         lambda: plots.plot_speakers(results, metric)),
        ("duration", f"{metric.upper()} against utterance duration",
         "Utterances binned by duration (bin edges at duration quantiles of the test set); "
         "corpus-level rate within each bin.", lambda: plots.plot_duration(results, metric)),
        ("training", "Training curves", "From each system's log.jsonl: training loss and dev error rates by step.",
         lambda: plots.plot_training(training_logs(exps))),
    ]
    figures = []
    for slug, title, caption, fn in specs:
        png = fn()
        if png is not None:
            figures.append(Figure(slug, title, caption, png))
    if not any(f.slug == "training" for f in figures):
        # Say so rather than silently dropping the section (an empty PNG renders as text only).
        figures.append(Figure("training", "Training curves",
                              "No log.jsonl with training records was found for any system.", b""))
    return figures


def summary_json(title: str, results: Sequence[Results], items: Sequence[VerdictItem], metric: str) -> dict:
    systems = []
    for r in sort_results(results):
        systems.append({
            "system": r.system, "kind": r.kind, "testset": r.testset, "lang": r.lang, "model": r.model,
            "n_utts": r.n_utts, "n_missing": r.n_missing, "wer": r.wer, "wer_ci": r.wer_ci.to_json(),
            "cer": r.cer, "cer_ci": r.cer_ci.to_json(), "ser": r.ser, "word": r.word.to_json(),
            "char": r.char.to_json(), "rtf": r.rtf, "decode_seconds": r.decode_seconds, "results": r.path,
        })
    return {
        "v": 1, "type": SUMMARY_TYPE, "title": title, "metric": metric, "systems": systems,
        "verdict": [{"section": i.section, "status": i.status, "text": i.text, **i.data} for i in items],
    }


def default_title(results: Sequence[Results]) -> str:
    return "Transfer report: " + ", ".join(sorted({r.lang for r in results}))


def report(inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *, title: str | None = None,
           metric: str = "wer", seed: int = 0, n_resamples: int = 1000) -> Path:
    """Write report.html, report.md (+ PNGs) and results.json into ``out``; returns report.html's path."""
    exps = collect(inputs)
    results = [x.results for x in exps]
    title = title or default_title(results)
    items = transfer_verdict(results, metric=metric, n_resamples=n_resamples, seed=seed,
                             budgets=training_budgets(exps))
    figures = make_figures(exps, metric)
    sources = sorted(r.path for r in results) + sorted({str(x.log_path) for x in exps if x.log_path})
    out = Path(out)
    written = [out / name for name in REPORT_FILES] + [out / f"{f.slug}.png" for f in figures if f.png]
    guard_outputs(written, sources)  # the files it reads: an experiment folder may hold the report
    out.mkdir(parents=True, exist_ok=True)
    for f in (f for f in figures if f.png):
        tmp = out / f".{f.slug}.png.tmp"
        tmp.write_bytes(f.png)
        os.replace(tmp, out / f"{f.slug}.png")
    atomic_write_text(out / "report.md", render_markdown(title, results, items, figures, sources, metric))
    atomic_write_text(out / "results.json",
                      json.dumps(summary_json(title, results, items, metric), ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(out / "report.html", render_html(title, results, items, figures, sources, metric))
    return out / "report.html"

"""Render the report as one self-contained HTML page and as Markdown.

The HTML embeds its figures as base64 PNG and carries its own CSS: no external
files, scripts or fonts, so it can be mailed or archived as is. The Markdown
links the same figures as sibling PNG files.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.report.verdict import SIGNIFICANCE, VerdictItem
from pipeline.score.results import Results

KIND_ORDER = {"zeroshot": 0, "scratch": 1, "finetuned": 2, "other": 3}
SECTION_TITLES = {
    "zeroshot": "Gain over the zero-shot model",
    "scratch": "Pretrained start vs random initialization (negative transfer)",
    "domain_shift": "Domain shift",
}
BADGES = {"ok": "OK", "info": "INFO", "warn": "CAUTION", "flag": "FLAG", "na": "N/A"}


@dataclass(frozen=True)
class Figure:
    slug: str  # file stem of the PNG next to report.md
    title: str
    caption: str
    png: bytes


def sort_results(results: Sequence[Results]) -> list[Results]:
    return sorted(results, key=lambda r: (r.lang, r.testset, KIND_ORDER.get(r.kind, 9), r.system))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _ci(r: Results, metric: str) -> str:
    ci = getattr(r, f"{metric}_ci")
    return f"{_pct(getattr(r, metric))} [{_pct(ci.low)}, {_pct(ci.high)}]"


def table_rows(results: Sequence[Results]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main results table (one row per system x test set)."""
    head = ["System", "Kind", "Test set", "Lang", "Utts", "Missing", "WER % [95% CI]", "CER % [95% CI]",
            "SER %", "Word S/D/I", "RTF"]
    rows = []
    for r in sort_results(results):
        rows.append([
            r.system, r.kind, r.testset, r.lang, str(r.n_utts), str(r.n_missing), _ci(r, "wer"), _ci(r, "cer"),
            _pct(r.ser), f"{r.word.sub}/{r.word.dele}/{r.word.ins}", "-" if r.rtf is None else f"{r.rtf:.3f}",
        ])
    return head, rows


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(results: Sequence[Results]) -> str:
    """The results table in Markdown (what ``report --markdown-table`` prints)."""
    head, rows = table_rows(results)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _badge(item: VerdictItem) -> str:
    return "NEGATIVE TRANSFER" if item.data.get("negative_transfer") else BADGES[item.status]


def _grouped(items: Sequence[VerdictItem]) -> list[tuple[str, list[VerdictItem]]]:
    return [(SECTION_TITLES[s], [i for i in items if i.section == s]) for s in SECTION_TITLES
            if any(i.section == s for i in items)]


def _method_notes(results: Sequence[Results], metric: str) -> list[str]:
    res = results[0]
    boots = sorted({(r.bootstrap.get("n_resamples"), r.bootstrap.get("seed")) for r in results}, key=str)
    return [
        "Text of references and hypotheses normalized by the data-prep normalizer of each language "
        f"({', '.join(sorted({r.lang for r in results}))}); alignment by jiwer (Levenshtein, unit costs).",
        "WER and CER are corpus-level: summed errors / summed reference length. CER unit: " + res.cer_unit + ".",
        "Intervals: percentile bootstrap over utterances (resamples, seed: "
        + ", ".join(f"{n}, {s}" for n, s in boots) + ").",
        f"Comparisons: paired bootstrap (Bisani & Ney) over common utterances; p(A better) is the fraction "
        f"of resamples where A makes fewer errors. Significant when p >= {SIGNIFICANCE}. Flags use "
        f"{metric.upper()}.",
        "A scratch system (random initialization) is assumed to have the architecture of the fine-tuned "
        "systems it is compared with; training budgets are compared when both have a log.jsonl.",
        "A missing hypothesis is scored as empty (all deletions).",
    ]


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans Devanagari",sans-serif;
 margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:28px 0 10px;border-bottom:1px solid #e3e6eb;
 padding-bottom:4px}h3{font-size:1.02em;margin:16px 0 6px;color:#3a4354}
.meta{color:#5b6474;font-size:.9em;margin:0 0 12px}
table{border-collapse:collapse;font-size:.86em;width:100%}
th,td{border:1px solid #dfe3e8;padding:4px 7px;text-align:right;white-space:nowrap}
th{background:#eef1f5}td:nth-child(-n+4),th:nth-child(-n+4){text-align:left}
tr:nth-child(even) td{background:#fafbfc}
.verdict{list-style:none;padding:0;margin:0}
.verdict li{margin:6px 0;padding:8px 10px 8px 12px;border-left:5px solid #9aa3b2;background:#f3f5f8;
 border-radius:3px;font-size:.92em}
.verdict li.ok{border-color:#2e9d57;background:#eef8f1}.verdict li.warn{border-color:#d99a1e;background:#fdf6e7}
.verdict li.flag{border-color:#c93c3c;background:#fcefef}.verdict li.na{border-color:#b7bdc7;color:#555e6d}
.verdict li.info{border-color:#3b78c2;background:#eef4fb}
.badge{display:inline-block;font-size:.75em;font-weight:700;letter-spacing:.03em;padding:1px 6px;
 border-radius:3px;margin-right:6px;color:#fff;background:#7a8394}
li.ok .badge{background:#2e9d57}li.warn .badge{background:#c98a10}li.flag .badge{background:#c93c3c}
li.info .badge{background:#3b78c2}
.verdict .detail{display:block;margin-top:2px;color:#3a4354;font-size:.93em}
figure{margin:12px 0 20px}figure img{width:100%;max-width:100%;height:auto;border:1px solid #e3e6eb}
figcaption{color:#5b6474;font-size:.86em;margin-top:4px}
.notes li{font-size:.88em;color:#3a4354}.notes code{font-size:.95em}
"""


def render_html(title: str, results: Sequence[Results], items: Sequence[VerdictItem], figures: Sequence[Figure],
                sources: Sequence[str], metric: str) -> str:
    """The self-contained report page."""
    e = html.escape
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(title)}</title><style>{CSS}</style></head><body><main>",
           f"<h1>{e(title)}</h1>",
           f'<p class="meta">{len(results)} scored runs: {len({r.system for r in results})} systems on '
           f"{len({(r.lang, r.testset) for r in results})} test sets. Primary metric: {metric.upper()}.</p>",
           "<h2>Transfer verdict</h2>"]
    for section, group in _grouped(items):
        out.append(f"<h3>{e(section)}</h3><ul class=\"verdict\">")
        out += [f'<li class="{i.status}"><span class="badge">{e(_badge(i))}</span><b>{e(i.headline)}.</b> '
                f'<span class="detail">{e(i.detail)}</span></li>' for i in group]
        out.append("</ul>")
    head, rows = table_rows(results)
    out.append("<h2>Results</h2><table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>")
    out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
    out.append("</tbody></table>")
    for f in figures:
        if not f.png:
            out.append(f"<h2>{e(f.title)}</h2><p class=\"meta\">{e(f.caption)}</p>")
            continue
        b64 = base64.b64encode(f.png).decode("ascii")
        out.append(f"<h2>{e(f.title)}</h2><figure><img alt=\"{e(f.title)}\" src=\"data:image/png;base64,{b64}\">"
                   f"<figcaption>{e(f.caption)}</figcaption></figure>")
    out.append('<h2>Method</h2><ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in _method_notes(results, metric))
               + "</ul>")
    out.append('<h2>Inputs</h2><ul class="notes">' + "".join(f"<li><code>{e(s)}</code></li>" for s in sources) + "</ul>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


def render_markdown(title: str, results: Sequence[Results], items: Sequence[VerdictItem], figures: Sequence[Figure],
                    sources: Sequence[str], metric: str) -> str:
    """The same report in Markdown; figures are ``<slug>.png`` files next to it."""
    out = [f"# {title}", "", "## Transfer verdict", ""]
    for section, group in _grouped(items):
        out += [f"### {section}", ""]
        out += [f"- **{_badge(i)}: {i.headline}.** {i.detail}".rstrip() for i in group]
        out.append("")
    out += ["## Results", "", markdown_table(results)]
    for f in figures:
        if not f.png:
            out += [f"## {f.title}", "", f.caption, ""]
            continue
        out += [f"## {f.title}", "", f"![{f.title}]({f.slug}.png)", "", f"*{f.caption}*", ""]
    out += ["## Method", ""] + [f"- {n}" for n in _method_notes(results, metric)] + [""]
    out += ["## Inputs", ""] + [f"- `{s}`" for s in sources]
    return "\n".join(out).rstrip() + "\n"

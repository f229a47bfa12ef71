"""What the rescoring's dev grid found: the search's pick, the best weighting with and without a char bonus.

    python -m benchmarks.weights_grid exp/sa/whisper_soup2_lm/dev/weights.json \\
        exp/sa/whisper_st_soup2_lm/dev/weights.json

Reads the grid that ``rescore --tune`` keeps in each ``weights.json`` (every point
with its dev WER and CER) and prints a Markdown table per file: the search's own
pick, the best weighted point without a character bonus, the best weighted point
of the whole grid ("best" by the metric the file was tuned for, ties to the
other), and what ``rescore`` chose, with the two-fold held-out check it made
(tuned weights against the search's pick, in that metric). Nothing is decoded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

WEIGHT_KEYS = ("ctc_weight", "lm_weight", "word_bonus", "char_lm_weight", "char_bonus")


def best(points: list[dict], metric: str) -> dict | None:
    from pipeline.rescore.combine import metric_value

    other = "cer" if metric == "wer" else "wer"
    return min(points, key=lambda g: (metric_value(g, metric), g[other]), default=None)


def summary(tuned: dict) -> list[dict]:
    """Rows (name, point) of one weights.json."""
    metric, grid = tuned.get("metric", "wer"), tuned["grid"]
    weighted = [g for g in grid if not g["beam_pick"]]
    chosen = {"beam_pick": tuned["beam_pick"], "wer": tuned["dev_wer"], "cer": tuned["dev_cer"],
              **{k: tuned.get(k, 0.0) for k in WEIGHT_KEYS}}  # fmt: skip
    return [
        {"name": "the search's pick", "point": best([g for g in grid if g["beam_pick"]], metric)},
        {"name": "best weighting, no char bonus", "point": best([g for g in weighted if not g["char_bonus"]], metric)},
        {"name": "best weighting", "point": best(weighted, metric)},
        {"name": "chosen", "point": chosen, "held_out": tuned.get("held_out")},
    ]


def describe(point: dict) -> str:
    if point["beam_pick"]:
        return "the search's pick"
    return ", ".join(f"{k} {point[k]:g}" for k in WEIGHT_KEYS if point.get(k))


def table(path: str, tuned: dict) -> str:
    metric = tuned.get("metric", "wer")
    lines = [f"{path} (tuned for {metric})", "",
             f"| point | dev WER % | dev CER % | weights | held out, {metric}: tuned vs pick |",
             "|---|---:|---:|---|---|"]  # fmt: skip
    for r in summary(tuned):
        p = r["point"]
        if p is None:
            lines.append(f"| {r['name']} | - | - | - | |")
            continue
        held = r.get("held_out")
        held_s = f"{100 * held[0]:.2f} vs {100 * held[1]:.2f}" if held else ""
        lines.append(f"| {r['name']} | {100 * p['wer']:.2f} | {100 * p['cer']:.2f} | {describe(p)} | {held_s} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.weights_grid", description=__doc__.split("\n")[0])
    p.add_argument("weights", nargs="+", help="weights.json files written by `rescore --tune`")
    args = p.parse_args(argv)
    for path in args.weights:
        print(table(path, json.loads(Path(path).read_text(encoding="utf-8"))) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

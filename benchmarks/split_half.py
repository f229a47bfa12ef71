"""Does a rescoring weighting tuned on dev hold out? Random halves of dev: tune on one, score the other.

    python -m benchmarks.split_half --nbest exp/sa/whisper_soup2_lm/dev/nbest.jsonl --manifest data/sa/dev.jsonl \\
        [--splits 100] [--metric cer] [--seed 0]

For each of ``--splits`` random halvings of the dev N-best lists, the weights are
tuned on one half (the grid of :func:`pipeline.rescore.combine.tune_weights`,
the search's own pick included, without its built-in two-fold check) and the
other half is scored twice: with those weights and with the search's own pick.
Printed as a Markdown table: how often the grid chose the search's pick, and the
held-out difference, tuned minus pick, in points of ``--metric`` (mean, and how
many splits it was worse or better). ``rescore --tune`` keeps a weighting only
when it beats the pick held out; this measures how often that happens by chance
of the split. Dev only: it tunes.
"""

from __future__ import annotations

import argparse
import random


def split_half(nbests, refs, splits: int, metric: str, seed: int) -> dict:
    """Counts over ``splits`` random halvings; differences in points (x 100) of ``metric``."""
    from pipeline.rescore.combine import ErrorTable, Weights, metric_value, tune_weights

    table = ErrorTable(nbests, refs)
    order = list(range(len(nbests)))
    rng = random.Random(seed)
    diffs, picked = [], 0
    for _ in range(splits):
        rng.shuffle(order)
        tune_on, score_on = order[: len(order) // 2], order[len(order) // 2 :]
        tuned = tune_weights([nbests[i] for i in tune_on], [refs[i] for i in tune_on], metric=metric,
                             held_out_check=False).weights  # fmt: skip
        held = table.rows(score_on)
        value = {}
        for name, w in (("tuned", tuned), ("pick", Weights(beam_pick=True))):
            wer, cer = held.rates(w)
            value[name] = metric_value({"wer": wer, "cer": cer}, metric)
        diffs.append(100 * (value["tuned"] - value["pick"]))
        picked += tuned.beam_pick
    return {"splits": splits, "metric": metric, "pick_chosen": picked,
            "mean_diff": sum(diffs) / max(len(diffs), 1),
            "worse": sum(d > 1e-7 for d in diffs), "better": sum(d < -1e-7 for d in diffs)}  # fmt: skip


def table(r: dict) -> str:
    return "\n".join([
        f"| splits | search's pick chosen | held-out {r['metric'].upper()}, tuned - pick (mean, points) "
        "| tuned worse | tuned better |",
        "|---:|---:|---:|---:|---:|",
        f"| {r['splits']} | {r['pick_chosen']} | {r['mean_diff']:+.3f} | {r['worse']} | {r['better']} |",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.split_half", description=__doc__.split("\n")[0])
    p.add_argument("--nbest", required=True, help="nbest.jsonl written by `rescore` on DEV")
    p.add_argument("--manifest", required=True, help="the dev manifest (references)")
    p.add_argument("--splits", type=int, default=100)
    p.add_argument("--metric", choices=("wer", "cer", "wer+cer"), default="cer")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    from data_prep.manifest import read_manifest
    from pipeline.rescore.candidates import read_nbest

    nbests = read_nbest(args.nbest)
    refs_by_id = {u.id: u.text for u in read_manifest(args.manifest)}
    refs = [refs_by_id[nb.id] for nb in nbests]
    print(table(split_half(nbests, refs, args.splits, args.metric, args.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

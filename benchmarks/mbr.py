"""Minimum-Bayes-risk choice among a beam's N-best against the search's own pick (dev).

    python -m benchmarks.mbr --nbest exp/sa/whisper_soup2_lm/dev/nbest.jsonl --manifest data/sa/dev.jsonl \\
        [--priors 1.0,0.9,0.8,0.7,0.6]

Among the candidates the first decoder's beam search returned (those with a
``rank``), MBR picks the one with the least expected character edit distance to
the others, each weighted ``prior ** rank`` (an N-best file keeps the search's
ranks, not its scores, so the ranks stand in for the posterior; prior 0 is the
search's own pick). Printed as a Markdown table: dev WER / CER of the search's
pick and of MBR at each prior.
"""

from __future__ import annotations

import argparse


def mbr_pick(cands, prior: float):
    """The candidate of least rank-weighted expected edit distance (ties: the better rank)."""
    from rapidfuzz.distance import Levenshtein

    ranked = sorted((c for c in cands if c.rank is not None), key=lambda c: c.rank)
    if not ranked:
        return cands[0] if cands else None
    weights = [prior**c.rank for c in ranked]

    def risk(c) -> float:
        return sum(w * Levenshtein.distance(c.text, other.text) for w, other in zip(weights, ranked))

    return min(ranked, key=lambda c: (risk(c), c.rank))


def rows(nbests, refs, priors: list[float]) -> list[dict]:
    from pipeline.rescore.lm_weights import error_rates

    out = []
    for prior in [0.0, *priors]:
        texts = [(c.text if (c := mbr_pick(nb.candidates, prior)) else "") for nb in nbests]
        wer, cer = error_rates(refs, texts)
        out.append({"choice": "the search's pick" if prior == 0 else f"MBR, prior {prior:g}", "wer": wer, "cer": cer})
    return out


def table(result: list[dict]) -> str:
    lines = ["| choice | dev WER % | dev CER % |", "|---|---:|---:|"]
    lines += [f"| {r['choice']} | {100 * r['wer']:.2f} | {100 * r['cer']:.2f} |" for r in result]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mbr", description=__doc__.split("\n")[0])
    p.add_argument("--nbest", required=True, help="nbest.jsonl written by `rescore`")
    p.add_argument("--manifest", required=True, help="the manifest of the same clips (references)")
    p.add_argument("--priors", default="1.0,0.9,0.8,0.7,0.6", help="rank priors, comma-separated")
    args = p.parse_args(argv)
    from data_prep.manifest import read_manifest
    from pipeline.rescore.candidates import read_nbest

    nbests = read_nbest(args.nbest)
    refs_by_id = {u.id: u.text for u in read_manifest(args.manifest)}
    refs = [refs_by_id[nb.id] for nb in nbests]
    print(table(rows(nbests, refs, [float(x) for x in args.priors.split(",")])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

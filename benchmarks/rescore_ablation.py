"""Which scores earn their place: dev error rates with each subset of the rescoring scores.

    python -m benchmarks.rescore_ablation --nbest exp/sa/whisper_soup2_ctc_lm/dev/nbest.jsonl \
        --manifest data/sa/dev.jsonl

Prints, for the same N-best lists: the decoder's own first choice, the oracle
(the best candidate per utterance: the ceiling of any weighting), and the dev
WER/CER after tuning only the listed weights (each row its own grid search).
With an ensemble's N-best (candidates carrying ``att_each``) it also prints each
decoder alone: its own candidates, its own scores, every LM weight tuned, which is
what the same rescoring without the ensemble gives. When a CTC model proposed
candidates too, the subsets are repeated on the decoders' candidates alone
("decoder pool: ..."): the CTC model then only scores, so its proposals and its
scores are judged apart. Dev only: it tunes. Printed as a Markdown table
(``--json``: one JSON object per row).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from data_prep.manifest import read_manifest
from pipeline.rescore.candidates import NBest, decoder_source, read_nbest
from pipeline.rescore.combine import ErrorTable, tune_weights

#: row name -> weights left free (the others stay 0)
SUBSETS = {
    "att + word bonus": (),
    "+ ctc": ("ctc",),
    "+ word lm": ("lm",),
    "+ char lm": ("clm",),
    "+ ctc + word lm": ("ctc", "lm"),
    "+ ctc + char lm": ("ctc", "clm"),
    "+ word lm + char lm": ("lm", "clm"),
    "all": ("ctc", "lm", "clm"),
}


def oracle(nbests: list[NBest], refs: list[str]) -> tuple[float, float]:
    """Corpus WER/CER when every utterance gets its fewest-word-errors candidate."""
    import numpy as np

    table = ErrorTable(nbests, refs)
    best = np.where(table.padding, np.inf, table.word_err).argmin(axis=1)
    rows = np.arange(len(nbests))
    words = np.where(table.has, table.word_err[rows, best], table.empty_word_err).sum()
    chars = np.where(table.has, table.char_err[rows, best], table.empty_char_err).sum()
    return float(words / max(table.word_len, 1)), float(chars / max(table.char_len, 1))


def single_decoder(nbests: list[NBest], k: int) -> list[NBest]:
    """The N-best lists decoder ``k`` of an ensemble proposed, with its own scores in place of the mean."""
    source = decoder_source(k)
    out = []
    for nb in nbests:
        # ranks are the first decoder's: another decoder's list has none (its search pick is unknown)
        cands = [dataclasses.replace(c, att=c.att_each[k], att_each=None, rank=c.rank if k == 0 else None)
                 for c in nb.candidates
                 if c.att_each and {source, "ctc"} & c.sources]  # fmt: skip
        out.append(NBest(nb.id, cands, nb.seconds))
    return out


def decoder_pool(nbests: list[NBest]) -> list[NBest]:
    """The candidates some attention decoder proposed (the CTC model's own proposals left out)."""
    return [NBest(nb.id, [c for c in nb.candidates if c.sources - {"ctc"}], nb.seconds) for nb in nbests]


def subset_rows(nbests: list[NBest], refs: list[str], prefix: str = "") -> list[dict]:
    """One row per entry of :data:`SUBSETS`: dev WER/CER with only those weights tuned."""
    rows = []
    for name, free in SUBSETS.items():
        fixed = {key: (0.0,) for key, score in (("ctc_weights", "ctc"), ("lm_weights", "lm"),
                                               ("char_lm_weights", "clm")) if score not in free}  # fmt: skip
        t = tune_weights(nbests, refs, **fixed)
        rows.append({"scores": prefix + name, "wer": t.wer, "cer": t.cer, "weights": t.weights.__dict__})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rescore_ablation", description=__doc__.split("\n")[0])
    p.add_argument("--nbest", required=True, help="nbest.jsonl written by `rescore` on DEV")
    p.add_argument("--manifest", required=True, help="the dev manifest (references)")
    p.add_argument("--json", action="store_true", help="one JSON object per row instead of a table")
    args = p.parse_args(argv)
    nbests = read_nbest(args.nbest)
    refs_by_id = {u.id: u.text for u in read_manifest(args.manifest)}
    refs = [refs_by_id[nb.id] for nb in nbests]
    beam_only = [NBest(nb.id, [c for c in nb.candidates if "beam" in c.sources][:1]) for nb in nbests]
    first = tune_weights(beam_only, refs, word_bonuses=(0.0,))
    rows = [{"scores": "decoder's first choice", "wer": first.wer, "cer": first.cer}]
    w, c = oracle(nbests, refs)
    rows.append({"scores": "oracle (best candidate)", "wer": w, "cer": c})
    rows += subset_rows(nbests, refs)
    if any("ctc" in c.sources for nb in nbests for c in nb.candidates):
        rows += subset_rows(decoder_pool(nbests), refs, prefix="decoder pool: ")
    n_decoders = max((c.n_decoders for nb in nbests for c in nb.candidates), default=1)
    for k in range(n_decoders) if n_decoders > 1 else ():
        t = tune_weights(single_decoder(nbests, k), refs)
        rows.append({"scores": f"decoder {k} alone, all", "wer": t.wer, "cer": t.cer, "weights": t.weights.__dict__})
    n_cands = sum(len(nb.candidates) for nb in nbests) / max(len(nbests), 1)
    print(f"{len(nbests)} utterances, {n_cands:.1f} candidates each")
    if args.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
    else:
        print(table(rows))
    return 0


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table: dev WER / CER in %, and the tuned weights that are not 0."""
    lines = ["| candidates, scores | dev WER % | dev CER % | weights |", "|---|---:|---:|---|"]
    for r in rows:
        w = r.get("weights") or {}
        shown = ", ".join(f"{k} {v:g}" for k, v in w.items() if v and k != "beam_pick")
        shown = "the search's pick" if w.get("beam_pick") else shown
        lines.append(f"| {r['scores']} | {100 * r['wer']:.2f} | {100 * r['cer']:.2f} | {shown} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

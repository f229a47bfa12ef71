"""Whisper's decoder vocabulary against a new BPE one (``model.vocabulary: bpe``): length and step cost.

    python -m benchmarks.vocab tokens --manifest data/demo/train.jsonl [--sizes 300 1000 2000]
    python -m benchmarks.vocab steps --config recipes/demo/config.yaml --out exp/vocab_bench/steps \\
        [--size 300] [--warmup 2] [--rounds 6] [--chunk 5] [--threads 1] [key=value ...]

``tokens``: mean tokens per train text (with the leading space the labels
have) under whisper-base's tokenizer, under the BPE learnt at each size, and
the floor that Whisper's pre-tokenizer sets (one token per pre-token).

``steps``: two trainers are set up from the same config (plus the
``key=value`` overrides): ``model.vocabulary=whisper`` and
``model.vocabulary=bpe`` with ``model.vocabulary_size=--size``. After
``--warmup`` untimed steps each (first calls are slow), they train in turns of
``--chunk`` optimizer steps, in the order A B B A A B ..., so both see the same
batches (the batch plan depends only on the clips and the seed) and the same
machine load, drift included: on a shared machine this is fairer than two runs
one after the other. There is no evaluation and no checkpoint. Printed as a
table (and written to ``OUT/steps.json``): seconds per optimizer step, the
ratio to Whisper's vocabulary, label tokens per utterance, output rows and
trainable parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from data_prep.outputs import atomic_write_text


def tokens(manifest: Path, sizes: list[int], base: str) -> list[dict]:
    from transformers import WhisperTokenizer

    from data_prep.manifest import read_manifest
    from pipeline.pretrained.registry import resolve_model
    from pipeline.train.new_vocab import mean_tokens, train_bpe, train_texts

    old = WhisperTokenizer.from_pretrained(resolve_model(base))
    texts = train_texts(read_manifest(manifest))
    pre = old.backend_tokenizer.pre_tokenizer
    rows = [
        {"vocabulary": base, "text_tokens": len(old) - len(old.added_tokens_decoder),
         "tokens_per_text": round(mean_tokens(old, texts), 2)},
        {"vocabulary": "floor (pre-tokens)", "text_tokens": None,
         "tokens_per_text": round(sum(len(pre.pre_tokenize_str(t)) for t in texts) / len(texts), 2)},
    ]  # fmt: skip
    for size in sizes:
        new = train_bpe(texts, size, old)
        rows.append({"vocabulary": f"bpe {size}", "text_tokens": len(new) - len(new.added_tokens_decoder),
                     "tokens_per_text": round(mean_tokens(new, texts), 2)})  # fmt: skip
    print(f"{manifest}: {len(texts)} texts\n\n| vocabulary | text tokens | tokens per text |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['vocabulary']} | {r['text_tokens'] or '-'} | {r['tokens_per_text']:.2f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.vocab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tokens", help="tokens per train text")
    t.add_argument("--manifest", required=True, type=Path)
    t.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 2000])
    t.add_argument("--base", default="whisper-base", help="the model whose tokenizer is the baseline")
    p = sub.add_parser("steps", help="seconds per optimizer step, interleaved")
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--size", type=int, default=0, help="model.vocabulary_size of the bpe run (0 = default)")
    p.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps of each trainer first")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--chunk", type=int, default=5, help="optimizer steps per turn")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("overrides", nargs="*", help="config overrides for both trainers (key=value)")
    args = ap.parse_args(argv)
    if args.command == "tokens":
        tokens(args.manifest, args.sizes, args.base)
        return 0

    import logging

    from pipeline.config import load_config
    from pipeline.train.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # No evaluation, checkpoint or final step inside the measurement:
    never = args.warmup + args.rounds * args.chunk + 1
    common = [f"train.threads={args.threads}", f"train.max_steps={never}", f"train.eval_every={never}",
              f"train.checkpoint_every={never}", f"train.log_every={never}"]  # fmt: skip
    variants = {"whisper": ["model.vocabulary=whisper"], "bpe": ["model.vocabulary=bpe"]}
    if args.size:
        variants["bpe"].append(f"model.vocabulary_size={args.size}")
    trainers = {}
    for name, extra in variants.items():
        cfg = load_config(args.config, [*args.overrides, *common, *extra, f"output_dir={args.out / name}"])
        trainers[name] = Trainer(cfg, progress=False).setup()
    for tr in trainers.values():
        if args.warmup:
            tr.train(until_step=args.warmup)
    seconds = dict.fromkeys(trainers, 0.0)
    names = list(trainers)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            tr = trainers[name]
            t0 = time.perf_counter()
            tr.train(until_step=tr.step + args.chunk)
            seconds[name] += time.perf_counter() - t0
    steps = args.rounds * args.chunk
    result = {
        name: {
            "s_per_step": round(seconds[name] / steps, 3),
            "steps": steps,
            "label_tokens_per_utt": round(sum(len(ex.labels) for ex in tr.train_ex) / len(tr.train_ex), 2),
            "vocab_rows": tr.unwrapped.whisper.get_output_embeddings().weight.shape[0],
            "trainable_params": tr.n_trainable,
        }
        for name, tr in trainers.items()
    }
    result["bpe_over_whisper"] = round(seconds["bpe"] / seconds["whisper"], 3)
    atomic_write_text(args.out / "steps.json", json.dumps(result, indent=2) + "\n")
    print(steps_table(result))
    return 0


def steps_table(result: dict) -> str:
    """The ``steps`` measurement as a Markdown table, Whisper's vocabulary first."""
    lines = ["| vocabulary | s per optimizer step | ratio | label tokens per utterance | output rows "
             "| trainable parameters |", "|---|---:|---:|---:|---:|---:|"]
    for name in ("whisper", "bpe"):
        r = result[name]
        ratio = 1.0 if name == "whisper" else result["bpe_over_whisper"]
        lines.append(f"| {name} | {r['s_per_step']} | {ratio:.2f} | {r['label_tokens_per_utt']} | {r['vocab_rows']:,} "
                     f"| {r['trainable_params'] / 1e6:.1f} M |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m pipeline lm``: the word n-gram LM of CTC beam search, and its weights.

    python -m pipeline lm --train data/sa/train.jsonl --out exp/sa_ctc/lm [--order 3]
    python -m pipeline lm --train data/sa/train.jsonl --out exp/sa_ctc/lm \\
        --tune-on data/sa/dev.jsonl --model exp/sa_ctc/best
    python -m pipeline lm --config recipes/sa_ctc/config.yaml --tune-on data/sa/dev.jsonl --model exp/sa_ctc/best

writes ``<out>/lm.arpa`` (from the TRAIN transcripts only) and ``<out>/lm.json``
(the weights ``decode --lm <out>`` uses: tuned on the dev manifest when
``--tune-on`` is given, else the defaults alpha 0.5, beta 1.0). ``--out`` may not
be, contain or lie inside an input, and one run at a time writes it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from data_prep.manifest import ManifestError, Utterance, read_manifest, read_manifest_lines
from data_prep.outputs import atomic_write_text, exclusive, guard_output


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e


def _order(minimum: int):
    """An argparse type: an n-gram order of at least ``minimum`` (KenLM needs bigrams; 0 = no char LM)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = -1
        if n < 2 and not (minimum == 0 and n == 0):
            raise argparse.ArgumentTypeError(f"expected an n-gram order >= 2{' (or 0)' if minimum == 0 else ''}, "
                                             f"got {text!r}")  # fmt: skip
        return n

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help="recipe config: defaults for --train (data), --out (<output_dir>/lm) and the ctc.lm_* keys")
    p.add_argument("--train", type=Path, default=None, help="TRAIN manifest: the only text the LM is built from")
    p.add_argument("--out", type=Path, default=None, help="directory for lm.arpa and lm.json")
    p.add_argument("--order", type=_order(2), default=None, help="n-gram order (>= 2; default 3 or ctc.lm_order)")
    p.add_argument("--char-order", type=_order(0), default=0,
                   help="also write char.arpa, a character n-gram LM of this order (for `rescore`; 0 = none)")
    p.add_argument("--tune-on", type=Path, default=None, help="DEV manifest to tune alpha/beta on (never test)")
    p.add_argument("--model", type=Path, default=None, help="CTC checkpoint directory to tune with")
    p.add_argument("--alphas", type=_floats, default=None, help="LM weights to try, e.g. 0,0.5,1")
    p.add_argument("--betas", type=_floats, default=None, help="word bonuses to try")
    p.add_argument("--beam-width", type=int, default=None)
    p.add_argument("--metric", choices=["wer", "cer"], default="wer")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=0, help="tune on the first N dev utterances (0 = all)")
    p.add_argument("--device", default="cpu")


def _fill_defaults(args: argparse.Namespace) -> None:
    """Missing options from ``--config`` (its ``data`` and ``ctc`` sections), else the library defaults."""
    from pipeline.config import CTCConfig, load_config
    from pipeline.rescore.lm_weights import DEFAULT_ALPHAS, DEFAULT_BETAS

    ctc = CTCConfig()
    if args.config is not None:
        cfg = load_config(args.config)
        ctc = cfg.ctc
        args.train = args.train or Path(cfg.data.manifest("train"))
        if args.out is None and cfg.output_dir:
            args.out = Path(cfg.output_dir) / "lm"
    args.order = args.order or ctc.lm_order
    args.alphas = args.alphas or list(ctc.lm_alphas or DEFAULT_ALPHAS)
    args.betas = args.betas or list(ctc.lm_betas or DEFAULT_BETAS)
    args.beam_width = args.beam_width or ctc.lm_beam_width


def run(args: argparse.Namespace) -> int:
    from pipeline.config import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _fill_defaults(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.train is None or args.out is None:
        print("error: give --train and --out (or a --config with data and output_dir)", file=sys.stderr)
        return 2
    if (args.tune_on is None) != (args.model is None):
        print("error: --tune-on and --model go together", file=sys.stderr)
        return 2
    train = read_manifest(args.train, unique_ids=False)  # a training manifest may repeat lines on purpose
    leaked = sorted({u.split for u in train if u.split in ("dev", "test")})
    if leaked:
        print(f"error: {args.train}: holds {'/'.join(leaked)} utterances; the LM is built from TRAIN text only",
              file=sys.stderr)  # fmt: skip
        return 2
    if not any(u.text.strip() for u in train):
        raise ManifestError(f"{args.train}: no utterance with a transcript to build the LM from "
                            f"({len(train)} utterances)")  # fmt: skip
    guard_output(args.out, [args.train, args.tune_on, args.model, args.config])
    with exclusive(args.out, "lm"):
        return _build(args, train)


def _build(args: argparse.Namespace, train: list[Utterance]) -> int:
    """Write lm.arpa (char.arpa) and lm.json into ``args.out``, tuning the weights with ``--tune-on``."""
    from pipeline.decode.ctc import DEFAULT_ALPHA, DEFAULT_BETA, LM_SETTINGS
    from pipeline.lm.build import build_ngram_lm

    args.out.mkdir(parents=True, exist_ok=True)
    arpa = build_ngram_lm([u.text for u in train if u.text.strip()], args.order, args.out / "lm.arpa")
    info = {"arpa": arpa.name, "order": args.order, "alpha": DEFAULT_ALPHA, "beta": DEFAULT_BETA,
            "beam_width": args.beam_width, "train_manifest": str(args.train), "tuned_on": None}  # fmt: skip
    if args.char_order:
        from pipeline.lm.build import build_char_lm

        char = build_char_lm([u.text for u in train], args.char_order, args.out / "char.arpa")
        info.update(char_arpa=char.name, char_order=args.char_order)
    if args.tune_on is not None:
        from pipeline.rescore.lm_weights import dev_logits, tune_lm_weights

        dev = read_manifest_lines(args.tune_on)
        if any(u.split == "test" for _, u in dev):
            print(f"error: {args.tune_on}: holds test utterances; tune on dev only", file=sys.stderr)
            return 2
        dev = dev[: args.limit] if args.limit else dev
        dev, logits, vocab = dev_logits(args.model, dev, args.tune_on, args.batch_size, args.device)
        if not dev:
            print(f"error: {args.tune_on}: no clip whose audio can be read", file=sys.stderr)
            return 2
        res = tune_lm_weights(logits, [u.text for u in dev], vocab, arpa, alphas=args.alphas, betas=args.betas,
                              beam_width=args.beam_width, metric=args.metric)  # fmt: skip
        info.update(alpha=res.alpha, beta=res.beta, tuned_on=str(args.tune_on), model=str(args.model),
                    dev_wer=res.wer, dev_cer=res.cer, metric=args.metric, grid=res.grid)  # fmt: skip
    atomic_write_text(args.out / LM_SETTINGS, json.dumps(info, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {arpa} and {args.out / LM_SETTINGS} (alpha {info['alpha']}, beta {info['beta']})", file=sys.stderr)
    return 0

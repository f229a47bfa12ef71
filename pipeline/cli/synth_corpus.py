"""CLI_DOC"""

from __future__ import annotations

import argparse
from pathlib import Path

from data_prep.outputs import exclusive

#: Lexicons per language: short, common words that espeak-ng pronounces consistently.
from data_prep.synth_corpus import LEXICONS, VOICES, synth_corpus


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--lang", default="pa", choices=sorted(LEXICONS))
    p.add_argument("--utts-per-speaker", type=int, default=60)
    p.add_argument("--speakers", type=int, default=len(VOICES))
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    with exclusive(args.out, "synth-corpus"):  # two runs would write the same temporary files
        n = synth_corpus(args.out, args.lang, args.utts_per_speaker, args.speakers, args.seed)
    print(f"{n} utterances in {args.out}")
    return 0

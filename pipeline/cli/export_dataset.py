"""``python -m pipeline export-dataset``: prepared splits as a Hugging Face DatasetDict (``save_to_disk``).

    python -m pipeline export-dataset --data data/sa --out exp/sa/hf_dataset
    # then, anywhere datasets is installed
    python -c "import datasets; print(datasets.load_from_disk('exp/sa/hf_dataset'))"

Splits ``train``, ``validation`` (the dev manifest) and ``test``; columns ``id``,
``audio`` (16 kHz Audio feature, 16-bit FLAC bytes), ``text``, ``text_raw``,
``speaker``, ``duration``, ``language``: see :mod:`data_prep.hf_export`.
"""

from __future__ import annotations

import argparse
import sys

from data_prep.hf_export import DatasetExportError, export_dataset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="prepared data folder (its train/dev/test.jsonl)")
    p.add_argument("--out", required=True, help="the dataset folder to write (replaced whole if this toolkit made it)")


def run(args: argparse.Namespace) -> int:
    try:
        out = export_dataset(args.data, args.out)
    except DatasetExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (datasets.load_from_disk reads it)")
    return 0

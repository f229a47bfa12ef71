"""A rescored system's dev and test speakers swapped: the weights tuned on the test speaker, the dev speaker scored.

    python -m benchmarks.swap_dev_test --system exp/sa/whisper_soup2_ctc_lm --data data/sa --work exp/sa_swap

A corpus with one dev and one test speaker gives a single held-out figure. This is
the second fold of a two-fold estimate, as far as the rescoring goes: ``--system``
is a folder ``rescore --tune`` wrote (``dev/`` with ``rescore.json`` and both
splits' ``nbest.jsonl``); its settings are read from ``dev/rescore.json``. In
``WORK``, ``<data>_swapped/{dev,test}.jsonl`` are the prepared test and dev manifests, swapped
(audio paths made relative to their new folder); the two N-best lists are copied
across (the same clips decoded by the same models: ``rescore`` finds them finished
and decodes nothing); ``rescore --tune`` tunes the weights on the test speaker, the
dev speaker is rescored with them, and both folds are pooled (``score --pool``):
per fold and pooled WER/CER with intervals and the worst speaker. What the
training and the CTC system's LM weights chose on dev is not swapped: the dev
speaker's figure here is that much optimistic, and a full swap retrains stages 3-6.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def swap_manifests(data: Path, out: Path) -> None:
    """``out/dev.jsonl`` = ``data/test.jsonl`` and the other way round, audio paths rebased onto ``out``."""
    from data_prep.folds import rebase_audio
    from data_prep.manifest import read_manifest, write_jsonl

    out.mkdir(parents=True, exist_ok=True)
    for src, dst in (("test", "dev"), ("dev", "test")):
        utts = [rebase_audio(u, data.resolve(), out.resolve()) for u in read_manifest(data / f"{src}.jsonl")]
        write_jsonl(out / f"{dst}.jsonl", utts)
    for name in ("prepare.json",):  # the text rules score reads
        if (data / name).is_file():
            shutil.copyfile(data / name, out / name)


def rescore_args(record: dict) -> list[str]:
    """The ``rescore`` arguments of the search ``rescore.json`` records (models, LMs, beam, fusion)."""
    args = ["--model", *record["models"], "--beams", str(record["beams"]), "--nbest", str(record["nbest"]),
            "--ctc-proposals", str(record["ctc_proposals"]), "--batch-size", str(record["batch_size"])]  # fmt: skip
    for flag, key in (("--ctc", "ctc"), ("--lm", "lm"), ("--char-lm", "char_lm"), ("--language", "language")):
        if record.get(key):
            args += [flag, record[key]]
    fusion = record.get("fusion")
    if fusion:
        args += ["--fusion-weight", str(fusion["weight"]), "--fusion-bonus", str(fusion["bonus"]),
                 "--fusion-top-k", str(fusion["top_k"]), "--fusion-length-penalty", str(fusion["length_penalty"])]
        if fusion.get("rate_from"):
            args += ["--fusion-rate-from", fusion["rate_from"], "--fusion-rate-margin", str(fusion["rate_margin"])]
    return args


def pipeline(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"error: `python -m pipeline {' '.join(args)}` failed ({done.returncode})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.swap_dev_test", description=__doc__.split("\n")[0],
                                epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--system", required=True, type=Path, help="a folder `rescore --tune` wrote into (dev/, test/)")
    p.add_argument("--data", required=True, type=Path, help="the prepared folder it was tuned and tested on")
    p.add_argument("--work", required=True, type=Path, help="where the swapped manifests and the second fold go")
    args = p.parse_args(argv)
    record = json.loads((args.system / "dev" / "rescore.json").read_text(encoding="utf-8"))
    name = args.system.name
    data, fold = args.work / f"{args.data.name}_swapped", args.work / name
    swap_manifests(args.data, data)
    for src, dst in (("test", "dev"), ("dev", "test")):
        (fold / dst).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.system / src / "nbest.jsonl", fold / dst / "nbest.jsonl")
    search = rescore_args(record)
    metric = record["tuning"]["metric"]
    pipeline("rescore", *search, "--manifest", str(data / "dev.jsonl"), "--out", str(fold / "dev/hyps.jsonl"),
             "--tune", "--tune-metric", metric)  # fmt: skip
    pipeline("rescore", *search, "--manifest", str(data / "test.jsonl"), "--out", str(fold / "test/hyps.jsonl"),
             "--weights", str(fold / "dev/weights.json"))  # fmt: skip
    pipeline("score", "--manifest", str(data / "test.jsonl"), "--hyps", str(fold / "test/hyps.jsonl"),
             "--system", name, "--kind", "finetuned")  # fmt: skip
    pipeline("score", "--pool", str(args.system / "test"), str(fold / "test"), "--out", str(args.work / "pooled"),
             "--system", f"{name}_2folds")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

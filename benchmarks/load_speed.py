"""CPU cost of reading a prepared corpus back: every utterance of each manifest loaded once, in turns.

    python -m benchmarks.load_speed data/sa/train.jsonl data/sa_ref/train.jsonl [--repeats 2]

Each manifest is read with :meth:`data_prep.manifest.Utterance.load_audio`, the
way training and decoding read it: a FLAC (or WAV) cache entry is decoded as it
is; a reference-mode record (``prepare --cache-format none``) decodes its source
file again and applies its trim, gain and DC offset. The manifests are taken in
turns ``--repeats`` times, in one process (so both see the same load). Printed
as a Markdown table: the CPU seconds of each pass, and the best pass over the
first manifest's best (the baseline of the run).
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def read_all(manifest: Path) -> tuple[float, float]:
    """(CPU seconds, seconds of audio) of loading every utterance of ``manifest`` once."""
    from data_prep.manifest import read_manifest

    utts = read_manifest(manifest, unique_ids=False)
    c = cpu_seconds()
    samples = sum(len(u.load_audio(manifest.parent)) for u in utts)
    return cpu_seconds() - c, samples / 16000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load_speed", description=__doc__.split("\n")[0])
    p.add_argument("manifests", nargs="+", type=Path, help="manifests to read; the first is the baseline")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    runs: dict[Path, list[float]] = {m: [] for m in args.manifests}
    audio: dict[Path, float] = {}
    for _ in range(args.repeats):
        for m in args.manifests:
            cpu, audio[m] = read_all(m)
            runs[m].append(cpu)
    base = min(runs[args.manifests[0]])
    print("| manifest | audio h | CPU s, each pass | best / baseline's best |\n|---|---:|---|---:|")
    for m in args.manifests:
        ratio = f"{min(runs[m]) / base:.2f}" if base > 0 else "-"  # a tiny manifest can read in under a tick
        print(f"| {m} | {audio[m] / 3600:.2f} | {', '.join(f'{c:.2f}' for c in runs[m])} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Start-up time of ``python -m pipeline decode --help``, against the same with torch's fusion module imported.

    python -m benchmarks.help_startup [--command decode] [--repeats 2]

The fused search's options live in :mod:`pipeline.cli.options`, which
imports no torch, so reading options and printing ``--help`` stay fast. The
baseline of this run imports :mod:`pipeline.decode.fusion` (which imports
torch) before running the same command: the cost the options would carry if
they lived in that module. Each variant runs in a fresh interpreter, the two
alternating ``--repeats`` times. Printed as a Markdown table: each run's wall
seconds and the baseline's best over the variant's best.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

VARIANTS = {
    "`{cmd} --help`": "",
    "the same with `pipeline.decode.fusion` imported first (baseline)": "import pipeline.decode.fusion; ",
}


def run_once(command: str, preload: str) -> float:
    """Wall seconds of one fresh interpreter printing ``pipeline <command> --help``."""
    code = f"{preload}import runpy, sys; sys.argv = ['pipeline', {command!r}, '--help']; " \
           "runpy.run_module('pipeline', run_name='__main__')"  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.help_startup", description=__doc__.split("\n")[0])
    p.add_argument("--command", default="decode", help="the pipeline command whose --help is timed")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, preload in VARIANTS.items():
            times[name].append(run_once(args.command, preload))
    baseline = min(times[list(VARIANTS)[1]])
    print("| variant | wall s, each run | baseline / variant (best runs) |\n|---|---|---:|")
    for name, runs in times.items():
        shown = name.format(cmd=f"pipeline {args.command}")
        print(f"| {shown} | {', '.join(f'{t:.2f}' for t in runs)} | {baseline / min(runs):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

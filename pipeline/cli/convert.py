"""``python -m pipeline convert``: make a transformers directory from a bundled or CT2 Whisper model.

    python -m pipeline convert --model whisper-base            # into the cache, prints the folder
    python -m pipeline convert --model path/to/ct2 --out DIR   # into DIR
    python -m pipeline convert --list                          # the bundled models
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data_prep.outputs import OutputRefused, guard_output
from pipeline.pretrained.registry import (
    BUNDLED,
    ModelNotAvailable,
    bundled_dirs,
    convert_cached,
    is_ct2_dir,
    list_bundled,
    resolve_model,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="bundled name (whisper-base, whisper-tiny.en), CT2 directory or hub id")
    parser.add_argument("--out", type=Path, help="write the converted model here instead of the cache")
    parser.add_argument("--list", action="store_true", help="list the bundled models and exit")


def run(args: argparse.Namespace) -> int:
    if args.list:
        for m in list_bundled():
            print(f"{m.name}\t{'installed' if m.installed else 'not installed'}\t{m.description}")
        return 0
    if not args.model:
        print("convert: --model is required (or --list)", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        if args.out is not None:
            out = _convert_to(args.model, args.out)
        else:
            out = resolve_model(args.model)
    except OutputRefused as e:  # an unsafe --out is bad input: exit status 2, as every command gives it
        print(f"convert: error: {e}", file=sys.stderr)
        return 2
    except (ModelNotAvailable, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"convert: {e}", file=sys.stderr)
        return 1
    print(f"convert: ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(out)
    return 0


def _convert_to(model: str, out: Path) -> Path:
    """Convert a bundled name or CT2 directory into ``out`` (which may not be, hold or lie inside it)."""
    if model in BUNDLED:
        dirs = bundled_dirs(model)
        guard_output(out, dirs)
        return convert_cached(dirs[0], dirs[1:], out=out)
    path = Path(model).expanduser()
    if is_ct2_dir(path):
        guard_output(out, [path])
        return convert_cached(path, out=out)
    raise ValueError(f"{model}: --out needs a bundled name or a CTranslate2 directory (nothing to convert)")

"""Does an exported system, copied elsewhere, give the recipe's own final transcripts clip for clip?

    python -m benchmarks.export_reproduces --system exp/sa/final --manifest data/sa/test.jsonl \\
        --hyps exp/sa/whisper_st_soup2_ctc_lm/test/hyps.jsonl --threads 2 [--limit N]

The system folder is copied into a temporary folder (away from ``exp/`` and ``data/``) and
``python -m pipeline decode --model COPY`` runs on the manifest in its own process
(``OMP_NUM_THREADS=--threads``). Printed: how many
clips have identical text, the first differing ones, WER/CER of both as ``score`` scores them, and
the decode's wall time and real-time factor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_clips(manifest: Path, limit: int, work: Path) -> Path:
    """A manifest of ``manifest``'s first ``limit`` lines, written under ``work``, audio paths made absolute."""
    lines = manifest.read_text(encoding="utf-8").splitlines()[:limit]
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row["audio"] = str((manifest.parent / row["audio"]).resolve())
    out = work / manifest.name
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out


def decode_copy(system: Path, manifest: Path, threads: int, work: Path) -> tuple[Path, float]:
    """Decode ``manifest`` with a copy of ``system`` made under ``work``; (hyps file, wall seconds)."""
    copy = work / "moved" / system.name
    shutil.copytree(system, copy)
    out = work / "hyps.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline", "decode", "--model", str(copy), "--manifest", str(manifest),
                    "--out", str(out)], cwd=ROOT, env=env, check=True)  # fmt: skip
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    from data_prep.manifest import read_manifest
    from pipeline.decode.hyps import read_hyps
    from pipeline.score.scorer import score_utterances

    ap = argparse.ArgumentParser(prog="python -m benchmarks.export_reproduces", description=__doc__.splitlines()[0])
    ap.add_argument("--system", type=Path, required=True, help="the exported system folder")
    ap.add_argument("--manifest", type=Path, required=True, help="the recipe's test manifest")
    ap.add_argument("--hyps", type=Path, required=True, help="the recipe's final transcripts of that manifest")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--show", type=int, default=5, help="differing clips to print")
    ap.add_argument("--limit", type=int, help="only the manifest's first N clips")
    args = ap.parse_args(argv)

    utts = read_manifest(args.manifest)[: args.limit]
    lang = utts[0].language if utts else ""
    recipe = {h.id: h for h in read_hyps(args.hyps)}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest.resolve()
        if args.limit:
            manifest = first_clips(manifest, args.limit, Path(tmp))
        out, seconds = decode_copy(args.system.resolve(), manifest, args.threads, Path(tmp))
        moved = {h.id: h for h in read_hyps(out)}
    same = [u.id for u in utts if u.id in recipe and u.id in moved and recipe[u.id].text == moved[u.id].text]
    differing = [u.id for u in utts if u.id not in same]
    audio = sum(u.duration for u in utts)
    print(f"{len(same)} of {len(utts)} clips identical; decode {seconds:.0f} s for {audio:.0f} s of audio "
          f"(RTF {seconds / audio:.3f}, {args.threads} threads, model loading included)")  # fmt: skip
    for uid in differing[: args.show]:
        print(f"  {uid}\n    recipe: {recipe[uid].text if uid in recipe else '(missing)'}"
              f"\n    moved:  {moved[uid].text if uid in moved else '(missing)'}")  # fmt: skip
    for name, hyps in (("recipe", recipe), ("moved system", moved)):
        r = score_utterances(utts, hyps, lang, system=name, kind="finetuned", testset=args.manifest.stem).results
        print(f"{name}: WER {100 * r.wer:.2f} % CER {100 * r.cer:.2f} %")
    return 0 if not differing else 1


if __name__ == "__main__":
    sys.exit(main())

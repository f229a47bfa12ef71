"""The speed ladder of one exported system: its ``--speed`` rungs beside the runtimes users run Whisper with.

    python -m pipeline export --model exp/demo/whisper_ft/best --with-ct2 int8 --data data/demo --out exp/demo/final
    python -m benchmarks.speed_ladder --system exp/demo/final --manifest data/demo/test.jsonl --threads 2

Rows, on the same clips in one run, ``--threads`` CPU threads everywhere, scored as ``score`` scores:

- (a) **transformers pipeline**: ``pipeline("automatic-speech-recognition", model=SYSTEM/decoder)``, greedy
  (``generate_kwargs={"num_beams": 1}``: its default is 5 beams), float32, one clip at a time (it pads
  every clip to 30 s): the reference the ratios are taken to;
- (b) **our greedy** (``--speed fast``): this toolkit's greedy search;
- (c) **our CTranslate2 int8 greedy** (``--speed fast`` of a system exported ``--with-ct2 int8``): the
  system's ``ct2/`` when it is int8, else
  ``--ct2 DIR``, else the decoder converted to int8 into a temporary folder (never into the system);
- (d) **faster-whisper int8** on that same CTranslate2 model, greedy as its model card calls it
  (``language``, ``beam_size=1``, ``without_timestamps=True``; it pads every clip to 30 s);
- (e) **beam + fusion** (``--speed balanced``): the decoder's beam search, the system's character LM fused
  in where it has one;
- (f) **the full system** (``--speed best``): its own search, as exported.

Seconds are wall time for all clips with the model loaded; the real-time factor (RTF) is seconds per
second of audio; "x (a)" is the row's RTF over row (a)'s, 3 significant digits (below 1: faster). A row
whose runtime is not installed (or cannot run this system) is printed as skipped, with the reason.
Printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.runtimes import (
    Clip,
    batched,
    error_rates,
    faster_whisper,
    load_clips,
    timed,
    transformers_pipeline,
)

Decode = Callable[[list[Clip]], list[str]]


class Skipped(Exception):
    """A row that cannot run here; the message says why."""


@dataclass(frozen=True)
class Rung:
    key: str  # (a) ... (f)
    name: str
    load: Callable[[], Decode]  # raises Skipped


@dataclass(frozen=True)
class Measured:
    key: str
    name: str
    wer: float | None = None
    cer: float | None = None
    seconds: float | None = None
    skipped: str = ""  # why it did not run ("" : it ran)


def needs(module: str, extra: str = "ct2") -> None:
    """Skipped unless ``module`` is importable."""
    if importlib.util.find_spec(module) is None:
        raise Skipped(f"{module} is not installed (pip install '.[{extra}]')")


def int8_ct2(system: Path, spec, given: Path | None, scratch: Path) -> Path:
    """The system's decoder as an int8 CTranslate2 model: ``--ct2``, the system's own ``ct2/`` when it is int8,
    else a conversion into ``scratch`` (made once, on first use)."""
    from pipeline.system.ct2 import ct2_writer, read_export

    if given is not None:
        return given
    if spec.ct2 and read_export(system / spec.ct2).quantization == "int8":
        return system / spec.ct2
    folder = scratch / "ct2_int8"
    if not folder.is_dir():
        print(f"converting {system / spec.decoders[0]} to CTranslate2 int8 in {folder}", file=sys.stderr)
        ct2_writer("int8")(system / spec.decoders[0], folder, spec)
    return folder


def rungs(system: Path, spec, threads: int, ct2: Callable[[], Path]) -> list[Rung]:
    """The six rows, each loaded only when it runs."""
    from pipeline.decode.recognizer import Recognizer
    from pipeline.system import speed
    from pipeline.system.ct2 import ct2_batch_decoder, read_export
    from pipeline.system.recognizer import load_system

    def whisper_decoder() -> Path:
        decoder = system / spec.decoders[0]
        if (decoder / "ctc_config.json").is_file():
            raise Skipped(f"{spec.decoders[0]}/ is a CTC checkpoint, not a Whisper decoder")
        return decoder

    def pipeline_row() -> Decode:
        return transformers_pipeline(whisper_decoder(), num_beams=1)  # its default is 5 beams

    def ct2_row() -> Decode:
        whisper_decoder()
        needs("ctranslate2")
        folder = ct2()
        return batched(Recognizer("ct2", str(folder), ct2_batch_decoder(folder, "cpu", threads),
                                  batch_size=spec.search.batch_size))  # fmt: skip

    def faster_whisper_row() -> Decode:
        whisper_decoder()
        needs("ctranslate2")
        needs("faster_whisper")
        folder = ct2()
        code = read_export(folder).language_token.strip("<|>")
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        if code not in _LANGUAGE_CODES:
            raise Skipped(f"faster-whisper takes Whisper's language codes only, not {code!r}")
        return faster_whisper(folder, threads, language=code, beam_size=1, without_timestamps=True)

    def balanced_row() -> Decode:
        try:
            return batched(speed.balanced(system, spec)[0])
        except ValueError as e:
            raise Skipped(str(e)) from e

    s = spec.search
    beams = s.beams if s.beams > 1 else speed.BALANCED_BEAMS
    fused = " + character-LM fusion" if spec.char_lm and s.fusion else " (no character LM)"
    return [
        Rung("(a)", "transformers pipeline, greedy, float32", pipeline_row),
        Rung("(b)", "ours, greedy (--speed fast)", lambda: batched(speed.our_greedy(system, spec)[0])),
        Rung("(c)", "ours, CTranslate2 int8 greedy (--speed fast of an export --with-ct2 int8)", ct2_row),
        Rung("(d)", "faster-whisper int8, greedy", faster_whisper_row),
        Rung("(e)", f"ours, beam {beams}{fused} (--speed balanced)", balanced_row),
        Rung("(f)", f"the full system (--speed best): {speed.own_search(system, spec).split(': ', 1)[1]}",
             lambda: batched(load_system(system))),
    ]  # fmt: skip


def measure(rung: Rung, clips: list[Clip], score: Callable[[list[str], str], tuple[float, float]]) -> Measured:
    try:
        decode = rung.load()
    except Skipped as e:
        print(f"{rung.key} {rung.name}: skipped: {e}", file=sys.stderr)
        return Measured(rung.key, rung.name, skipped=str(e))
    texts, seconds = timed(decode, clips)
    wer, cer = score(texts, rung.key)
    print(f"{rung.key} {rung.name}: WER {100 * wer:.1f} CER {100 * cer:.1f} in {seconds:.1f} s", file=sys.stderr)
    return Measured(rung.key, rung.name, wer, cer, seconds)


def table(rows: list[Measured], n: int, audio_seconds: float, threads: int) -> str:
    reference = next((r.seconds for r in rows if r.key == "(a)" and r.seconds), None)
    lines = [f"{n} clips, {audio_seconds:.0f} s of audio, {threads} CPU thread(s)", "",
             "| | rung | WER % | CER % | s | RTF | x (a) |", "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        if r.skipped:
            lines.append(f"| {r.key} | {r.name} | skipped: {r.skipped} | | | | |")
            continue
        ratio = f"{r.seconds / reference:.3g}" if reference else "-"
        lines.append(f"| {r.key} | {r.name} | {100 * r.wer:.1f} | {100 * r.cer:.1f} | {r.seconds:.1f} | "
                     f"{r.seconds / audio_seconds:.3f} | {ratio} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed_ladder", description=__doc__.split("\n")[0])
    p.add_argument("--system", required=True, type=Path, help="a system directory (`export`'s)")
    p.add_argument("--manifest", required=True, type=Path, help="the test set (a prepared manifest)")
    p.add_argument("--ct2", type=Path, default=None,
                   help="its decoder as an int8 CTranslate2 model (default: the system's ct2/ when int8, else "
                        "converted into a temporary folder)")  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="CPU threads of every row (default 2)")
    p.add_argument("--limit", type=int, default=None, help="the first N clips")
    p.add_argument("--skip", default="", help="rows to leave out, comma-separated (e.g. a,d)")
    args = p.parse_args(argv)
    import torch

    from pipeline.score.scorer import manifest_language
    from pipeline.system.spec import read_spec

    torch.set_num_threads(args.threads)
    spec = read_spec(args.system)
    utts, clips = load_clips(args.manifest, args.limit)
    lang = manifest_language(utts, args.manifest)
    skip = {f"({s.strip('()')})" for s in args.skip.split(",") if s}

    def score(texts: list[str], key: str) -> tuple[float, float]:
        return error_rates(utts, clips, texts, lang, key, args.manifest.stem)

    with tempfile.TemporaryDirectory(prefix="speed_ladder_") as scratch:
        ct2 = lambda: int8_ct2(args.system, spec, args.ct2, Path(scratch))  # noqa: E731
        rows = [measure(r, clips, score) if r.key not in skip else Measured(r.key, r.name, skipped="--skip")
                for r in rungs(args.system, spec, args.threads, ct2)]  # fmt: skip
    print(table(rows, len(clips), sum(len(c.audio) for c in clips) / 16000, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

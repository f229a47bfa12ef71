"""One exported system in the runtimes users run Whisper with: error rates and seconds on a test set.

    python -m pipeline export --format ct2 --quantization int8 --model exp/demo/final --data data/demo \\
        --out exp/demo/ct2_int8
    python -m benchmarks.runtimes --system exp/demo/final --ct2 exp/demo/ct2_int8 --manifest data/demo/test.jsonl

Rows, each on the same clips, scored as ``score`` scores (the manifest language's normalization):

- **ours**: the system directory as ``transcribe`` / ``decode`` run it (greedy for a plain decoder,
  the clip's real length for a model trained so);
- **transformers pipeline**: ``pipeline("automatic-speech-recognition", model=SYSTEM/decoder)``
  called with no arguments, one clip at a time (it pads every clip to 30 s; its default search is 5 beams
  wide, scored over the tokens the model may emit as the exported generation config asks);
- **CTranslate2**: ``ctranslate2.models.Whisper(CT2).generate`` greedy with the trained prompt,
  on the 30-s features every Whisper runtime feeds (faster-whisper included), and on the clip's
  real-length features (:func:`pipeline.system.ct2.ct2_features`);
- **faster-whisper**: ``WhisperModel(CT2).transcribe(path)`` plain (its defaults: 5-wide beam,
  timestamps, temperature fallback; the language detected), and as the model card says to call it
  (``language``, ``beam_size=1``, ``without_timestamps=True``). Skipped when it is not installed.

Seconds are wall time for all clips with the model loaded, ``--threads`` CPU threads everywhere.
Printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Clip:
    id: str
    audio: object  # 16 kHz mono float32 samples
    path: Path | None  # the file, where it is exactly the clip (what a user hands faster-whisper)


@dataclass(frozen=True)
class Row:
    runtime: str
    wer: float
    cer: float
    seconds: float


def load_clips(manifest: Path, limit: int | None) -> tuple[list, list[Clip]]:
    import soundfile as sf

    from data_prep.manifest import read_manifest

    utts = read_manifest(manifest)[:limit]
    clips = []
    for u in utts:
        path = u.audio_path(manifest.parent)
        whole = u.offset == 0 and u.dc_offset == 0 and u.gain == 1.0
        if whole:
            info = sf.info(str(path))
            whole = info.samplerate == 16000 and abs(info.duration - u.duration) < 0.01
        clips.append(Clip(u.id, u.load_audio(manifest.parent), path if whole else None))
    return utts, clips


def timed(decode: Callable[[list[Clip]], list[str]], clips: list[Clip]) -> tuple[list[str], float]:
    t0 = time.perf_counter()
    texts = decode(clips)
    return texts, time.perf_counter() - t0


def ours(system: Path, threads: int) -> Callable[[list[Clip]], list[str]]:
    from pipeline.system.recognizer import load_any

    return batched(load_any(system))


def batched(recognizer) -> Callable[[list[Clip]], list[str]]:
    """A recognizer run over clips as ``decode`` runs it over a manifest: sorted by duration, in its batches."""
    size = recognizer.batch_size or 8

    def decode(clips: list[Clip]) -> list[str]:
        # in the order and batches decode uses for a manifest: sorted by duration
        order = sorted(range(len(clips)), key=lambda i: len(clips[i].audio))
        texts: dict[int, str] = {}
        for b in range(0, len(order), size):
            batch = order[b : b + size]
            for i, text in zip(batch, recognizer.transcribe([clips[i].audio for i in batch])):
                texts[i] = text
        return [texts[i] for i in range(len(clips))]

    return decode


def transformers_pipeline(decoder: Path, **generate_kwargs) -> Callable[[list[Clip]], list[str]]:
    """``pipeline("automatic-speech-recognition", model=decoder)`` called on one clip at a time; without
    ``generate_kwargs`` exactly as a user calls it (the pipeline's default search: 5 beams)."""
    import transformers

    asr = transformers.pipeline("automatic-speech-recognition", model=str(decoder))
    kwargs = {"generate_kwargs": generate_kwargs} if generate_kwargs else {}
    return lambda clips: [asr(c.audio, **kwargs)["text"] for c in clips]


def ctranslate2_greedy(ct2: Path, threads: int, real_length: bool) -> Callable[[list[Clip]], list[str]]:
    import ctranslate2
    import tokenizers
    from transformers import WhisperFeatureExtractor

    from pipeline.system.ct2 import ct2_features, ct2_greedy, read_export

    model = ctranslate2.models.Whisper(str(ct2), device="cpu", intra_threads=threads)
    fe = WhisperFeatureExtractor.from_pretrained(ct2)
    tok = tokenizers.Tokenizer.from_file(str(ct2 / "tokenizer.json"))
    prompt = read_export(ct2).prompt_ids
    return lambda clips: [tok.decode(ct2_greedy(model, ct2_features(fe, c.audio, real_length), prompt))
                          for c in clips]  # fmt: skip


def faster_whisper(ct2: Path, threads: int, **options) -> Callable[[list[Clip]], list[str]]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(ct2), device="cpu", cpu_threads=threads)

    def decode(clips: list[Clip]) -> list[str]:
        out = []
        for c in clips:
            segments, _ = model.transcribe(str(c.path) if c.path else c.audio, **options)
            out.append(" ".join(s.text.strip() for s in segments))
        return out

    return decode


def error_rates(utts: list, clips: list[Clip], texts: list[str], lang: str, system: str,
                testset: str) -> tuple[float, float]:  # fmt: skip
    """(WER, CER) of ``texts`` as ``score`` scores them (the manifest language's normalization)."""
    from pipeline.decode.hyps import Hypothesis
    from pipeline.score.scorer import score_utterances

    hyps = {c.id: Hypothesis(c.id, t) for c, t in zip(clips, texts)}
    r = score_utterances(utts, hyps, lang, system=system, kind="finetuned", testset=testset, n_resamples=10).results
    return r.wer, r.cer


def table(rows: list[Row], n: int, audio_seconds: float) -> str:
    lines = [f"{n} clips, {audio_seconds:.0f} s of audio", "",
             "| runtime | WER % | CER % | s | real-time factor |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r.runtime} | {100 * r.wer:.1f} | {100 * r.cer:.1f} | {r.seconds:.1f} | "
                     f"{r.seconds / audio_seconds:.3f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import importlib.util

    p = argparse.ArgumentParser(prog="python -m benchmarks.runtimes", description=__doc__.split("\n")[0])
    p.add_argument("--system", required=True, type=Path, help="a system directory (`export`'s) of kind decoder")
    p.add_argument("--ct2", required=True, type=Path, help="its decoder as `export --format ct2` wrote it")
    p.add_argument("--manifest", required=True, type=Path, help="the test set")
    p.add_argument("--limit", type=int, default=None, help="the first N clips")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip", default="", help="runtimes to leave out, comma-separated (e.g. pipeline)")
    args = p.parse_args(argv)
    import torch

    from pipeline.score.scorer import manifest_language
    from pipeline.system.ct2 import read_export
    from pipeline.system.spec import read_spec

    torch.set_num_threads(args.threads)
    spec = read_spec(args.system)
    code = read_export(args.ct2).language_token.strip("<|>")
    utts, clips = load_clips(args.manifest, args.limit)
    lang = manifest_language(utts, args.manifest)
    runtimes = [
        ("ours", "ours (greedy)" if spec.search.beams <= 1 else f"ours (beam {spec.search.beams})",
         lambda: ours(args.system, args.threads)),
        ("pipeline", "transformers pipeline (no arguments)",
         lambda: transformers_pipeline(args.system / spec.decoders[0])),
        ("ct2", f"CTranslate2 {read_export(args.ct2).quantization}, greedy, 30-s padded features",
         lambda: ctranslate2_greedy(args.ct2, args.threads, real_length=False)),
        ("ct2-real", f"CTranslate2 {read_export(args.ct2).quantization}, greedy, real-length features",
         lambda: ctranslate2_greedy(args.ct2, args.threads, real_length=True)),
    ]  # fmt: skip
    if importlib.util.find_spec("faster_whisper") is not None:
        runtimes += [
            ("faster-whisper", "faster-whisper `transcribe(path)` plain",
             lambda: faster_whisper(args.ct2, args.threads)),
            ("faster-whisper-card", f'faster-whisper `language="{code}", beam_size=1, without_timestamps=True`',
             lambda: faster_whisper(args.ct2, args.threads, language=code, beam_size=1, without_timestamps=True)),
        ]  # fmt: skip
    else:
        print("faster-whisper is not installed: its rows are left out (pip install '.[ct2]')", file=sys.stderr)
    skip = {s for s in args.skip.split(",") if s}
    rows = []
    for key, name, load in runtimes:
        if key in skip:
            continue
        texts, seconds = timed(load(), clips)
        wer, cer = error_rates(utts, clips, texts, lang, key, args.manifest.stem)
        rows.append(Row(name, wer, cer, seconds))
        print(f"{name}: WER {100 * wer:.1f} CER {100 * cer:.1f} in {seconds:.1f} s", file=sys.stderr)
    print(table(rows, len(clips), sum(len(c.audio) for c in clips) / 16000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m pipeline transcribe``: print one ``path<TAB>text`` line per audio file.

    python -m pipeline transcribe --model whisper-base --language sa clips/*.mp3

Any format soundfile or librosa can decode, any rate, any channels (mixed to
mono, resampled to 16 kHz by :func:`data_prep.audio.load_audio`). Files are
read and transcribed in groups, so output starts early and memory stays flat.
A file that cannot be read is reported on stderr by name; the others are
still transcribed and the exit status is 1 at the end.
"""

from __future__ import annotations

import argparse
import sys
import time

from data_prep.audio import AudioError, load_audio
from pipeline.cli.options import add_fusion_arguments, fusion_from_args
from pipeline.decode.recognizer import SearchOptions

GROUP_BATCHES = 4  # read this many batches of files before transcribing them


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    parser.add_argument("--model", default="whisper-base",
                        help="bundled name, Whisper model directory, CTC checkpoint directory or hub id")
    parser.add_argument("--language", default=None, help="language code (e.g. sa, hi, pa); default: detect")
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--beams", type=int, default=1, help="beam size (1 = greedy)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="hard cap on tokens per 30 s piece")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    fused = parser.add_argument_group("a character LM inside the beam search (--beams wide), as `decode` takes it")
    fused.add_argument("--char-lm", default=None,
                       help="character LM: char.arpa, or the directory `lm --char-order` wrote it to")
    add_fusion_arguments(fused)
    ctc = parser.add_argument_group("CTC checkpoints (directories with ctc_config.json)")
    ctc.add_argument("--lm", default=None, help="word LM for beam search: lm.arpa, its lm.json or their directory")
    ctc.add_argument("--lm-alpha", type=float, default=None, help="LM weight (default: lm.json's)")
    ctc.add_argument("--lm-beta", type=float, default=None, help="word bonus (default: lm.json's)")
    ctc.add_argument("--beam-width", type=int, default=None, help="beam search width (default: greedy without --lm)")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def search_options(args: argparse.Namespace) -> SearchOptions:
    """The search the options ask for (ValueError / OSError for an unusable fusion setting)."""
    return SearchOptions(language=args.language, task=args.task, beams=args.beams, batch_size=args.batch_size,
                         max_new_tokens=args.max_new_tokens, fusion=fusion_from_args(args), lm=args.lm,
                         lm_alpha=args.lm_alpha, lm_beta=args.lm_beta, beam_width=args.beam_width,
                         device=args.device)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from pipeline.pretrained.registry import ModelNotAvailable
    from pipeline.system.recognizer import load_any

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        recognizer = load_any(args.model, search_options(args))
    except (ModelNotAvailable, ValueError, OSError) as e:  # a model that cannot be loaded, bad options
        print(f"transcribe: error: {e}", file=sys.stderr)
        return 2
    loaded = time.perf_counter()
    failed = 0
    group = max(1, args.batch_size * GROUP_BATCHES)
    # Whisper's own search sorts a whole group by length into batches; the others take a batch at a time.
    step = group if recognizer.kind == "whisper" else args.batch_size
    bar = tqdm(total=len(args.files), desc="transcribe", unit="file", disable=len(args.files) < 2, file=sys.stderr)
    for g in range(0, len(args.files), group):
        paths, audios = [], []
        for path in args.files[g : g + group]:
            try:
                audios.append(load_audio(path))
                paths.append(path)
            except (AudioError, OSError) as e:
                failed += 1
                bar.write(f"transcribe: cannot read {path}: {e}", file=sys.stderr)
                bar.update(1)
        if not audios:
            continue
        try:
            texts = [text for i in range(0, len(audios), step) for text in recognizer.transcribe(audios[i : i + step])]
        except ValueError as e:  # e.g. an unknown language code
            bar.close()
            print(f"transcribe: {e}", file=sys.stderr)
            return 1
        for path, text in zip(paths, texts):
            print(f"{path}\t{_one_line(text)}", flush=True)
        bar.update(len(paths))
    bar.close()
    print(
        f"transcribe: {len(args.files) - failed} file(s), model ready in {loaded - start:.1f} s, "
        f"transcribed in {time.perf_counter() - loaded:.1f} s" + (f", {failed} unreadable" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0

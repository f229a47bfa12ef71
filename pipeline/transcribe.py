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
from pipeline.rescore.fusion_options import add_fusion_arguments, fusion_from_args

GROUP_BATCHES = 4  # read this many batches of files before transcribing them


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    parser.add_argument("--model", default="whisper-base", help="bundled name, model directory or hub id")
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


def _one_line(text: str) -> str:
    return " ".join(text.split())


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from pipeline.models.whisper import load_whisper, transcribe_arrays
    from pipeline.pretrained.registry import ModelNotAvailable

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        fusion = fusion_from_args(args)  # its options checked before the model loads
        model, processor = load_whisper(args.model, device=args.device)
        transcribe_batch = _fused_transcriber(args, fusion, model, processor)
    except (ModelNotAvailable, ValueError, OSError) as e:  # a model that cannot be loaded, bad options
        print(f"transcribe: error: {e}", file=sys.stderr)
        return 2
    loaded = time.perf_counter()
    failed = 0
    group = max(1, args.batch_size * GROUP_BATCHES)
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
            if transcribe_batch is not None:
                texts = [text for i in range(0, len(audios), args.batch_size)
                         for text, _ in transcribe_batch(audios[i : i + args.batch_size])]  # fmt: skip
            else:
                texts = transcribe_arrays(model, processor, audios, language=args.language, task=args.task,
                                          batch_size=args.batch_size, num_beams=args.beams,
                                          max_new_tokens=args.max_new_tokens, progress=False)  # fmt: skip
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


def _fused_transcriber(args: argparse.Namespace, fusion, model, processor):
    """The batch decoder of ``fusion``'s beam search (None without fusion: plain decoding)."""
    if fusion is None:
        return None
    from pipeline.decode_fused import fused_batch_decoder
    from pipeline.models.whisper import decoding_language
    from pipeline.rescore.scorers import WhisperScorer

    if decoding_language(model, args.language) is None:
        raise ValueError("--fusion-weight needs --language (or a model fine-tuned with one): the LM is one language's")
    return fused_batch_decoder(WhisperScorer(model, processor, args.language), fusion, args.beams)

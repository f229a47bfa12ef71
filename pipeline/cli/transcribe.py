"""``python -m pipeline transcribe``: transcribe audio files of any length, with timed segments.

    python -m pipeline transcribe --model whisper-base --language sa clips/*.mp3
    python -m pipeline transcribe --model exp/sa/whisper_ft/best --format srt --out-dir subs/ lecture.mp3
    python -m pipeline transcribe --model exp/sa/final --speed fast clips/*.mp3   # a system directory's rung

Any format soundfile or librosa can decode, any rate, any channels (mixed to
mono, resampled to 16 kHz by :mod:`data_prep.audio`), any length: a recording
longer than one piece (30 s) is read in blocks, cut at its pauses and decoded
piece by piece (:mod:`pipeline.decode.longform`), so memory stays flat however
long it is. Short files are read whole and decoded in batches, as before.

Output: ``--format txt`` (default) prints one ``path<TAB>text`` line per file;
``jsonl`` one JSON object per segment (file, start, end, text); ``srt`` and ``vtt``
subtitles (one input, or ``--out-dir``). With ``--out-dir`` each input gets its own
file there, named after it (``talk.mp3`` -> ``talk.srt``), written atomically and
never over an input. A file that cannot be read is reported on stderr by name and
the others are still transcribed (exit status 1 at the end); a file without speech
gets an empty transcript and a warning.

``--speed`` picks a rung of a system directory (:mod:`pipeline.system.speed`): ``best``, its own
search (default); ``balanced``, its decoder's beam search with its character LM fused in; ``fast``,
greedy through its CTranslate2 decoder (``export --with-ct2``). The rung is said on stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.cli.options import add_fusion_arguments, fusion_from_args
from pipeline.decode.recognizer import Recognizer, SearchOptions
from pipeline.decode.transcript import FORMATS

GROUP_BATCHES = 4  # read this many batches of pieces before transcribing them


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    parser.add_argument("--model", default="whisper-base",
                        help="bundled name, Whisper model directory, CTC checkpoint directory or hub id")
    parser.add_argument("--language", default=None, help="language code (e.g. sa, hi, pa); default: detect")
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--beams", type=int, default=1, help="beam size (1 = greedy)")
    parser.add_argument("--tail-silence", type=float, default=0.0, metavar="S",
                        help="seconds of silence appended to every clip (a system directory: its own)")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="hard cap on tokens per 30 s piece")
    parser.add_argument("--speed", default="best", choices=["fast", "balanced", "best"],
                        help="a system directory's rung: best = its own search as exported (default); balanced = "
                             "its decoder's beam search, its character LM fused in where it has one; fast = greedy, "
                             "through its CTranslate2 decoder (export --with-ct2) where CTranslate2 is installed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    out = parser.add_argument_group("output")
    out.add_argument("--format", default="txt", choices=FORMATS,
                     help="txt: path<TAB>text per file (one segment per line in --out-dir files); jsonl: one "
                          "object per segment; srt, vtt: subtitles (default: txt)")  # fmt: skip
    out.add_argument("--out-dir", default=None,
                     help="write one file per input here, named after it (talk.mp3 -> talk.srt); default: stdout")
    out.add_argument("--no-progress", action="store_true", help="no progress bars")
    long = parser.add_argument_group("recordings longer than one piece")
    long.add_argument("--vad", default="silero", choices=["silero", "energy"],
                      help="speech detector that finds the pauses (default: silero)")
    long.add_argument("--pause", type=float, default=None, metavar="S",
                      help="a pause at least this long always ends a segment (default: 0.5)")
    long.add_argument("--max-piece", type=float, default=None, metavar="S",
                      help="longest piece decoded, silence around it included (default: 30)")
    long.add_argument("--min-piece", type=float, default=None, metavar="S",
                      help="a piece with less speech joins a neighbour when both fit in one (default: 0)")
    fused = parser.add_argument_group("a character LM inside the beam search (--beams wide), as `decode` takes it")
    fused.add_argument("--char-lm", default=None,
                       help="character LM: char.arpa, or the directory `lm --char-order` wrote it to")
    add_fusion_arguments(fused)
    ctc = parser.add_argument_group("CTC checkpoints (directories with ctc_config.json, or plain transformers CTC folders)")
    ctc.add_argument("--lm", default=None, help="word LM for beam search: lm.arpa, its lm.json or their directory")
    ctc.add_argument("--lm-alpha", type=float, default=None, help="LM weight (default: lm.json's)")
    ctc.add_argument("--lm-beta", type=float, default=None, help="word bonus (default: lm.json's)")
    ctc.add_argument("--beam-width", type=int, default=None, help="beam search width (default: greedy without --lm)")


def search_options(args: argparse.Namespace) -> SearchOptions:
    """The search the options ask for (ValueError / OSError for an unusable fusion setting)."""
    return SearchOptions(language=args.language, task=args.task, beams=args.beams, batch_size=args.batch_size,
                         max_new_tokens=args.max_new_tokens, fusion=fusion_from_args(args), lm=args.lm,
                         lm_alpha=args.lm_alpha, lm_beta=args.lm_beta, beam_width=args.beam_width,
                         tail_silence_s=args.tail_silence, device=args.device)  # fmt: skip


# ----------------------------------------------------------------------------- the model


def load_model(args: argparse.Namespace) -> Recognizer:
    """The system ``--model`` names, with the search the options ask for (a system directory: at the rung
    ``--speed`` picks, said on stderr).

    Raises ModelNotAvailable, ValueError or OSError for a model that cannot be loaded or bad options.
    """
    from pipeline.system.recognizer import load_with_rung

    recognizer, rung = load_with_rung(args.model, search_options(args), speed=args.speed)
    if rung is not None:
        print(f"transcribe: {'warning: ' if rung.fallback else ''}{rung.describe()}", file=sys.stderr)
    return recognizer


# ----------------------------------------------------------------------------- outputs


def output_paths(args: argparse.Namespace) -> dict[str, Path] | None:
    """Each input's output file under ``--out-dir`` (None without it); OutputRefused for one that would
    be an input, ValueError for two inputs that would write the same file."""
    from data_prep.outputs import guard_output

    if args.out_dir is None:
        return None
    out_dir = Path(args.out_dir)
    paths: dict[str, Path] = {}
    seen: dict[Path, str] = {}
    for name in args.files:
        target = out_dir / f"{Path(name).stem}.{args.format}"
        if target in seen and seen[target] != name:
            raise ValueError(f"--out-dir {out_dir}: {seen[target]} and {name} would both be written to {target}")
        seen[target] = name
        guard_output(target, args.files, flag="--out-dir")
        paths[name] = target
    return paths


def check_format(args: argparse.Namespace) -> None:
    """ValueError for subtitles of several files on stdout (they would run into one another)."""
    if args.format in ("srt", "vtt") and args.out_dir is None and len(args.files) > 1:
        raise ValueError(f"--format {args.format} writes one file per input: give --out-dir "
                         f"({len(args.files)} inputs)")  # fmt: skip


def longform_options(args: argparse.Namespace, kind: str):
    """How recordings are cut and batched (ValueError for unusable lengths)."""
    from pipeline.decode.longform import LongformOptions

    given = {"pause_s": args.pause, "max_piece_s": args.max_piece, "min_piece_s": args.min_piece}
    # Whisper's own search sorts a group of pieces by length into batches; the others take a batch at a time.
    batch = args.batch_size * GROUP_BATCHES if kind == "whisper" else args.batch_size
    return LongformOptions(vad=args.vad, batch_pieces=max(1, batch), **{k: v for k, v in given.items() if v is not None})


def emit(result, args: argparse.Namespace, targets: dict[str, Path] | None) -> None:
    """Write one file's transcript where the options say."""
    from data_prep.outputs import atomic_write_text
    from pipeline.decode.transcript import render

    transcript = result.transcript
    if targets is not None:
        targets[result.path].parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(targets[result.path], render(transcript, args.format))
    elif args.format == "txt":
        print(f"{result.path}\t{transcript.text}", flush=True)
    else:
        sys.stdout.write(render(transcript, args.format))
        sys.stdout.flush()


class Bars:
    """A bar of files done (several files), and one of seconds done per file longer than a piece."""

    def __init__(self, files: int, piece_s: float, enabled: bool):
        from tqdm.auto import tqdm

        self.tqdm, self.piece_s, self.enabled = tqdm, piece_s, enabled
        self.files = tqdm(total=files, desc="transcribe", unit="file", disable=not enabled or files < 2,
                          file=sys.stderr)  # fmt: skip
        self.seconds = None
        self.path = None

    def progress(self, path: str, done: float, total: float) -> None:
        if not self.enabled or total <= self.piece_s:
            return
        if self.path != path:
            self.close_file()
            self.path = path
            self.seconds = self.tqdm(total=round(total, 1), desc=Path(path).name, unit="s", file=sys.stderr,
                                     leave=False, position=1 if self.files.total > 1 else 0,
                                     bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")  # fmt: skip
        self.seconds.n = round(min(done, total), 1)
        self.seconds.refresh()

    def close_file(self) -> None:
        if self.seconds is not None:
            self.seconds.close()
        self.seconds, self.path = None, None

    def file_done(self) -> None:
        self.close_file()
        self.files.update(1)

    def write(self, line: str) -> None:
        self.files.write(line, file=sys.stderr)

    def close(self) -> None:
        self.close_file()
        self.files.close()


def run(args: argparse.Namespace) -> int:
    import torch

    from pipeline.decode.longform import transcribe_files
    from pipeline.pretrained.registry import ModelNotAvailable

    try:
        check_format(args)
        targets = output_paths(args)
        longform_options(args, "")  # refuse unusable lengths before the model loads
    except ValueError as e:
        print(f"transcribe: error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        recognizer = load_model(args)
        options = longform_options(args, recognizer.kind)
    except (ModelNotAvailable, ValueError, OSError) as e:  # a model that cannot be loaded, bad options
        print(f"transcribe: error: {e}", file=sys.stderr)
        return 2
    loaded = time.perf_counter()
    failed = silent = 0
    bars = Bars(len(args.files), options.max_piece_s, enabled=not args.no_progress)
    try:
        for result in transcribe_files(args.files, recognizer, options, progress=bars.progress):
            bars.close_file()
            if result.transcript is None:
                failed += 1
                bars.write(f"transcribe: cannot read {' '.join(result.error.split())}")  # one line
            else:
                if not result.transcript.segments:
                    silent += 1
                    why = "no speech found" if result.no_speech else "no words recognized"
                    bars.write(f"transcribe: warning: {result.path}: {why}; empty transcript")
                emit(result, args, targets)
            bars.file_done()
    except ValueError as e:  # e.g. an unknown language code
        bars.close()
        print(f"transcribe: {e}", file=sys.stderr)
        return 1
    bars.close()
    print(
        f"transcribe: {len(args.files) - failed} file(s), model ready in {loaded - start:.1f} s, "
        f"transcribed in {time.perf_counter() - loaded:.1f} s" + (f", {failed} unreadable" if failed else "")
        + (f", {silent} empty" if silent else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0

"""CLI_DOC"""

from __future__ import annotations

import argparse
import sys

from data_prep.assemble import SplitOptions
from data_prep.importers import IMPORTERS, CorpusError, HFColumns
from data_prep.longform.recordings import DEFAULT_MIN_ALIGN_SCORE, LongformOptions
from data_prep.prepare import prepare
from data_prep.process import (
    CACHE_CHOICES,
    OutputError,
)
from data_prep.segment import VADS
from data_prep.splits import SPLIT_BY, SplitError, parse_ratios, parse_speakers
from data_prep.text.normalize import RulesError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", required=True, choices=sorted(IMPORTERS), help="corpus layout")
    p.add_argument("--src", required=True, help="corpus root folder (read-only)")
    p.add_argument("--lang", required=True, help="ISO 639 language code, e.g. sa, pa")
    p.add_argument("--script", help="script of the transcripts when not the language's usual one, e.g. Latn")
    p.add_argument("--rules", help="text rules name or .yaml path (default: LANG or LANG-Script)")
    p.add_argument("--out", required=True, help="output folder, e.g. data/sa")
    p.add_argument("--split-by", choices=SPLIT_BY, default="auto", help="see data_prep/splits.py")
    p.add_argument("--split-ratios", help="train,dev,test duration ratios for --split-by ratio (default 0.8,0.1,0.1)")
    p.add_argument("--split-speakers", default="", help="dev=SPK1,test=SPK2+SPK3 (others are train)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-speaker-overlap", action="store_true")
    p.add_argument("--sentencepiece", type=int, default=0, metavar="N", help="also train an N-piece spm model")
    p.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--shard-index", type=int, default=0)
    p.add_argument("--allow-pipes", action="store_true",
                   help="run the commands written in the corpus's wav.scp (`cmd args |` lines) to get their audio: "
                   "any program they name runs with your rights, without a shell; use only with a corpus you trust")
    p.add_argument("--allow-outside-root", action="store_true", help="accept audio paths outside --src")
    p.add_argument("--max-duration", type=float, default=30.0, help="longer clips are split or rejected")
    p.add_argument("--min-duration", type=float, default=0.3)
    p.add_argument("--vad", choices=VADS, default="auto",
                   help="VAD for pauses in long clips (auto: energy if the clip's SNR allows, else silero)")
    p.add_argument("--trim-vad", choices=("silero", "none"), default="silero",
                   help="who trims clips whose SNR is too low for the energy trimmer (none: keep whole)")
    p.add_argument("--cache-format", choices=CACHE_CHOICES, default="flac",
                   help="16-bit audio cache: flac (default) or wav (~10x cheaper to write, 1.6-2.6x the disk); "
                   "none: write no audio, records point into the source files with offset/gain (fastest, "
                   "no disk, but every load decodes the source again and it must stay in place)")
    p.add_argument("--audio-column", help="--format hf: the Audio column (default audio)")
    p.add_argument("--text-column", help="--format hf: the transcript column (default: the first of "
                   "sentence, transcription, text, transcript the dataset has)")
    p.add_argument("--speaker-column", help="--format hf: the speaker column (default: the first of "
                   "client_id, speaker_id, speaker the dataset has; none: no speakers)")
    p.add_argument("--split", help="--format hf: import this split only, e.g. validated (default: train, "
                   "validation/dev and test if the dataset has them, else everything)")
    p.add_argument("--align-model", help="--format longform: the CTC checkpoint that aligns each recording to its "
                   "transcript (what `decode` loads: a folder with ctc_config.json, or a plain transformers CTC folder: "
                   "config.json of a Wav2Vec2ForCTC, HubertForCTC, ... with vocab.json)")
    p.add_argument("--align-device", default="cpu", help="--format longform: device of the aligning model")
    p.add_argument("--max-utterance-s", type=float, default=20.0,
                   help="--format longform: no utterance cut from a recording is longer (seconds)")
    p.add_argument("--min-align-score", type=float, default=DEFAULT_MIN_ALIGN_SCORE,
                   help="--format longform: segments whose mean log posterior per aligned token frame is lower "
                   "are rejected (low_alignment_score)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--force", action="store_true",
                   help="write over a folder prepared with other settings or from another corpus (else refused)")


def _columns(args: argparse.Namespace) -> HFColumns | None:
    """The Hugging Face dataset's columns and split (None unless --format hf or one of them is given)."""
    given = (args.audio_column, args.text_column, args.speaker_column, args.split)
    if args.format != "hf" and all(v is None for v in given):
        return None
    return HFColumns(audio=args.audio_column or "audio", text=args.text_column, speaker=args.speaker_column,
                     split=args.split)


def _aligner(args: argparse.Namespace):
    """The aligner of --align-model (None unless --format longform)."""
    if args.format != "longform" and args.align_model:
        raise ValueError(f"--align-model is for --format longform, not {args.format}")
    if args.format != "longform" or not args.align_model:
        return None  # data_prep.prepare says what longform lacks
    from data_prep.outputs import guard_output
    from pipeline.align.aligner import load_aligner

    guard_output(args.out, [args.align_model])  # refused before the model is loaded

    return load_aligner(args.align_model, args.align_device)


def run(args: argparse.Namespace) -> int:
    try:
        ratios = parse_ratios(args.split_ratios or "0.8,0.1,0.1")
        split_by = "ratio" if args.split_ratios and args.split_by == "auto" else args.split_by
        opts = SplitOptions(
            split_by=split_by,
            ratios=tuple(ratios.values()),
            seed=args.seed,
            speakers=tuple(sorted(parse_speakers(args.split_speakers).items())),
            allow_speaker_overlap=args.allow_speaker_overlap,
            sentencepiece=args.sentencepiece,
        )
        return prepare(
            args.src, args.out, args.format, args.lang, script=args.script, rules=args.rules, opts=opts,
            jobs=args.jobs, num_shards=args.num_shards, shard_index=args.shard_index,
            allow_pipes=args.allow_pipes, allow_outside_root=args.allow_outside_root,
            min_duration=args.min_duration, max_duration=args.max_duration, vad=args.vad,
            trim_vad=args.trim_vad, cache_format=args.cache_format, progress=not args.no_progress,
            force=args.force, columns=_columns(args), aligner=_aligner(args),
            longform=LongformOptions(max_utterance_s=args.max_utterance_s, min_align_score=args.min_align_score),
        )
    # OSError: e.g. an unreadable corpus file, an output that cannot be written; its message names the file
    except (CorpusError, RulesError, SplitError, ValueError, OutputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

"""Command-line options shared by several commands: the fused search's (``decode``, ``transcribe``,
``rescore``).

Reading options (and ``--help``) imports no torch: :mod:`pipeline.decode.fusion` is imported
only when a fusion is asked for.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.decode.fusion import Fusion


def add_fusion_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The fused search's settings (``rescore`` and ``decode`` take the same ones; the LM is their ``--char-lm``)."""
    p.add_argument("--fusion-weight", type=float, default=0.0,
                   help="shallow fusion: the --char-lm scores inside the beam search with this weight (0 = off)")
    p.add_argument("--fusion-bonus", type=float, default=0.0,
                   help="with --fusion-weight: a reward per character-LM token (offsets the LM's length cost)")
    p.add_argument("--fusion-length-penalty", type=float, default=0.0,
                   help="with --fusion-weight: the search ranks hypotheses by score / length ** this "
                        "(0: summed scores, the bonus being the length reward; 1: generate's per-token mean)")
    p.add_argument("--fusion-rate-from", type=Path, default=None,
                   help="with --fusion-weight: a transcribed manifest (train) whose speaking rate caps the search: "
                        "a hypothesis with more characters per second of audio than its 99th percentile times "
                        "--fusion-rate-margin may only end, behind every hypothesis within that rate")
    p.add_argument("--fusion-rate-margin", type=float, default=1.25,
                   help="with --fusion-rate-from: the factor on its 99th-percentile speaking rate")
    p.add_argument("--fusion-top-k", type=int, default=128,
                   help="with --fusion-weight: score only each hypothesis's K best text tokens when the decoder "
                        "may emit more (a decoder without a restricted vocabulary)")  # fmt: skip


def fusion_settings(args: argparse.Namespace) -> dict:
    """The fused search's settings as a run identity records them (none when ``--fusion-weight`` is 0).

    ``--char-lm`` and ``--fusion-rate-from`` are inputs, fingerprinted by the caller.
    """
    if not args.fusion_weight:
        return {}
    return {"fusion_weight": args.fusion_weight, "fusion_bonus": args.fusion_bonus,
            "fusion_length_penalty": args.fusion_length_penalty, "fusion_rate_margin": args.fusion_rate_margin,
            "fusion_top_k": args.fusion_top_k}  # fmt: skip


def fusion_from_args(args: argparse.Namespace) -> Fusion | None:
    """The :class:`Fusion` that :func:`add_fusion_arguments`' options ask for (None: weight 0).

    Raises ValueError when a weight comes without ``--char-lm`` or with ``--task translate``,
    FileNotFoundError / ManifestError for an unreadable LM or rate manifest.
    """
    if not args.fusion_weight:
        return None
    if getattr(args, "task", "transcribe") != "transcribe":  # rescore has no --task: it only transcribes
        raise ValueError("--fusion-weight scores transcripts; it cannot be used with --task translate")
    if not args.char_lm:
        raise ValueError("--fusion-weight needs --char-lm (the LM that scores inside the beam search)")
    from pipeline.decode.fusion import Fusion, char_arpa, max_rate_of

    arpa = char_arpa(args.char_lm)
    if not arpa.is_file():
        raise FileNotFoundError(f"{arpa}: no character LM there (write one with `lm --char-order N`)")
    return Fusion(arpa, args.fusion_weight, args.fusion_bonus, args.fusion_top_k, args.fusion_length_penalty,
                  max_rate_of(args.fusion_rate_from, args.fusion_rate_margin), args.fusion_rate_from)  # fmt: skip

"""``python -m pipeline degrade``: a shifted copy of a prepared test set (telephone, noise, babble, reverb)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_prep.degrade import CONDITIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="the prepared split to degrade, e.g. data/x/test.jsonl")
    p.add_argument("--condition", required=True, choices=CONDITIONS,
                   help="telephone: 8 kHz, 300-3400 Hz, mu-law; noise: stationary noise; babble: other "
                        "speakers talking (--noise-manifest); reverb: a synthetic room")  # fmt: skip
    p.add_argument("--snr", type=float, default=10.0, help="noise, babble: signal-to-noise ratio in dB")
    p.add_argument("--noise-color", default="pink", choices=("pink", "brown", "white"),
                   help="noise: its spectrum (power falling as 1/f, 1/f^2, or flat)")  # fmt: skip
    p.add_argument("--noise-manifest", default=None,
                   help="babble: the manifest whose other speakers talk behind each clip, e.g. data/x/train.jsonl")
    p.add_argument("--talkers", type=int, default=4, help="babble: how many other speakers at once")
    p.add_argument("--rt60", type=float, default=0.5, help="reverb: reverberation time in seconds")
    p.add_argument("--seed", type=int, default=0, help="with the utterance id, what every clip's noise is drawn from")
    p.add_argument("--id-suffix", default="",
                   help="appended to every utterance id (same audio), to pool one split's sets of several "
                        "conditions, e.g. as unlabeled audio for pseudo-label; a test set keeps its ids")  # fmt: skip
    p.add_argument("--out", required=True,
                   help="folder for the set: OUT/<folder name>.jsonl, audio/, rejects.jsonl, degrade.json")
    p.add_argument("--force", action="store_true",
                   help="replace a set in --out degraded from other inputs or with other settings (else refused)")


def run(args: argparse.Namespace) -> int:
    from data_prep.degrade import Condition, DegradeError, degrade

    try:
        cond = Condition(args.condition, snr_db=args.snr, color=args.noise_color, talkers=args.talkers,
                         rt60_s=args.rt60)  # fmt: skip
        s = degrade(args.manifest, args.out, cond, seed=args.seed, noise_manifest=args.noise_manifest,
                    id_suffix=args.id_suffix, force=args.force)  # fmt: skip
    except DegradeError as e:
        print(f"degrade: error: {e}", file=sys.stderr)
        return 2
    measured = s.measured()
    shown = {"snr_db": "SNR {:.2f} dB", "rt60_s": "RT60 {:.2f} s", "above_4k_db": "energy above 4 kHz {:.1f} dB"}
    means = [fmt.format(measured[k]["mean"]) for k, fmt in shown.items() if k in measured]
    rejected = sum(s.rejected.values())
    print(f"{cond.label}: {s.written} utterances -> {Path(args.out) / (Path(args.out).name + '.jsonl')}"
          + (f", {rejected} rejected ({Path(args.out) / 'rejects.jsonl'})" if rejected else "")
          + (f"; measured mean {', '.join(means)}" if means else ""))
    return 0

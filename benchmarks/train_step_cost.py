"""Step cost of the training regimes on the real whisper-base, all in one run.

    python -m benchmarks.train_step_cost [--threads 1] [--steps 2] [VARIANT ...]

Each variant trains ``--steps`` optimizer steps (after one warm-up step) on the
same synthetic batch: 4 clips of 5 s (log-mel of the clip's real length, or the
padded 30 s window for the ``_padded`` variants) and 66 target tokens each, about what an
average Sanskrit sentence costs in Whisper's byte-level BPE. The inputs are
random: this measures cost, not learning. Times are printed with the ratio to
the first variant, which is the baseline of the run.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass

import torch

from pipeline.config import TrainConfig


@dataclass(frozen=True)
class Variant:
    label: str
    options: dict
    restrict_vocab: bool = False
    padded_window: bool = False


VARIANTS = {
    "full_padded": Variant("full, padded 30 s window", {"regime": "full"}, padded_window=True),
    "full": Variant("full, encoder on real length", {"regime": "full"}),
    "freeze2": Variant("freeze-encoder, top 2 layers", {"regime": "freeze-encoder", "encoder_trainable_top_layers": 2}),
    "lora": Variant("lora r16 (q, v)", {"regime": "lora"}),
    "cached0": Variant("cached-encoder k=0", {"regime": "cached-encoder"}),
    "cached2": Variant("cached-encoder k=2", {"regime": "cached-encoder", "encoder_trainable_top_layers": 2}),
    "cached2_restrict": Variant("cached-encoder k=2 + restrict_vocab",
                                {"regime": "cached-encoder", "encoder_trainable_top_layers": 2}, restrict_vocab=True),
    "cached2_restrict_padded": Variant("cached-encoder k=2 + restrict_vocab, padded 30 s window (train.padded_share)",
                                       {"regime": "cached-encoder", "encoder_trainable_top_layers": 2},
                                       restrict_vocab=True, padded_window=True),
    "cached2_both": Variant("cached-encoder k=2 + restrict_vocab + freeze_token_embeddings",
                            {"regime": "cached-encoder", "encoder_trainable_top_layers": 2,
                             "freeze_token_embeddings": True}, restrict_vocab=True),
}

BATCH, SECONDS, TARGET_TOKENS = 4, 5, 66


def measure(base, variant: Variant, steps: int) -> tuple[float, int]:
    """Mean seconds per optimizer step and the number of trainable parameters."""
    from pipeline.models.encoder import encode_trimmed
    from pipeline.train.regimes import Seq2SeqTrainModule, configure_trainable, lower_frozen, split_layer

    gen = torch.Generator().manual_seed(0)
    mel = 3000 if variant.padded_window else SECONDS * 100
    feats = torch.randn(BATCH, base.config.num_mel_bins, mel, generator=gen)
    lengths = torch.full((BATCH,), mel)
    decoder_in = torch.randint(0, 50000, (BATCH, TARGET_TOKENS), generator=gen)
    decoder_in[:, 0] = base.generation_config.decoder_start_token_id
    targets = torch.randint(0, 50000, (BATCH, TARGET_TOKENS), generator=gen)
    # A train-text vocabulary of ~1,500 tokens, as for the Sanskrit corpus.
    allowed = sorted(set(torch.randint(0, 50257, (1500,), generator=gen).tolist()) | set(targets.flatten().tolist())
                     | set(base.generation_config.lang_to_id.values()) | {50257, 50258, 50359, 50363})

    model = copy.deepcopy(base)
    cfg = TrainConfig(**variant.options)
    split = split_layer(model, cfg)
    model = configure_trainable(model, cfg)
    module = Seq2SeqTrainModule(model, split=split, lower_frozen=lower_frozen(cfg),
                                allowed_ids=allowed if variant.restrict_vocab else None)
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    inputs = {"decoder_input_ids": decoder_in, "targets": targets, "lengths": lengths}
    if cfg.regime == "cached-encoder":
        with torch.no_grad():
            states, state_lengths = encode_trimmed(model.model.encoder, feats, lengths, stop=split)
        inputs.update(states=states, lengths=state_lengths)
    else:
        inputs["features"] = feats
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and is not counted
        t0 = time.perf_counter()
        loss = module(**inputs)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / steps, sum(p.numel() for p in params)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_step_cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("variants", nargs="*", metavar="VARIANT",
                   help=f"any of {', '.join(VARIANTS)} (default: all; the first is the baseline)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--model", default="whisper-base")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    from pipeline.models.whisper import load_whisper

    base, _ = load_whisper(args.model)
    names = args.variants or list(VARIANTS)
    print(f"| regime | s/step | ratio to {VARIANTS[names[0]].label} | trainable params |\n|---|---:|---:|---:|")
    baseline = None
    for name in names:
        seconds, n_params = measure(base, VARIANTS[name], args.steps)
        baseline = baseline or seconds
        print(f"| {VARIANTS[name].label} | {seconds:.2f} | {seconds / baseline:.2f} | {n_params / 1e6:.1f} M |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

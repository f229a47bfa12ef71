"""The scripts behind BENCHMARKS.md: each prints the table it quotes. Run from the repository root.

    python -m benchmarks.prepare_throughput      prepare against a bare decode + resample loop
    python -m benchmarks.load_speed              CPU cost of reading a prepared corpus back (cache or source)
    python -m benchmarks.train_step_cost         seconds per training step of each regime
    python -m benchmarks.train_memory            peak RSS and samples/s of a training on a split and on it 10x
    python -m benchmarks.time_to_cer             regimes raced to the same dev CER (or a sweep of configs)
    python -m benchmarks.vocab                   Whisper's decoder vocabulary against a new BPE one
    python -m benchmarks.decode_speed            greedy against beam search, as ``decode`` runs them
    python -m benchmarks.rescore_ablation        dev error rates with each subset of the rescoring scores
    python -m benchmarks.weights_grid            what a rescoring grid found (search's pick, char bonus)
    python -m benchmarks.split_half              does a dev-tuned weighting hold out on random halves
    python -m benchmarks.mbr                     minimum-Bayes-risk choice against the search's pick
    python -m benchmarks.fusion_early_stopping   the fused search with and without early stopping
    python -m benchmarks.help_startup            ``decode --help`` start-up without torch
    python -m benchmarks.runtimes                a system in transformers, CTranslate2 and faster-whisper
    python -m benchmarks.speed_ladder            a system's --speed rungs beside transformers and faster-whisper
    python -m benchmarks.longform                long recordings: long-form against clip by clip; peak RSS
    python -m benchmarks.align_boundaries        clip boundaries that prepare --format longform's cuts recover
    python -m benchmarks.export_reproduces       an exported system, moved elsewhere, against the recipe's transcripts
    python -m benchmarks.swap_dev_test           a rescored system's dev and test speakers swapped: the second fold

The product (``pipeline``, ``data_prep``) never imports this package.
"""

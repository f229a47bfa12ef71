"""Fine-tuning Whisper from a recipe config (``python -m pipeline train``).

Modules, in the order a run uses them: ``trainer`` (the loop, on accelerate) ·
``new_vocab`` (a decoder
vocabulary learnt from the train text, ``model.vocabulary: bpe``) · ``data`` (examples, dynamic
batches, datasets) · ``cache`` (encoder-state cache) · ``regimes`` (what trains,
the loss) · ``evaluate`` (dev WER/CER) · ``checkpoint`` (exact resume) ·
``export`` (``best/`` as a plain transformers directory) · ``curves`` (log + plot) ·
``tiny`` (a tiny random Whisper and corpus for tests and smoke runs).
"""

"""Training from a recipe config (``python -m pipeline train``): Whisper fine-tuning and CTC heads.

Where to start: ``run`` (the ``train`` command: guard, lock, which trainer) · ``loop``
(THE training loop both trainers run: batches, updates, dev evaluation, ``best/``, early
stopping, log, checkpoints, resume) · ``trainer`` (what is Whisper's own: model, language,
vocabulary, labels, regime, loss module, export) · ``ctc_trainer`` (what is CTC's own).

What the loop uses: ``processes`` (one process or accelerate's several) · ``identity``
(which run an ``output_dir`` holds) · ``data`` (examples, dynamic batches, datasets) ·
``cache`` (encoder-state cache, shared by both trainers) · ``finite`` (stop on a non-finite
loss, gradient or weight) · ``evaluate`` (dev set, dev WER/CER by the decode and score
stages' code) · ``checkpoint`` + ``state_file`` (exact resume, nothing pickled) · ``curves``
(``log.jsonl`` + ``curve.png``).

What the Whisper trainer uses: ``new_vocab`` (a decoder vocabulary learnt from the train
text, ``model.vocabulary: bpe``) · ``regimes`` (what trains, the loss) · ``export``
(``best/`` as a plain transformers directory). After training: ``soup`` (averaging models).
"""

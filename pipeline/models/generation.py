"""Generation-config settings that make plain ``generate()`` / ``pipeline()`` search as our decode does.

A model fine-tuned with ``restrict_vocab`` lists the tokens it never learnt to score in
``generation_config.suppress_tokens``. Their logits were never trained down, so most of the
softmax mass can sit on them: transformers' beam search (``pipeline()``'s default: 5 beams)
suppresses them *after* the log-softmax and then compares beams by probabilities that no
longer sum to one, which favours whichever prefix leaves the least mass on suppressed tokens
rather than the most probable text. ``renormalize_logits`` makes ``generate()`` take the
log-softmax again after its logits processors, i.e. over the tokens it may emit, as our own
beam search and the training loss do. Greedy search is unchanged by it.
"""

from __future__ import annotations


def search_over_allowed(gen) -> None:
    """Make ``gen`` (a ``GenerationConfig``) normalize scores over the tokens it may emit."""
    gen.renormalize_logits = bool(gen.suppress_tokens)

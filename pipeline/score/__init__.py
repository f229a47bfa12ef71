"""Scoring: WER/CER from jiwer alignments, bootstrap intervals, paired tests, readable alignments.

Modules: ``metrics`` (counts from jiwer alignments), ``bootstrap`` (intervals and
the paired test), ``alignments`` (alignments.txt, errors.md), ``results`` (the
results.json record), ``scorer`` (the ``score`` function), ``cli``.
"""

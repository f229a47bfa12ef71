"""Corpus import, audio and text normalization, validation, splits and vocabulary."""

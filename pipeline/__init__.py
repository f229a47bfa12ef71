"""Models, training, decoding, scoring and reports for low-resource ASR transfer."""

__version__ = "0.1.0"

"""asr-adapt: transfer pretrained speech recognizers to low-resource languages.

The Python API mirrors the command line (``python -m pipeline <command>``); see
:mod:`pipeline.api` for an example. Importing the package is cheap: torch and
transformers load when a function needs them.
"""

from pipeline.api import (
    average_models,
    decode_manifest,
    degrade_test_set,
    export_dataset,
    export_system,
    load_config,
    load_recognizer,
    make_folds,
    make_pseudo_labels,
    make_report,
    prepare_corpus,
    score_hypotheses,
    train_model,
    transcribe,
    transcribe_long,
)

__version__ = "0.1.0"

__all__ = [
    "average_models",
    "decode_manifest",
    "degrade_test_set",
    "export_dataset",
    "export_system",
    "load_config",
    "load_recognizer",
    "make_folds",
    "make_pseudo_labels",
    "make_report",
    "prepare_corpus",
    "score_hypotheses",
    "train_model",
    "transcribe",
    "transcribe_long",
]

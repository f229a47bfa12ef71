"""Word n-gram LMs (ARPA, built from TRAIN text) and CTC decoding (greedy, beam + LM, weight tuning)."""

from pipeline.lm.build import build_ngram_lm, read_unigrams
from pipeline.lm.decode import CTCBeamDecoder, greedy_decode, greedy_decode_batch
from pipeline.lm.tune import TuneResult, tune_lm_weights

__all__ = [
    "CTCBeamDecoder",
    "TuneResult",
    "build_ngram_lm",
    "greedy_decode",
    "greedy_decode_batch",
    "read_unigrams",
    "tune_lm_weights",
]

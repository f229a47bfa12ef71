"""N-gram language models of the train text: word LMs (CTC beam search, rescoring) and character LMs
(fusion, rescoring), estimated with modified Kneser-Ney and written as ARPA files.
Decoding with them is :mod:`pipeline.decode`'s job; tuning their weights on dev, :mod:`pipeline.rescore`'s."""

from pipeline.lm.build import build_char_lm, build_ngram_lm, char_tokens, read_unigrams

__all__ = ["build_char_lm", "build_ngram_lm", "char_tokens", "read_unigrams"]

"""N-best rescoring: Whisper's beam candidates (and a CTC model's) chosen by a weighted sum of
attention, CTC and word-LM scores, the weights tuned on dev (command ``rescore``); and the word LM's
weights inside CTC beam search, tuned on dev the same way (``lm_weights``, command ``lm --tune-on``)."""

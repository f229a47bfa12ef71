"""N-best rescoring: Whisper's beam candidates (and a CTC model's) chosen by a weighted sum of
attention, CTC and word-LM scores, the weights tuned on dev (command ``rescore``)."""

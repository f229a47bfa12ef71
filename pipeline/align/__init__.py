"""Forced alignment of transcripts to long recordings with a CTC model (``prepare --format longform``).

emissions.py  a recording of any length -> frame log-posteriors, the model seeing at most 30 s at a time
forced.py     frame log-posteriors + a transcript's words -> each word's time span and score (forced_align)
aligner.py    the two joined as the aligner data_prep.longform asks for, loaded the way ``decode`` loads a CTC model
"""

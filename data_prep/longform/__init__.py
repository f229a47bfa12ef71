"""Long recordings with their transcripts, cut into utterances by forced alignment (``prepare --format longform``).

aligner.py   what an aligner is (a Protocol the pipeline's CTC aligner fills in) and gives back
text.py      a transcript as the words to align, with the strength of the boundary after each
cut.py       aligned words -> utterance segments: at most ``max_s`` long, cut at sentence ends and long pauses
cache.py     alignments kept under the output folder, so a rerun does not align again
recordings.py  recording rows -> segment rows (cut windows of the source) and rejects, with the seconds accounting
"""

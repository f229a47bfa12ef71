"""System directories: a whole recognition system in one folder that can be copied anywhere.

``python -m pipeline export`` writes one (:mod:`pipeline.system.export`);
``transcribe --model DIR``, ``decode --model DIR`` and :func:`pipeline.load_recognizer`
load it (:func:`pipeline.system.recognizer.load_any`). Nothing in it points back
into ``exp/`` or ``data/``: every path in ``system.json`` is relative to the folder.

Layout (a rescored system; a ``decoder`` system has ``decoder/`` and, for a CTC
checkpoint decoded with an LM, ``lm/``)::

    system.json        what is inside and how it searches (below)
    README.md          the model card (Hugging Face format, :mod:`pipeline.system.card`)
    decoder/           the Whisper decoder (decoder_1/, decoder_2/ ...: the rest of an ensemble)
    ctc/               the CTC checkpoint; ctc/vocab.json is the CTC vocabulary
    lm/lm.arpa         word n-gram LM; lm/lm.json: its CTC beam-search weights (alpha, beta, beam_width)
    lm/char.arpa       character n-gram LM (scores candidates; fused into the beam search)
    weights.json       the rescoring weights chosen on dev (no tuning grid)
    text_rules.yaml    the text rules the data was normalized with, every ``extends`` merged in

``system.json`` (:class:`pipeline.system.spec.SystemSpec`, schema version 1; a loader
refuses another version with a one-line error)::

    schema_version  1
    kind            "decoder" (one model decoded plainly) | "rescored" (N-best + CTC proposals, rescored)
    name            the system's name (the experiment it was exported from)
    language        ISO 639 code of the data: the transcripts' normalization, the decoders' fallback prompt
    decoders        model folders (one for "decoder")
    ctc, lm         CTC checkpoint folder, word LM folder (null: none)
    char_lm         character LM file (null: none)
    weights         rescoring weights file ("rescored")
    text_rules      normalization rules file
    search          beams       Whisper beam width
                    nbest       candidates kept from each decoder's beam ("rescored")
                    ctc_proposals  CTC + LM beam texts added as candidates ("rescored")
                    batch_size  clips per search, as evaluated (the beam search's token budget is its
                                batch's longest clip's: the same batches give the same transcripts)
                    language_token  forced language token (null: each decoder's trained one, else language)
                    fusion      {weight, bonus, top_k, length_penalty, max_rate} or null; max_rate is the
                                ceiling in characters per second, a number computed from the train text
    provenance      toolkit_version, recipe (the command that trained it), sources (part -> the path
                    it was copied from), rate_from / rate_margin (where max_rate came from): for the
                    record and the model card, never read when loading

The model card (``README.md``) starts with YAML front matter (language, license,
base_model, library_name, pipeline_tag, tags, metrics, model-index with each scored
split's WER and CER in percent), then: usage, what is inside, the base model and its
licence, the training data (hours, utterances, speakers per split), the results with
bootstrap intervals, the command that trained it, intended use and limitations.
"""

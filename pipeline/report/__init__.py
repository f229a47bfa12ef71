"""Reports that compare scored systems: tables, figures and the transfer verdict.

Experiment layout convention (what ``score`` writes and ``report`` searches)::

    exp/<lang>/<system>/log.jsonl                 training log of the system (optional)
    exp/<lang>/<system>/<testset>/hyps.jsonl      decoder output on one test set
    exp/<lang>/<system>/<testset>/results.json    written by `python -m pipeline score`
    exp/<lang>/<system>/<testset>/alignments.txt  sclite-like REF/HYP/EVAL alignments
    exp/<lang>/<system>/<testset>/per_speaker.tsv
    exp/<lang>/<system>/<testset>/errors.md       most frequent word errors, char confusions
    exp/<lang>/report/{report.html,report.md,*.png,results.json}   written by `report`

``<system>`` names one run (``zeroshot``, ``ft-lora``, ``scratch`` ...); its
``kind`` in results.json (zeroshot | finetuned | scratch | other, set by
``score --kind``) decides its role in the verdict. ``<testset>`` is the test
manifest's stem (``test``, or e.g. ``test_noisy`` for a shifted set): systems
are compared only on the same test set, and a system scored on two test sets
gives the domain-shift gap (against the set named ``test``).

``log.jsonl`` has one JSON object per line, such as
``{"step": 10, "epoch": 0.5, "train_loss": 1.2, "dev_cer": 0.3, "dev_wer": 0.6, "lr": 1e-4}``;
``report`` looks for it in each results.json's directory and its parents, up to
the directory given on the command line. Its last step is the run's budget.

The report's own ``results.json`` is a summary of all systems (``"type":
"report_summary"``) and is skipped when a directory is searched again.

Modules: ``collect`` (find results and logs), ``verdict`` (paired comparisons),
``plots`` (matplotlib figures), ``render`` (HTML/Markdown), ``screenshot``
(headless chromium), ``cli``.
"""

"""Build the scored N-best lists of a manifest: propose candidates, score each with every model.

Resumable like ``decode`` (:mod:`pipeline.decode.resumable`); the final file is
written atomically in manifest order.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from data_prep.manifest import Source, Utterance
from data_prep.text.normalize import normalize_text
from pipeline.decode.fusion import Fusion
from pipeline.decode.resumable import partial_path, read_records, run_resumable
from pipeline.decode.whisper_nbest import WhisperScorer
from pipeline.rescore.candidates import NBEST_VERSION, Candidate, NBest, decoder_source, write_nbest
from pipeline.rescore.scorers import CharLM, CTCScorer, WordLM


def model_fingerprint(name_or_path: str | os.PathLike) -> str:
    """A model directory's (or file's) files by name, size and modification time; a hub/registry name as it is.

    Retraining into the same directory changes it, so an N-best file of the old weights is not reused.
    """
    path = Path(name_or_path)
    if not path.exists():
        return str(name_or_path)
    files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
    parts = [(f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()]]
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:16]


def nbest_origin(models: Sequence[str], ctc: str | None, lm: str | None, *, beams: int, n: int,
                 ctc_proposals: int, language: str | None) -> str:  # fmt: skip
    """What decides an N-best record's candidates and their model scores (the LM scores are always redone):
    the decoders, the CTC system and the word LM of its proposals, the search's width and the language."""
    key = {"decoders": [model_fingerprint(m) for m in models], "beams": beams, "n": n, "language": language,
           "ctc": [model_fingerprint(ctc), model_fingerprint(lm) if lm else None, ctc_proposals] if ctc else None}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def decoders_of(whisper: WhisperScorer | Sequence[WhisperScorer]) -> list[WhisperScorer]:
    """One decoder or an ensemble of them, as a list."""
    return [whisper] if isinstance(whisper, WhisperScorer) else list(whisper)


def score_batch(
    waves: Sequence, lang: str, whisper: WhisperScorer | Sequence[WhisperScorer], ctc: CTCScorer | None,
    lm: WordLM | None, beams: int, n: int, char_lm: CharLM | None = None, fusion: Fusion | None = None,
) -> list[list[Candidate]]:  # fmt: skip
    """Candidates of each clip: every decoder's N-best, then the CTC model's own proposals, all scored by all.

    With several decoders (an ensemble, e.g. the same recipe trained from other seeds) the pool
    is the union of their N-best lists and a candidate's ``att`` is the mean of their
    log-probabilities; ``att_each`` keeps each one. With ``fusion`` the character LM also
    scores inside every decoder's beam search (the candidates' ``att`` stays the decoder's own).
    """
    decoders = decoders_of(whisper)
    durations = [len(w) / 16000 for w in waves]
    encoded = [d.encode(waves) for d in decoders]
    proposals: list[list[tuple[str, str, int | None]]] = [[] for _ in waves]
    for k, (d, enc) in enumerate(zip(decoders, encoded)):
        source = decoder_source(k)
        processor = fusion.processor(d) if fusion is not None else None
        for i, texts in enumerate(d.nbest(enc, durations, beams, n, fusion=processor)):
            proposals[i] += [(normalize_text(t, lang), source, r if k == 0 else None) for r, t in enumerate(texts)]
    logp = lengths = None
    if ctc is not None:
        logp, lengths = ctc.frames(waves)
        for i in range(len(waves)):
            proposals[i] += [(normalize_text(t, lang), "ctc", None) for t in ctc.propose(logp[i], int(lengths[i]))]
    out: list[list[Candidate]] = []
    for props in proposals:
        by_text: dict[str, Candidate] = {}
        for text, source, rank in props:
            c = by_text.get(text)
            if c is None:
                by_text[text] = Candidate(text=text, source=source, att=0.0, words=len(text.split()), rank=rank)
            elif source not in c.sources:
                c.source += "+" + source  # proposed by several models: "beam+beam:1", "beam+ctc"
                c.rank = rank if c.rank is None else c.rank
        out.append(list(by_text.values()))
    flat = [(i, c) for i, cands in enumerate(out) for c in cands]
    each = [d.log_probs(enc, [i for i, _ in flat], [c.text for _, c in flat]) for d, enc in zip(decoders, encoded)]
    for j, (_, c) in enumerate(flat):
        scores = [e[j] for e in each]
        c.att = sum(scores) / len(scores)
        c.att_each = scores if len(scores) > 1 else None
    for i, cands in enumerate(out):
        if ctc is not None:
            for c, s in zip(cands, ctc.score(logp[i], int(lengths[i]), [c.text for c in cands])):
                c.ctc = s
        for c in cands:
            c.lm = lm(c.text) if lm is not None else None
            c.clm = char_lm(c.text) if char_lm is not None else None
    return out


def build_nbest(
    utts: Sequence[Utterance],
    manifest_dir: Path,
    out: Path,
    whisper: WhisperScorer | Sequence[WhisperScorer],
    ctc: CTCScorer | None = None,
    lm: WordLM | None = None,
    char_lm: CharLM | None = None,
    *,
    lang: str,
    beams: int = 8,
    n: int = 8,
    batch_size: int = 8,
    fusion: Fusion | None = None,
    sources: dict[str, Source] | None = None,
    origin: str | None = None,
) -> tuple[list[NBest], list[str]]:
    """Scored N-best lists of ``utts`` written to ``out``; returns (records in manifest order, audio errors).

    Unreadable clips are also listed in ``nbest.rejects.jsonl``; ``sources``: their manifest lines, by id.
    ``origin``: :func:`nbest_origin` of the models and settings, recorded in each record.
    """
    # A finished file from an earlier run is reused: records that lack only LM scores get
    # them here (cheap); records of another origin (other models or weights, search width, language),
    # scored by another set of models (CTC or not, another number of decoders), searched with
    # other fusion settings or of an older record version are decoded again.
    n_decoders = len(decoders_of(whisper))
    settings = fusion.settings() if fusion is not None else None
    done = {**read_records(out, NBest.from_json), **read_records(partial_path(out), NBest.from_json)}
    done = {
        k: nb for k, nb in done.items()
        if nb.fusion == settings and nb.version == NBEST_VERSION and nb.origin == origin
        and all((c.ctc is None) == (ctc is None) and c.n_decoders == n_decoders for c in nb.candidates)
    }  # fmt: skip
    for nb in done.values():
        for c in nb.candidates:
            c.lm = lm(c.text) if lm is not None else None
            c.clm = char_lm(c.text) if char_lm is not None else None

    def work(batch: list[Utterance], waves: list) -> list[NBest]:
        t0 = time.perf_counter()
        cands = score_batch(waves, lang, whisper, ctc, lm, beams, n, char_lm, fusion)
        per_utt = round((time.perf_counter() - t0) / len(batch), 4)
        return [NBest(id=u.id, candidates=cs, seconds=per_utt, fusion=settings, origin=origin)
                for u, cs in zip(batch, cands)]  # fmt: skip

    return run_resumable(utts, manifest_dir, out, work, write_nbest, done=done, batch_size=batch_size, desc="n-best",
                         sources=sources)  # fmt: skip

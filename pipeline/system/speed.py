"""Speed rungs of a system directory: ``transcribe --speed fast|balanced|best``.

- **best** (the default): the system's own search, as exported (:func:`pipeline.system.recognizer.load_system`).
- **balanced**: the first decoder's beam search (the system's width, :data:`BALANCED_BEAMS` where its own
  search is greedy) with the system's character LM fused into it where it has one and fusion settings
  (a rescored system's); no N-best rescoring, no CTC proposals.
- **fast**: this toolkit's greedy search with the first decoder; a CTC system: CTC greedy, without its
  word LM. A system exported ``--with-ct2`` (``ct2/``) runs it through CTranslate2 instead, where
  CTranslate2 is installed (else ours, and a warning says why). Ours is the default because on the
  recipes' restricted-vocabulary decoders it measured both faster and more accurate than CTranslate2
  int8 (BENCHMARKS.md, "Speed ladder of an exported system"): it reads each clip's real length and
  scores only the trained tokens.

A rung is never built by writing anything: the CTranslate2 decoder is converted once, at export.
A system whose decoder is a CTC checkpoint has no ``balanced`` rung (a one-line error): there is
no beam search to fuse a character LM into.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from pipeline.decode.recognizer import Recognizer, SearchOptions
from pipeline.system.spec import SystemSpec

#: The speeds, fastest first.
SPEEDS = ("fast", "balanced", "best")
DEFAULT_SPEED = "best"
#: The beam width of ``balanced`` for a system whose own search is greedy.
BALANCED_BEAMS = 4


@dataclass(frozen=True)
class Rung:
    """What a speed runs on a system, in words, and why it is not the rung's own form (if so)."""

    speed: str
    search: str  # what decodes, e.g. "greedy, CTranslate2 int8 (ct2/)"
    fallback: str = ""  # why the rung's own form could not run ("": it runs as defined)

    def describe(self) -> str:
        """One line: ``speed fast: <what runs>[ instead: <why>]``."""
        return f"speed {self.speed}: {self.search}" + (f" ({self.fallback})" if self.fallback else "")


def check_speed(speed: str) -> None:
    if speed not in SPEEDS:
        raise ValueError(f"--speed {speed}: one of {', '.join(SPEEDS)}")


def own_search(root: Path, spec: SystemSpec) -> str:
    """The system's own search, in words (``best``)."""
    s = spec.search
    if spec.kind == "rescored":
        fused = " with character-LM fusion" if s.fusion else ""
        ctc = f" + {s.ctc_proposals} CTC proposals" if spec.ctc and s.ctc_proposals else ""
        return (f"the system's own search: {len(spec.decoders)} decoder(s)' beam-{s.beams} {s.nbest}-best{fused}"
                f"{ctc}, rescored")  # fmt: skip
    if _is_ctc(root / spec.decoders[0]):
        return "the system's own search: CTC " + ("beam search + word LM" if spec.lm else "greedy")
    return "the system's own search: " + ("greedy" if s.beams <= 1 else f"beam {s.beams}")


def load_rung(root: Path, spec: SystemSpec, speed: str, device: str = "cpu") -> tuple[Recognizer, Rung]:
    """The recognizer of rung ``fast`` or ``balanced`` of the system at ``root`` (``best``: load_system's).

    Raises ValueError (one line naming the system) for a rung the system cannot provide.
    """
    check_speed(speed)
    if speed == "balanced":
        return balanced(root, spec, device)
    if speed == "fast":
        return fast(root, spec, device)
    raise ValueError("the best rung is the system itself: pipeline.system.recognizer.load_system")


def balanced(root: Path, spec: SystemSpec, device: str = "cpu") -> tuple[Recognizer, Rung]:
    """The first decoder's beam search, the system's character LM fused into it where it has one."""
    from pipeline.decode.recognizer import load_recognizer

    decoder = root / spec.decoders[0]
    if _is_ctc(decoder):
        raise ValueError(f"--speed balanced: {root} decodes with a CTC model, which has no beam search to fuse a "
                         "character LM into; use --speed best (its own search) or fast")  # fmt: skip
    s, f = spec.search, spec.search.fusion
    beams = s.beams if s.beams > 1 else BALANCED_BEAMS
    fusion = f.fusion(root / spec.char_lm) if spec.char_lm and f else None
    options = SearchOptions(language=s.language_token, beams=beams, batch_size=s.batch_size, fusion=fusion,
                            device=device)  # fmt: skip
    recognizer = load_recognizer(decoder, options, fallback_language=spec.language)
    what = f"beam {beams}" + (" + character-LM fusion" if fusion else "") + f" of {spec.decoders[0]}/"
    return _named(recognizer, root, s.batch_size), Rung("balanced", what)


def fast(root: Path, spec: SystemSpec, device: str = "cpu") -> tuple[Recognizer, Rung]:
    """Greedy: this toolkit's search, or the system's CTranslate2 decoder where it was exported with one."""
    decoder = root / spec.decoders[0]
    if _is_ctc(decoder):
        from pipeline.decode.recognizer import load_recognizer

        recognizer = load_recognizer(decoder, SearchOptions(device=device))
        return _named(recognizer, root, spec.search.batch_size), Rung("fast", "CTC greedy, no LM")
    if spec.ct2 is None:
        return our_greedy(root, spec, device)
    missing = ct2_not_installed()
    if missing:
        recognizer, rung = our_greedy(root, spec, device)
        return recognizer, Rung("fast", rung.search, fallback=f"{missing}")
    return ct2_greedy(root, spec, device)


def ct2_not_installed() -> str:
    """Why a system's CTranslate2 decoder (``ct2/``) cannot run here ("": it can)."""
    if importlib.util.find_spec("ctranslate2") is None:
        return "CTranslate2 is not installed (pip install '.[ct2]')"
    return ""


def our_greedy(root: Path, spec: SystemSpec, device: str = "cpu") -> tuple[Recognizer, Rung]:
    """This toolkit's greedy search with the first decoder."""
    from pipeline.decode.recognizer import load_recognizer

    s = spec.search
    options = SearchOptions(language=s.language_token, beams=1, batch_size=s.batch_size, device=device)
    recognizer = load_recognizer(root / spec.decoders[0], options, fallback_language=spec.language)
    return _named(recognizer, root, s.batch_size), Rung("fast", f"greedy of {spec.decoders[0]}/ (this toolkit's)")


def ct2_greedy(root: Path, spec: SystemSpec, device: str = "cpu") -> tuple[Recognizer, Rung]:
    """Greedy through the system's CTranslate2 decoder (``ct2/``), with torch's CPU thread count."""
    import torch

    from pipeline.system.ct2 import ct2_batch_decoder, read_export

    folder = root / str(spec.ct2)
    decode = ct2_batch_decoder(folder, device, threads=torch.get_num_threads())
    recognizer = Recognizer("ct2", str(root), decode, batch_size=spec.search.batch_size)
    return recognizer, Rung("fast", f"greedy, CTranslate2 {read_export(folder).quantization} ({spec.ct2}/)")


def _named(recognizer: Recognizer, root: Path, batch_size: int) -> Recognizer:
    import dataclasses

    return dataclasses.replace(recognizer, name=str(root), batch_size=batch_size)


def _is_ctc(folder: Path) -> bool:
    from pipeline.models.ctc_checkpoint import is_ctc_checkpoint

    return is_ctc_checkpoint(folder)

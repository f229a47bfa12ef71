"""Write a system directory: every part of a system copied into one folder, described by ``system.json``.

Two sources:

- :func:`export_rescored`: the folder of a ``rescore --tune`` run (``rescore.json`` and
  ``weights.json``, :mod:`pipeline.rescore.record`): its decoders, CTC model, word and
  character LMs, search settings (the fused search's speaking-rate ceiling as the
  number the run computed) and the chosen weights. A model or LM that changed since
  that run is refused: the weights were tuned with the old one.
- :func:`export_decoder`: one model decoded plainly (a Whisper folder or bundled name,
  or a CTC checkpoint with an optional word LM).

Both copy the text rules the data was prepared with (``text_rules.yaml``, every
``extends`` merged in) and write the model card (:mod:`pipeline.system.card`). A
copied Whisper decoder's generation config prompts with the language the system
decodes in and searches over the tokens it may emit (:func:`configure_plain_generation`), so that
``transformers.pipeline`` on the folder alone decodes as the system does, a model exported
before it carried them included.
``--format ct2`` writes a decoder as a CTranslate2 model instead (:mod:`pipeline.system.ct2`);
``--with-ct2 Q`` adds one inside the system (``ct2/``, what ``transcribe --speed fast`` runs). The
folder is built beside ``out`` and swapped in whole (:func:`data_prep.outputs.replace_dir`:
only over a folder the toolkit made); ``out`` may not be, contain or lie inside an input.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import yaml

from data_prep.outputs import (
    IN_PROGRESS_FILE,
    OWNER_FILE,
    RunIdentity,
    atomic_write_text,
    build_dir,
    check_replaceable,
    exclusive,
    guard_output,
    replace_dir,
)
from data_prep.text.normalize import RulesError, resolved_rules
from pipeline.system.spec import FusionSpec, Provenance, SearchSpec, SystemSpec, read_spec, write_spec

log = logging.getLogger(__name__)

#: The parts' places inside a system directory.
DECODER_DIR = "decoder"  # decoder k >= 1 of an ensemble: decoder_<k>
CTC_DIR = "ctc"
LM_DIR = "lm"
WORD_ARPA = "lm.arpa"
CHAR_ARPA = "char.arpa"
WEIGHTS_FILE = "weights.json"
RULES_FILE = "text_rules.yaml"
CARD_FILE = "README.md"
CT2_DIR = "ct2"  # the first decoder as a CTranslate2 model (``--with-ct2``)
#: Formats ``export`` writes (``--format``).
FORMATS = ("system", "ct2")


class ExportError(ValueError):
    """An export that cannot be made from its inputs; the message (one line) names the file."""


#: Writes the CTranslate2 form of a system's Whisper decoder: (its folder, the folder to write, the system,
#: whose language token it prompts with). :func:`pipeline.system.ct2.ct2_writer` makes one (``--with-ct2``);
#: ExportError for a decoder that has no CTranslate2 form.
CT2Writer = Callable[[Path, Path, SystemSpec], None]


@dataclass(frozen=True)
class CardOptions:
    """What the model card says that the inputs cannot: how it was trained, its licence, known limits."""

    recipe: str = ""  # the command that trained the system
    license: str = "other"  # a Hugging Face licence id
    results: Sequence[str | os.PathLike] = ()  # results.json files of the system (score's output)
    limits: Sequence[str] = ()  # more lines for "Intended use and limitations"


@dataclass(frozen=True)
class Prepared:
    """What the data folder (``prepare``'s output) says: its language, text rules and statistics."""

    folder: Path
    language: str
    rules: str  # the text-rules name (or file) the transcripts were normalized with
    corpus: str  # the corpus folder's name
    splits: dict[str, dict] = field(default_factory=dict)  # split -> {utterances, hours, speakers}

    @classmethod
    def read(cls, folder: str | os.PathLike) -> Prepared:
        folder = Path(folder)
        settings = folder / "prepare.json"
        try:
            process = json.loads(settings.read_text(encoding="utf-8"))["process"]
            language, rules, root = str(process["language"]), str(process["rules"]), str(process["root"])
        except FileNotFoundError as e:
            raise ExportError(f"{settings}: missing; --data must be a folder `prepare` wrote") from e
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ExportError(f"{settings}: cannot read the data's language and text rules ({e})") from e
        return cls(folder, language, rules, Path(root).name, _split_stats(folder))


def _split_stats(folder: Path) -> dict[str, dict]:
    """Per split: utterances, hours, speakers (stats.json, else splits.json; {} when neither is readable)."""
    for name in ("stats.json", "splits.json"):
        try:
            splits = json.loads((folder / name).read_text(encoding="utf-8"))["splits"]
            return {s: {k: v[k] for k in ("utterances", "hours", "speakers") if k in v} for s, v in splits.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return {}


# ----------------------------------------------------------------------------------- copying


def _ignore_toolkit_files(top: Path, skip: Sequence[str] = ()):
    """shutil.copytree's ``ignore`` for a copy of ``top``: the toolkit's marks and locks, and ``skip`` in ``top``."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        out = {n for n in names if n in (OWNER_FILE, IN_PROGRESS_FILE) or n.endswith((".lock", ".tmp"))}
        return out | ({n for n in names if n in skip} if Path(folder) == top else set())

    return ignore


def copy_model(src: str | os.PathLike, dst: Path, *, skip: Sequence[str] = ()) -> None:
    """Copy a model folder (or the local folder of a bundled name / hub id) to ``dst``, without ``skip``."""
    path = Path(src)
    if not path.is_dir():
        from pipeline.pretrained.registry import ModelNotAvailable, resolve_model

        try:
            path = resolve_model(src)
        except ModelNotAvailable as e:
            raise ExportError(f"{src}: {e}") from e
    # copyfile: the copies get the permissions of new files, not a private mode the source had
    shutil.copytree(path, dst, ignore=_ignore_toolkit_files(path, skip), copy_function=shutil.copyfile)


def copy_lm(lm: str | os.PathLike, dst: Path) -> dict:
    """Copy a word LM (lm.arpa, its lm.json or their folder) into ``dst``: lm.arpa and an lm.json with its
    CTC beam-search weights only (the tuning grid and paths stay behind). Returns the settings written."""
    from pipeline.decode.ctc import LM_SETTINGS, read_lm_settings

    try:
        settings = read_lm_settings(lm)
    except (FileNotFoundError, ValueError) as e:
        raise ExportError(str(e)) from e
    if not settings.arpa.is_file():
        raise ExportError(f"{settings.arpa}: no word LM there (named by {lm})")
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.arpa, dst / WORD_ARPA)
    written = {"arpa": WORD_ARPA, "alpha": settings.alpha, "beta": settings.beta, "beam_width": settings.beam_width}
    atomic_write_text(dst / LM_SETTINGS, json.dumps(written, indent=1) + "\n")
    return written


def copy_char_lm(char_lm: str | os.PathLike, dst: Path) -> None:
    from pipeline.decode.fusion import char_arpa

    arpa = char_arpa(char_lm)
    if not arpa.is_file():
        raise ExportError(f"{arpa}: no character LM there (write one with `lm --char-order N`)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(arpa, dst)


def write_rules(prepared: Prepared, dst: Path) -> None:
    """The data's text rules, self-contained (``extends`` merged), as YAML."""
    try:
        rules = resolved_rules(prepared.rules)
    except RulesError as e:
        raise ExportError(f"{prepared.folder / 'prepare.json'}: {e}") from e
    head = (f"# The text rules the data was prepared with ({prepared.rules}), every 'extends' merged in.\n"
            "# The system was trained and scored on transcripts normalized with them (a rescored system also\n"
            "# normalizes its candidates with them); `score --lang <this file>` scores with them.\n")
    atomic_write_text(dst, head + yaml.safe_dump(rules, allow_unicode=True, sort_keys=False))


def configure_plain_generation(folder: Path, language: str, forced: str | None = None) -> None:
    """Make the Whisper decoder copied to ``folder`` prompt and search in plain ``generate()`` as the
    system decodes: with ``forced`` (the system's language token), else its trained language
    (``asr_adapt.json``), else ``language`` (the data's), English-only models excepted; and with
    scores normalized over the tokens it may emit (:mod:`pipeline.models.generation`). A CTC
    checkpoint is left as it is."""
    from transformers import GenerationConfig

    from pipeline.models.ctc_checkpoint import is_ctc_checkpoint
    from pipeline.models.encoder import read_adapt_info
    from pipeline.models.generation import search_over_allowed
    from pipeline.models.language import LanguageError, prompt_with_language

    if not (folder / "generation_config.json").is_file() or is_ctc_checkpoint(folder):
        return
    gen = GenerationConfig.from_pretrained(folder)
    search_over_allowed(gen)
    if getattr(gen, "lang_to_id", None) and getattr(gen, "is_multilingual", True):
        try:
            adapt = read_adapt_info(folder)
            prompt_with_language(gen, forced or adapt.get("language_token") or adapt.get("language") or language)
        except (ValueError, LanguageError) as e:
            raise ExportError(f"{folder}: {e}") from e
    gen.save_pretrained(folder)


def decoder_dir(k: int) -> str:
    """Decoder ``k``'s folder in a system directory."""
    return DECODER_DIR if k == 0 else f"{DECODER_DIR}_{k}"


# ----------------------------------------------------------------------------------- the two sources


def export_rescored(run: str | os.PathLike, out: str | os.PathLike, data: str | os.PathLike, *,
                    name: str | None = None, card: CardOptions = CardOptions(),
                    ct2: CT2Writer | None = None) -> Path:  # fmt: skip
    """Export the system a ``rescore --tune`` run tuned (``run``: its folder or its rescore.json) to ``out``
    (``ct2``: also write its first decoder's CTranslate2 form into ``ct2/``)."""
    from pipeline.rescore.record import RECORD_NAME, RecordError, read_record

    run = Path(run)
    record_file = run / RECORD_NAME if run.is_dir() else run
    try:
        record = read_record(record_file)
    except RecordError as e:
        raise ExportError(str(e)) from e
    _check_unchanged(record, record_file)
    prepared = Prepared.read(data)
    if prepared.language != record.data_language:
        raise ExportError(f"{prepared.folder / 'prepare.json'}: language {prepared.language!r}, but the rescore run "
                          f"{record_file} decoded {record.data_language!r} data")  # fmt: skip
    _warn_if_other_rules(prepared, record.data_language)
    inputs = [*record.models, record.ctc, record.lm, record.char_lm, record_file, data, *card.results]
    system = name or record_file.parent.parent.name

    def build(tmp: Path) -> SystemSpec:
        sources: dict[str, str] = {}
        decoders = []
        for k, model in enumerate(record.models):
            decoders.append(decoder_dir(k))
            copy_model(model, tmp / decoders[-1], skip=(CTC_DIR,))  # a joint CTC head is not this system's
            configure_plain_generation(tmp / decoders[-1], record.data_language, record.language)
            sources[decoders[-1]] = model
        if record.ctc:
            copy_model(record.ctc, tmp / CTC_DIR)
            sources[CTC_DIR] = record.ctc
        if record.lm:
            copy_lm(record.lm, tmp / LM_DIR)
            sources[f"{LM_DIR}/{WORD_ARPA}"] = record.lm
        char_lm = f"{LM_DIR}/{CHAR_ARPA}" if record.char_lm else None
        if record.char_lm:
            copy_char_lm(record.char_lm, tmp / char_lm)
            sources[char_lm] = record.char_lm
        _write_weights(record, tmp / WEIGHTS_FILE)
        sources[WEIGHTS_FILE] = str(record_file.parent / "weights.json")
        f = record.fusion
        fusion = FusionSpec(f.weight, f.bonus, f.top_k, f.length_penalty, f.max_rate) if f else None
        search = SearchSpec(beams=record.beams, nbest=record.nbest,
                            ctc_proposals=record.ctc_proposals if record.ctc else 0, batch_size=record.batch_size,
                            language_token=record.language, fusion=fusion)  # fmt: skip
        return SystemSpec(kind="rescored", name=system, language=record.data_language, decoders=decoders,
                          search=search, ctc=CTC_DIR if record.ctc else None, lm=LM_DIR if record.lm else None,
                          char_lm=char_lm, weights=WEIGHTS_FILE, text_rules=RULES_FILE,
                          provenance=_provenance(card, sources, f.rate_from if f else None,
                                                 f.rate_margin if f else None))  # fmt: skip

    return _export(out, inputs, build, prepared, card, ct2)


def export_decoder(model: str | os.PathLike, out: str | os.PathLike, data: str | os.PathLike, *,
                   lm: str | os.PathLike | None = None, beams: int = 1, batch_size: int = 8,
                   tail_silence_s: float = 0.0, name: str | None = None, card: CardOptions = CardOptions(),
                   ct2: CT2Writer | None = None) -> Path:  # fmt: skip
    """Export one model, decoded plainly (greedy or ``beams`` wide; a CTC checkpoint with ``lm``: LM beam search;
    ``tail_silence_s`` of silence after every clip, as it was scored; ``ct2``: also write a Whisper model's
    CTranslate2 form into ``ct2/``)."""
    from pipeline.decode.recognizer import check_tail_silence
    from pipeline.models.ctc_checkpoint import is_ctc_checkpoint

    if lm is not None and not is_ctc_checkpoint(model):
        raise ExportError(f"--lm needs a CTC checkpoint; {model} is not one")
    try:
        check_tail_silence(tail_silence_s)
    except ValueError as e:
        raise ExportError(f"--tail-silence: {e}") from e
    prepared = Prepared.read(data)
    system = name or system_name(model)

    def build(tmp: Path) -> SystemSpec:
        copy_model(model, tmp / DECODER_DIR, skip=(CTC_DIR,))
        configure_plain_generation(tmp / DECODER_DIR, prepared.language)
        sources = {DECODER_DIR: str(Path(model).resolve()) if Path(model).exists() else str(model)}
        if lm is not None:
            copy_lm(lm, tmp / LM_DIR)
            sources[LM_DIR] = str(lm)
        search = SearchSpec(beams=beams, batch_size=batch_size, tail_silence_s=tail_silence_s)
        return SystemSpec(kind="decoder", name=system, language=prepared.language, decoders=[DECODER_DIR],
                          search=search, lm=LM_DIR if lm is not None else None, text_rules=RULES_FILE,
                          provenance=_provenance(card, sources))  # fmt: skip

    return _export(out, [model, lm, data, *card.results], build, prepared, card, ct2)


def system_name(model: str | os.PathLike) -> str:
    """exp/demo/whisper_ft/best -> whisper_ft."""
    path = Path(model)
    return path.parent.name if path.name == "best" else path.name


def write_export(out: str | os.PathLike, inputs: Sequence, card: CardOptions,
                 fill: Callable[[Path, list], None]) -> Path:  # fmt: skip
    """Write an export folder the one safe way: ``out`` refused where it would touch an input (``None``
    inputs skipped) or replace a folder the toolkit did not make, the card's results read up front, then,
    under the output's lock, ``fill(tmp, results)`` writes the content into a fresh ``tmp`` (not yet
    created) that replaces ``out`` whole."""
    from pipeline.score.results import ResultsError, read_results

    out = Path(out)
    guard_output(out, [i for i in inputs if i is not None])
    check_replaceable(out)
    try:
        results = [read_results(r) for r in card.results]
    except ResultsError as e:
        raise ExportError(str(e)) from e
    with exclusive(out, "export"):
        tmp = build_dir(out)
        fill(tmp, results)
        return replace_dir(tmp, out, "export")


def _export(out: str | os.PathLike, inputs: Sequence, build, prepared: Prepared, card: CardOptions,
            ct2: CT2Writer | None = None) -> Path:  # fmt: skip
    from pipeline.system.card import model_card

    def fill(tmp: Path, results: list) -> None:
        tmp.mkdir(parents=True)
        spec = build(tmp)
        if ct2 is not None:
            ct2(tmp / spec.decoders[0], tmp / CT2_DIR, spec)
            spec = replace(spec, ct2=CT2_DIR)
        write_rules(prepared, tmp / RULES_FILE)
        write_spec(tmp, spec)
        read_spec(tmp)  # what a loader checks: every part in place
        atomic_write_text(tmp / CARD_FILE, model_card(spec, tmp, prepared, results, card, Path(out).name))

    return write_export(out, inputs, card, fill)


def _provenance(card: CardOptions, sources: dict[str, str], rate_from: str | None = None,
                rate_margin: float | None = None) -> Provenance:  # fmt: skip
    from importlib.metadata import PackageNotFoundError, version

    try:
        toolkit = version("asr-adapt")
    except PackageNotFoundError:  # run from a source tree that is not installed
        toolkit = ""
    return Provenance(toolkit_version=toolkit, recipe=card.recipe, sources=sources,
                      rate_from=rate_from, rate_margin=rate_margin)  # fmt: skip


def _write_weights(record, path: Path) -> None:
    """The chosen weights and how they were chosen (what ``rescore --weights`` reads; no grid, no paths)."""
    tuning = record.tuning
    d = {**asdict(record.weights), "dev_wer": tuning.dev_wer, "dev_cer": tuning.dev_cer, "metric": tuning.metric,
         "n_utts": tuning.n_utts, "held_out": tuning.held_out}  # fmt: skip
    atomic_write_text(path, json.dumps(d, indent=1) + "\n")


def _check_unchanged(record, record_file: Path) -> None:
    """Refuse parts that changed after the run that tuned the weights with them (their fingerprints differ)."""
    now = RunIdentity.of("rescore", {"model": record.models, "ctc": record.ctc, "lm": record.lm,
                                     "char_lm": record.char_lm}, {}).inputs  # fmt: skip
    for role in ("model", "ctc", "lm", "char_lm"):
        if role in record.inputs and now.get(role) != record.inputs[role]:
            raise ExportError(f"{record_file}: its {role} ({_named(record, role)}) changed after this rescore run "
                              "tuned the weights with it; rerun the rescore (dev --tune, then test) first")  # fmt: skip


def _named(record, role: str) -> str:
    value = record.models if role == "model" else getattr(record, role)
    return ", ".join(value) if isinstance(value, list) else str(value)


def _warn_if_other_rules(prepared: Prepared, language: str) -> None:
    """The rescore normalized its candidates with the language's rules; the system uses the data's."""
    try:
        same = resolved_rules(prepared.rules) == resolved_rules(language)
    except RulesError:
        same = False
    if not same:
        log.warning("the data was normalized with the text rules %s, the rescore run's candidates with %s's: "
                    "the system normalizes with the data's, so its texts may differ from the run's", prepared.rules,
                    language)  # fmt: skip

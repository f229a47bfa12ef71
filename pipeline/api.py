"""The Python API: one function per step of the command line, importable from :mod:`pipeline`.

    import pipeline

    pipeline.prepare_corpus("corpora/sanskrit_cv", "data/sa", "cv", "sa")
    summary = pipeline.train_model("recipes/sanskrit/config.yaml", ["train.max_steps=200"])
    result = pipeline.decode_manifest("data/sa/test.jsonl", "exp/sa/whisper_ft/best", "exp/sa/test/hyps.jsonl")
    scores = pipeline.score_hypotheses("data/sa/test.jsonl", "exp/sa/test/hyps.jsonl", system="ft", kind="finetuned")
    print(pipeline.transcribe(["clip.wav"], "exp/sa/whisper_ft/best"))
    lecture = pipeline.transcribe_long("lecture.mp3", "exp/sa/whisper_ft/best")  # timed segments, any length

Every function does what its command does (the same checks, the same files) and
raises instead of printing: :class:`~data_prep.outputs.OutputRefused` and
:class:`~data_prep.outputs.ResumeError` for an unsafe output,
:class:`~data_prep.manifest.ManifestError` for a bad manifest line,
:class:`~pipeline.config.ConfigError` for a bad config, ``ValueError`` for
options a model cannot use. Heavy libraries (torch, transformers) load on the
first call that needs them, not on ``import pipeline``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from data_prep.folds import Fold
    from pipeline.config import RecipeConfig
    from pipeline.decode.longform import LongformOptions, Progress
    from pipeline.decode.manifest import DecodeResult
    from pipeline.decode.recognizer import Recognizer, SearchOptions
    from pipeline.decode.transcript import Transcript
    from pipeline.score.results import Results

PathLike = str | os.PathLike


def prepare_corpus(src: PathLike, out: PathLike, fmt: str, lang: str, **options) -> int:
    """Import a corpus into normalized, validated, split manifests in ``out`` (command ``prepare``).

    ``fmt``: cv | kaldi | audiofolder | folder | hf | longform; ``options``: the keyword arguments of
    :func:`data_prep.prepare.prepare` (``script``, ``rules``, ``opts`` (split options),
    ``jobs``, ``cache_format``, ``force``, ...; for longform ``aligner``, e.g.
    ``pipeline.align.aligner.load_aligner(model)``, and ``longform`` options). Returns the exit status (0: written).
    """
    from data_prep.prepare import prepare

    return prepare(src, out, fmt, lang, **options)


def make_folds(data: PathLike, out: PathLike, *, dev_speakers: int = 1,
               n_folds: int | None = None) -> list[Fold]:
    """Speaker folds of the prepared folder ``data`` in ``out`` (command ``folds``): fold k tests speaker k
    (with ``n_folds`` K: speakers k, k+K ...), the ``dev_speakers`` after its last test speaker are dev, the
    rest train; ``out/all`` trains on everyone. Returns the folds (:mod:`data_prep.folds`)."""
    from data_prep.folds import write_folds

    return write_folds(data, out, dev_speakers=dev_speakers, n_folds=n_folds)


def degrade_test_set(manifest: PathLike, out: PathLike, condition: str, **options) -> dict:
    """A shifted copy of a prepared split in ``out`` (command ``degrade``): ``condition`` is telephone, noise,
    babble or reverb; ``options``: ``snr_db``, ``color``, ``talkers``, ``rt60_s`` (the condition's settings),
    ``seed``, ``noise_manifest`` (babble), ``id_suffix``, ``force``. Returns what degrade.json records."""
    from data_prep.degrade import Condition, degrade

    shape = {k: options.pop(k) for k in ("snr_db", "color", "talkers", "rt60_s") if k in options}
    return degrade(manifest, out, Condition(condition, **shape), **options).to_json()


def load_config(path: PathLike, overrides: Sequence[str] = ()) -> RecipeConfig:
    """A recipe config from YAML with ``key=value`` overrides, checked (ConfigError naming file and key)."""
    from pipeline.config import load_config as load

    return load(path, list(overrides))


def train_model(config: RecipeConfig | PathLike, overrides: Sequence[str] = (), *, progress: bool = True,
                force: bool = False) -> dict:  # fmt: skip
    """Train as a recipe config says (command ``train``): a Whisper decoder, or a CTC head with
    ``model.type: ctc``; resumes an interrupted run of the same identity, refuses one of other settings
    or inputs unless ``force`` (which starts afresh). Returns its summary."""
    from pipeline.config import RecipeConfig
    from pipeline.train.run import train_model as train

    if isinstance(config, RecipeConfig):
        return train(config, progress=progress, force=force)
    return train(load_config(config, overrides), source=str(config), progress=progress, force=force)


def average_models(models: Sequence[PathLike], out: PathLike) -> Path:
    """The weight average of models fine-tuned from one start, written to ``out`` (command ``soup``)."""
    from pipeline.train.soup import make_soup

    return make_soup(list(models), out)


def load_recognizer(model: PathLike, options: SearchOptions | None = None, *,
                    fallback_language: str | None = None, speed: str = "best") -> Recognizer:  # fmt: skip
    """Any system the toolkit loads or trains (Whisper name/folder/hub id, CTC checkpoint, a system
    directory that ``export`` wrote) as a :class:`~pipeline.decode.recognizer.Recognizer`; see
    :class:`~pipeline.decode.recognizer.SearchOptions` (a system directory takes only ``device``).
    ``speed``: a system directory's rung, fast | balanced | best (its own search; see
    :mod:`pipeline.system.speed`); a model that is not a system directory takes only best."""
    from pipeline.decode.recognizer import SearchOptions
    from pipeline.system.recognizer import load_any

    return load_any(model, options or SearchOptions(), fallback_language=fallback_language, speed=speed)


def _recognizer(model: PathLike | Recognizer, options: SearchOptions | None, speed: str) -> Recognizer:
    from pipeline.decode.recognizer import Recognizer

    if not isinstance(model, Recognizer):
        return load_recognizer(model, options, speed=speed)
    if speed != "best":
        raise ValueError(f"speed={speed!r} picks the rung of a system directory to load; the model is loaded "
                         "already (load_recognizer(..., speed=...) loads a rung)")  # fmt: skip
    return model


def transcribe(audio: Sequence[PathLike | np.ndarray], model: PathLike | Recognizer = "whisper-base",
               options: SearchOptions | None = None, *, speed: str = "best") -> list[str]:  # fmt: skip
    """The transcripts of audio files (any format, rate, channels, length) or 16 kHz mono arrays.

    ``model``: a name or folder (loaded with ``options``; a system directory at the rung ``speed``, as
    :func:`load_recognizer`), or a loaded recognizer. Each file is read whole; for a long recording,
    :func:`transcribe_long` reads it in windows, cuts it at its pauses and times its segments.
    """
    import numpy as np

    from data_prep.audio import load_audio

    recognizer = _recognizer(model, options, speed)
    waves = [a if isinstance(a, np.ndarray) else load_audio(a) for a in audio]
    return recognizer.transcribe(waves)


def transcribe_long(path: PathLike, model: PathLike | Recognizer = "whisper-base",
                    options: SearchOptions | None = None, longform: LongformOptions | None = None, *,
                    progress: Progress | None = None, speed: str = "best") -> Transcript:  # fmt: skip
    """The timed transcript of a recording of any length (command ``transcribe``): cut at its pauses,
    decoded piece by piece, memory flat in its length; :class:`~pipeline.decode.transcript.Transcript`
    has the segments (start, end, text) and the whole ``text``.

    ``model``: a name or folder (loaded with ``options``; a system directory at the rung ``speed``), or a
    loaded recognizer; ``longform``: how
    the recording is cut (:class:`~pipeline.decode.longform.LongformOptions`); ``progress``: called with
    (path, seconds done, duration). Raises :class:`~data_prep.audio.AudioError` for an unreadable file.
    """
    from pipeline.decode.longform import LongformOptions
    from pipeline.decode.longform import transcribe_long as run

    recognizer = _recognizer(model, options, speed)
    return run(path, recognizer, longform or LongformOptions(), progress)


def decode_manifest(manifest: PathLike, model: PathLike, out: PathLike, options: SearchOptions | None = None, *,
                    limit: int = 0, force: bool = False) -> DecodeResult:  # fmt: skip
    """Decode a manifest into ``out`` (``hyps.jsonl``), resumably (command ``decode``); ``model`` may be a
    system directory."""
    from pipeline.decode.manifest import decode_file
    from pipeline.decode.recognizer import SearchOptions
    from pipeline.system.recognizer import load_any

    return decode_file(manifest, model, out, options or SearchOptions(), limit=limit, force=force, loader=load_any)


def export_system(out: PathLike, data: PathLike, *, from_rescore: PathLike | None = None,
                  model: PathLike | None = None, with_ct2: str | None = None, **options) -> Path:  # fmt: skip
    """Copy a trained system into the system directory ``out`` (command ``export``): the system a
    ``rescore --tune`` run tuned (``from_rescore``: its folder), or one ``model`` decoded plainly.

    ``data``: the prepared data folder it was trained on. ``options``: ``name``, ``card``
    (:class:`~pipeline.system.export.CardOptions`: recipe, license, results, limits) and, with
    ``model``, ``lm``, ``beams``, ``batch_size``. ``with_ct2``: also write its decoder as a CTranslate2
    model of that quantization (int8, float16, float32) inside, what ``speed="fast"`` runs. Returns
    ``out``; load it with :func:`load_recognizer`.
    """
    from pipeline.system.export import export_decoder, export_rescored

    if (from_rescore is None) == (model is None):
        raise ValueError("give one of from_rescore and model")
    if with_ct2 is not None:
        from pipeline.system.ct2 import ct2_writer

        options["ct2"] = ct2_writer(with_ct2)
    if from_rescore is not None:
        return export_rescored(from_rescore, out, data, **options)
    return export_decoder(model, out, data, **options)


def export_dataset(data: PathLike, out: PathLike) -> Path:
    """Write the prepared folder ``data``'s split manifests as a Hugging Face DatasetDict at ``out``
    (command ``export-dataset``; ``datasets.load_from_disk(out)`` reads it). Returns ``out``."""
    from data_prep.hf_export import export_dataset as write

    return write(data, out)


def score_hypotheses(manifest: PathLike, hyps: PathLike, out: PathLike | None = None, **options) -> Results:
    """WER/CER with bootstrap intervals of ``hyps`` against ``manifest`` (command ``score``); writes
    results.json, alignments.txt, per_speaker.tsv and errors.md into the folder ``out`` (default: the
    hypotheses' folder). ``options``: ``system``, ``kind``, ``lang``, ``testset``, ``seed``, ``n_resamples``."""
    from pipeline.score.scorer import score

    return score(manifest, hyps, out, **options)


def make_report(inputs: Sequence[PathLike], out: PathLike, **options) -> Path:
    """Every scored system under ``inputs`` compared in ``out``/report.html and report.md, with the
    transfer verdict (command ``report``). Returns the HTML page's path."""
    from pipeline.report.build import report

    return report(list(inputs), out, **options)


def make_pseudo_labels(labeled: PathLike, unlabeled: Sequence[PathLike], hyps: Sequence[PathLike], out: PathLike,
                       **options) -> dict:  # fmt: skip
    """Self-training data: ``labeled`` plus the checked transcripts (``hyps``) of the ``unlabeled``
    manifests' audio, in ``out``/train.jsonl (command ``pseudo-label``). Returns the counts."""
    from pipeline.pseudo_label import pseudo_label

    return pseudo_label(labeled, list(unlabeled), list(hyps), out, **options)


__all__ = [
    "average_models",
    "decode_manifest",
    "degrade_test_set",
    "export_system",
    "load_config",
    "load_recognizer",
    "make_folds",
    "make_pseudo_labels",
    "make_report",
    "prepare_corpus",
    "score_hypotheses",
    "train_model",
    "transcribe",
    "transcribe_long",
]

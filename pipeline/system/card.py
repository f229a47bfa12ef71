"""The model card of a system directory: ``README.md`` in the Hugging Face model-card format.

YAML front matter (``language``, ``license``, ``base_model``, ``library_name``,
``pipeline_tag``, ``tags``, ``metrics``, ``model-index`` with each scored split's WER
and CER in percent), then: how to use it, what is inside, the base model and its
licence, the training data (hours, utterances and speakers per split, from the data's
``stats.json``), the results with their bootstrap intervals (the systems'
``results.json``), the command that trained it, intended use and limitations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from pipeline.score.results import Results
from pipeline.system.spec import SystemSpec

#: Bundled model names -> their Hugging Face Hub ids.
HUB_IDS = {"whisper-base": "openai/whisper-base", "whisper-tiny.en": "openai/whisper-tiny.en"}
#: Hub id prefixes -> the licence their model cards state.
BASE_LICENSES = {"openai/whisper-": "apache-2.0", "facebook/wav2vec2-": "apache-2.0", "facebook/mms-": "cc-by-nc-4.0"}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_LANGUAGE_NAMES = {"sa": "Sanskrit", "pa": "Punjabi", "hi": "Hindi", "en": "English"}


def _origin(model_dir: Path) -> str | None:
    """The ``base_model`` a model folder records (asr_adapt.json, or a CTC checkpoint's ctc_config.json)."""
    for name in ("asr_adapt.json", "ctc_config.json"):
        try:
            value = json.loads((model_dir / name).read_text(encoding="utf-8")).get("base_model")
        except (OSError, ValueError, AttributeError):
            continue
        if value:
            return str(value)
    return None


def base_model(model_dir: Path) -> str | None:
    """The Hub id of the pretrained model ``model_dir`` descends from; None if unknown.

    A fine-tuned model records the model it started from, which may be another local
    fine-tuned folder (a soup, a self-training start): the chain is followed while it exists.
    """
    name = _origin(model_dir)
    for _ in range(16):
        if name is None or not Path(name).is_dir():
            break
        parent = _origin(Path(name))
        if parent is None:
            return None  # a local folder that records no origin
        name = parent
    if name is None:
        return None
    name = HUB_IDS.get(name, name)
    return name if _HUB_ID.match(name) and not Path(name).exists() else None


def base_license(hub_id: str) -> str | None:
    return next((lic for prefix, lic in BASE_LICENSES.items() if hub_id.startswith(prefix)), None)


def _pct(x: float) -> float:
    return round(100 * x, 2)


def _front_matter(spec: SystemSpec, bases: list[str], results: Sequence[Results], license_id: str,
                  corpus: str, model_kind: str) -> str:  # fmt: skip
    tags = ["automatic-speech-recognition", "asr-adapt", "whisper" if spec.kind == "rescored" else model_kind]
    if spec.ctc:
        tags.append("ctc")
    if spec.kind == "rescored":
        tags += ["n-best-rescoring", "n-gram-lm"] + (["shallow-fusion"] if spec.search.fusion else [])
    meta: dict = {"language": [spec.language], "license": license_id}
    if bases:
        meta["base_model"] = bases[0] if len(bases) == 1 else bases
    meta.update({"library_name": "asr-adapt", "pipeline_tag": "automatic-speech-recognition", "tags": tags,
                 "metrics": ["wer", "cer"]})  # fmt: skip
    return _yaml_block(meta, spec.name, results, corpus)


def _yaml_block(meta: dict, name: str, results: Sequence[Results], corpus: str) -> str:
    """The front matter: ``meta`` and the model index of ``results``."""
    if results:
        meta["model-index"] = [{"name": name, "results": [{
            "task": {"type": "automatic-speech-recognition", "name": "Speech Recognition"},
            "dataset": {"name": corpus, "type": corpus, "split": r.testset},
            "metrics": [{"type": "wer", "value": _pct(r.wer), "name": f"{r.testset} WER"},
                        {"type": "cer", "value": _pct(r.cer), "name": f"{r.testset} CER"}],
        } for r in results]}]  # fmt: skip
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + "---\n"


def _what_it_does(spec: SystemSpec) -> str:
    s = spec.search
    if spec.kind == "decoder":
        how = "greedy search" if s.beams <= 1 else f"a {s.beams}-wide beam search"
        if spec.lm:
            how = "CTC beam search with the word n-gram LM in `lm/`"
        return f"One model (`{spec.decoders[0]}/`), decoded with {how}."
    parts = [f"{'an ensemble of ' + str(len(spec.decoders)) + ' Whisper decoders' if len(spec.decoders) > 1 else 'a Whisper decoder'}"
             f" proposes its {s.nbest}-best from a {s.beams}-wide beam search"]  # fmt: skip
    if s.fusion:
        parts[0] += (f" with the character LM fused in (weight {s.fusion.weight:g}, bonus {s.fusion.bonus:g}, "
                     f"at most {s.fusion.max_rate:.2f} characters per second of audio)")  # fmt: skip
    if spec.ctc:
        parts.append(f"the CTC model proposes its greedy text and up to {s.ctc_proposals} texts of its word-LM beam "
                     "search")  # fmt: skip
    scorers = ["the decoders" if len(spec.decoders) > 1 else "the decoder"] + (["the CTC model"] if spec.ctc else [])
    scorers += (["the word LM"] if spec.lm else []) + (["the character LM"] if spec.char_lm else [])
    named = ", ".join(scorers[:-1]) + " and " + scorers[-1] if len(scorers) > 1 else scorers[0]
    parts.append(f"every candidate is scored by {named}, and one is chosen with the weights tuned on dev "
                 f"(`{spec.weights}`)")  # fmt: skip
    return "A rescored system, per clip: " + "; ".join(parts) + "."


def _inside(spec: SystemSpec) -> list[str]:
    rows = [("`system.json`", "what is inside and how it searches (schema version "
             f"{spec.schema_version})")]  # fmt: skip
    for k, d in enumerate(spec.decoders):
        rows.append((f"`{d}/`", "the Whisper decoder" + (f" {k + 1} of the ensemble" if len(spec.decoders) > 1 else "")
                     if spec.kind == "rescored" else "the model"))  # fmt: skip
    if spec.ctc:
        rows.append((f"`{spec.ctc}/`", "the CTC model; its `vocab.json` is the CTC vocabulary"))
    if spec.lm:
        rows.append((f"`{spec.lm}/lm.arpa`, `{spec.lm}/lm.json`", "the word n-gram LM and its CTC beam-search weights"))
    if spec.char_lm:
        rows.append((f"`{spec.char_lm}`", "the character n-gram LM"))
    if spec.weights:
        rows.append((f"`{spec.weights}`", "the chosen rescoring weights"))
    if spec.text_rules:
        rows.append((f"`{spec.text_rules}`", "the text normalization rules of the training data"))
    if spec.ct2:
        rows.append((f"`{spec.ct2}/`", "the decoder as a CTranslate2 model (`transcribe --speed fast`)"))
    return ["| part | what |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]


def _data_table(prepared) -> list[str]:
    if not prepared.splits:
        return ["The data folder holds no statistics (stats.json)."]
    rows = ["| split | utterances | hours | speakers |", "|---|---:|---:|---:|"]
    for split, s in prepared.splits.items():
        rows.append(f"| {split} | {s.get('utterances', '?')} | {s.get('hours', '?')} | {s.get('speakers', '?')} |")
    return rows


def _results_table(spec: SystemSpec | None, results: Sequence[Results]) -> list[str]:
    if not results:
        return ["No results were given to the export (`--results`)."]
    rows = ["| test set | utterances | speakers | WER % [95% CI] | CER % [95% CI] |", "|---|---:|---:|---|---|"]
    for r in results:
        rows.append(f"| {r.testset} | {r.n_utts} | {len(r.per_speaker) or '?'} | "
                    f"{_pct(r.wer):.2f} [{_pct(r.wer_ci.low):.2f}, {_pct(r.wer_ci.high):.2f}] | "
                    f"{_pct(r.cer):.2f} [{_pct(r.cer_ci.low):.2f}, {_pct(r.cer_ci.high):.2f}] |")  # fmt: skip
    level = results[0].wer_ci.level
    rows.append("")
    rows.append(f"Intervals: {level:.0%} utterance bootstrap ({results[0].bootstrap.get('n_resamples', '?')} "
                "resamples); they cover the choice of utterances, not of speakers.")  # fmt: skip
    if spec is not None and spec.kind == "rescored" and any(r.testset == "dev" for r in results):
        rows.append("The rescoring weights were chosen on dev: its numbers are optimistic; test is held out.")
    return rows


def _limits(spec: SystemSpec, prepared, results: Sequence[Results], extra: Sequence[str]) -> list[str]:
    train = prepared.splits.get("train", {})
    language = _LANGUAGE_NAMES.get(spec.language, spec.language)
    lines = [
        f"- Intended for transcribing {language} speech like the training corpus ({prepared.corpus}): "
        "its recording conditions, speaking style and vocabulary.",
        f"- Trained on {train.get('hours', '?')} hours from {train.get('speakers', '?')} speakers: expect higher "
        "error rates on other speakers, microphones, noise and spontaneous speech.",
        f"- Writes text in the form of its training transcripts, normalized by `{spec.text_rules}` (e.g. no "
        "punctuation): the form the results were scored in.",
        "- Audio longer than 30 s is cut at quiet points and the pieces transcribed one by one.",
    ]
    if any(len(r.per_speaker) <= 2 for r in results):
        lines.append("- The test sets hold few speakers: the intervals say little about other speakers.")
    if spec.kind == "rescored":
        lines.append(f"- Each clip costs a {spec.search.beams}-wide beam search per decoder plus the scoring of every "
                     "candidate: several times slower than greedy decoding.")  # fmt: skip
    return lines + [f"- {line}" for line in extra]


def model_card(spec: SystemSpec, folder: Path, prepared, results: Sequence[Results], card, name: str) -> str:
    """The README.md of the system directory ``folder`` (its parts already in place), to be called ``name``."""
    from pipeline.models.ctc_checkpoint import is_ctc_checkpoint

    bases = sorted({b for d in [*spec.decoders, spec.ctc] if d for b in [base_model(folder / d)] if b})
    kind = "ctc" if is_ctc_checkpoint(folder / spec.decoders[0]) else "whisper"
    lines = [_front_matter(spec, bases, results, card.license, prepared.corpus, kind), f"# {spec.name}", "", _what_it_does(spec), "",
             "## Usage", "", "With the asr-adapt toolkit installed (any machine: the folder holds everything):", "",
             "```bash", f"python -m pipeline transcribe --model path/to/{name} clip.wav other.mp3",
             f"python -m pipeline decode --model path/to/{name} --manifest test.jsonl --out hyps.jsonl", "```", "",
             "```python", "import pipeline", "", f'print(pipeline.transcribe(["clip.wav"], "path/to/{name}"))', "```",
             "",
             "## What is inside", "", *_inside(spec), ""]  # fmt: skip
    lines += ["## Base model", ""]
    if bases:
        lines += [f"- [{b}](https://huggingface.co/{b}), licence: {base_license(b) or 'see its model card'}"
                  for b in bases]  # fmt: skip
    else:
        lines.append("- not recorded by the models (trained from a local model)")
    lines += ["", f"This system's licence: `{card.license}`; the training data's terms apply too.", ""]
    lines += ["## Training data", "", f"Corpus `{prepared.corpus}`, language `{spec.language}`, text rules "
              f"`{prepared.rules}`.", "", *_data_table(prepared), ""]  # fmt: skip
    lines += ["## Results", "", *_results_table(spec, results), ""]
    lines += ["## Training", ""]
    lines += [f"Trained by `{card.recipe}`." if card.recipe else "The command that trained it was not given."]
    lines += ["", "## Intended use and limitations", "", *_limits(spec, prepared, results, card.limits), ""]
    return "\n".join(lines)


def ct2_card(record, name: str, prepared, results: Sequence[Results], card, folder: str) -> str:
    """The README.md of a CTranslate2 export (:mod:`pipeline.system.ct2`; ``record``: its CT2Export)."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    base = base_model(Path(record.source))
    meta: dict = {"language": [prepared.language], "license": card.license}
    if base:
        meta["base_model"] = base
    meta.update({"library_name": "ctranslate2", "pipeline_tag": "automatic-speech-recognition",
                 "tags": ["automatic-speech-recognition", "asr-adapt", "whisper", "ctranslate2", "faster-whisper"],
                 "metrics": ["wer", "cer"]})  # fmt: skip
    code = record.language_token.strip("<|>")
    trimmed = record.encoder_input == "trimmed"
    lines = [_yaml_block(meta, name, results, prepared.corpus), f"# {name} (CTranslate2, {record.quantization})", "",
             "A fine-tuned Whisper converted by CTranslate2's converter, for "
             "[faster-whisper](https://github.com/SYSTRAN/faster-whisper) and "
             "[CTranslate2](https://github.com/OpenNMT/CTranslate2). It was trained with the prompt "
             f"`{''.join(record.prompt)}`.", "", "## Usage", ""]  # fmt: skip
    if code in LANGUAGES:
        lines += ["```python", "from faster_whisper import WhisperModel", "",
                  f'model = WhisperModel("path/to/{folder}")',
                  f'segments, info = model.transcribe("clip.wav", language="{code}", beam_size=1, '
                  "without_timestamps=True)", 'print(" ".join(s.text.strip() for s in segments))', "```", "",
                  "Without `language` it finds its one language by itself; without the other two it searches with "
                  "a 5-wide beam and timestamp tokens, which it was not trained with.", ""]  # fmt: skip
        if trimmed:
            lines += ["The model was fine-tuned on each clip's real length, not on Whisper's 30-s windows, and "
                      "decodes best from the clip's own features; faster-whisper pads every clip to 30 s. "
                      "CTranslate2 takes the real length:", ""]  # fmt: skip
    else:
        lines += [f"faster-whisper knows only Whisper's own languages, and `{record.language_token}` is a new one: "
                  "decode with CTranslate2, with the prompt the model was trained with:", ""]  # fmt: skip
    if trimmed or code not in LANGUAGES:
        cut = "[:, :, : -(-len(audio) // 160)])  # the clip's own frames" if trimmed else ")  # the 30-s window"
        lines += ["```python", "import ctranslate2, numpy as np, soundfile as sf, tokenizers",
                  "from transformers import WhisperFeatureExtractor", "", f'path = "path/to/{folder}"',
                  'audio, _ = sf.read("clip.wav", dtype="float32")  # 16 kHz mono',
                  "features = WhisperFeatureExtractor.from_pretrained(path)(audio, sampling_rate=16000, "
                  'return_tensors="np").input_features', f"features = np.ascontiguousarray(features{cut}",
                  "model = ctranslate2.models.Whisper(path)",
                  f"result = model.generate(ctranslate2.StorageView.from_array(features), [{record.prompt!r}], "
                  "beam_size=1)", 'print(tokenizers.Tokenizer.from_file(f"{path}/tokenizer.json")'
                  ".decode(result[0].sequences_ids[0]))", "```", ""]  # fmt: skip
    lines += ["## What the conversion changed", "",
              f"- `config.json`'s `lang_ids` lists `{record.language_token}` only: language detection finds it."]
    if record.suppressed_in_model:
        lines.append(f"- The {record.suppressed_in_model} tokens outside the vocabulary the model was trained on get "
                     "an output bias of -10000: every runtime's search leaves them out.")  # fmt: skip
    if record.padded_vocabulary:
        lines.append(f"- The vocabulary is padded with {record.padded_vocabulary} unused tokens to Whisper's "
                     "multilingual size, which CTranslate2 reads as a multilingual model.")  # fmt: skip
    lines += ["", "## Results", "", "Measured with the asr-adapt toolkit's own decoder (transformers weights"
              + (", the clip's real length" if trimmed else "") + "); this conversion's numbers differ by its "
              f"quantization ({record.quantization}) and by how a runtime feeds it.", "",
              *_results_table(None, results), ""]  # fmt: skip
    lines += ["## Training", "", f"Trained by `{card.recipe}`." if card.recipe else
              "The command that trained it was not given.", ""]  # fmt: skip
    if card.limits:
        lines += ["## Intended use and limitations", "", *(f"- {line}" for line in card.limits), ""]
    return "\n".join(lines)

"""The exported decoder works where users run Whisper: plain ``transformers.pipeline`` prompts it with the
trained language, and ``export --format ct2`` gives a CTranslate2 model that decodes as this toolkit does
and that faster-whisper loads (a restricted, new BPE vocabulary and a trimmed encoder included)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tree_fixtures import tree_digest  # noqa: E402

from data_prep.outputs import OWNER_FILE  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.decode.hyps import read_hyps  # noqa: E402
from pipeline.testing.tiny import build_tiny_whisper, write_tiny_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _FirstDecoderCall(Exception):
    def __init__(self, ids: list[int]):
        self.ids = ids


def plain_pipeline_prompt(model_dir: Path, wave: np.ndarray) -> list[int]:
    """The first decoder input of ``transformers.pipeline(...)`` called with no arguments: the prompt it
    decodes with, or ``[<|startoftranscript|>]`` alone when it detects a language first."""
    import transformers

    asr = transformers.pipeline("automatic-speech-recognition", model=str(model_dir))

    def stop(module, args, kwargs):  # the search itself is not needed
        raise _FirstDecoderCall(kwargs.get("input_ids", args[0] if args else None)[0].tolist())

    handle = asr.model.model.decoder.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        asr(wave)
    except _FirstDecoderCall as call:
        return call.ids
    finally:
        handle.remove()
    raise AssertionError("the pipeline never ran the decoder")


def _with_old_forced_ids(model) -> None:
    """Like the released checkpoints: the deprecated forced_decoder_ids (language left to detection)."""
    gen = model.generation_config
    gen.forced_decoder_ids = [[1, None], [2, gen.task_to_id["transcribe"]]]


def _whisper_language(tmp):
    model, processor = build_tiny_whisper(begin_suppress=True, target_positions=448)
    tok = processor.tokenizer
    allowed = [*range(0, 80), *tok.convert_tokens_to_ids(["<|endoftext|>", "<|startoftranscript|>", "<|pa|>",
                                                         "<|transcribe|>", "<|notimestamps|>"])]  # fmt: skip
    return model, processor, "pa", allowed


def _new_language(tmp):
    from pipeline.models.language import setup_language

    model, processor = build_tiny_whisper(begin_suppress=True, target_positions=448)
    setup_language(model, processor, "xx", init_from="sa")
    return model, processor, "xx", None


def _bpe_vocabulary(tmp):
    from pipeline.train.new_vocab import adopt_vocabulary, train_bpe

    model, processor = build_tiny_whisper(begin_suppress=True, target_positions=448)
    texts = [" ab ba aab", " bb ab", " ba ba bb aab"] * 20
    adopt_vocabulary(model, processor, train_bpe(texts, 300, processor.tokenizer))
    return model, processor, "sa", None


@pytest.mark.parametrize("make", [_whisper_language, _new_language, _bpe_vocabulary],
                         ids=["whisper-language-restricted", "new-language-token", "bpe-vocabulary"])  # fmt: skip
def test_plain_pipeline_prompts_with_the_trained_language(tmp_path, make):
    from pipeline.models.language import language_token
    from pipeline.train.export import export_model

    model, processor, code, allowed = make(tmp_path)
    _with_old_forced_ids(model)
    gen = model.generation_config
    info = {"language": code, "language_token": language_token(code), "encoder_input": "trimmed"}
    best = export_model(model, processor, tmp_path / "best", info, allowed)
    assert getattr(model.generation_config, "language", None) is None  # the training model is left as it was

    saved = json.loads((best / "generation_config.json").read_text())
    lang = gen.lang_to_id[language_token(code)]
    assert saved["language"] == language_token(code) and saved["task"] == "transcribe"
    assert saved.get("forced_decoder_ids") is None and saved["lang_to_id"][language_token(code)] == lang
    # pipeline()'s default is a 5-wide beam search: its scores are taken again over the tokens it may emit
    assert saved.get("renormalize_logits", False) is bool(saved.get("suppress_tokens"))
    assert allowed is None or saved["renormalize_logits"]
    wave = (0.1 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
    expected = [gen.decoder_start_token_id, lang, gen.task_to_id["transcribe"], gen.no_timestamps_token_id]
    assert plain_pipeline_prompt(best, wave) == expected


def _data_folder(root: Path, lang: str) -> Path:
    """A tiny corpus as ``prepare`` leaves it (manifests, prepare.json) in ``lang``."""
    data = write_tiny_corpus(root, n_train=12, n_dev=4, lang=lang)
    (data / "prepare.json").write_text(json.dumps({"process": {"language": lang, "rules": lang,
                                                               "root": f"/corpora/tiny_{lang}"}}))  # fmt: skip
    return data


def test_system_export_prompts_a_decoder_exported_without_a_language(tmp_path):
    """A model saved before its generation config carried the language and renormalized beam scores: the
    system's copy carries both."""
    from pipeline.testing.tiny import save_tiny_whisper

    model = save_tiny_whisper(tmp_path / "old", begin_suppress=True, target_positions=448)
    data = _data_folder(tmp_path / "data", "pa")
    before = (model / "generation_config.json").read_bytes()
    assert main(["export", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "final")]) == 0
    saved = json.loads((tmp_path / "final/decoder/generation_config.json").read_text())
    assert saved["language"] == "<|pa|>" and saved["task"] == "transcribe"
    assert saved.get("renormalize_logits", False) is bool(saved.get("suppress_tokens"))
    assert (model / "generation_config.json").read_bytes() == before  # the input is left alone
    wave, _ = sf.read(data / "audio/dev000.wav", dtype="float32")
    assert plain_pipeline_prompt(tmp_path / "final/decoder", wave)[1] == saved["lang_to_id"]["<|pa|>"]


# ----------------------------------------------------------------------------------- CTranslate2


def _trapped_tiny_whisper(out: Path) -> Path:
    """A tiny Whisper (448 decoder positions, as runtimes assume) in which "z", a token the corpus never
    uses, wins every unrestricted argmax: only a search that keeps to the trained vocabulary avoids it."""
    model, processor = build_tiny_whisper(begin_suppress=True, target_positions=448)
    trap = processor.tokenizer.convert_tokens_to_ids("z")
    with torch.no_grad():
        bias = torch.randn(model.config.d_model, generator=torch.Generator().manual_seed(1))
        model.model.decoder.layer_norm.bias.copy_(bias)
        model.get_output_embeddings().weight[trap] = 10 * bias / bias.norm() ** 2
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The demo recipe in miniature: a new BPE vocabulary, restricted softmax, encoder trained on the clips'
    real length; exported as a system directory, then as CTranslate2 models (float32, int8)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runtimes")
    model = _trapped_tiny_whisper(root / "model")
    data = _data_folder(root / "data", "pa")
    cfg = {"data": {"lang": "pa", "manifests_dir": str(data)},
           "model": {"name": str(model), "vocabulary": "bpe", "vocabulary_size": 300},
           "train": {"regime": "cached-encoder", "encoder_trainable_top_layers": 1, "restrict_vocab": True,
                     "lr": 1e-2, "warmup_steps": 2, "max_steps": 40, "batch_seconds": 4.0, "eval_every": 40,
                     "log_every": 10, "threads": 1},
           "augment": {"speed_perturb": [1.0]}, "decode": {"batch_size": 2},
           "output_dir": str(root / "exp/whisper_ft")}  # fmt: skip
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(root / "config.yaml")]) == 0
    best = root / "exp/whisper_ft/best"
    assert main(["export", "--model", str(best), "--data", str(data), "--out", str(root / "exp/final")]) == 0
    for q in ("float32", "int8"):
        assert main(["export", "--format", "ct2", "--quantization", q, "--model", str(root / "exp/final"),
                     "--data", str(data), "--out", str(root / f"exp/ct2_{q}")]) == 0  # fmt: skip
    # searching 2 wide, with its decoder as a CTranslate2 model inside: every speed rung differs from another
    assert main(["export", "--model", str(best), "--data", str(data), "--beams", "2", "--with-ct2", "float32",
                 "--out", str(root / "exp/final_ct2")]) == 0  # fmt: skip
    torch.set_num_threads(threads)
    return root


def test_ct2_folder_holds_what_runtimes_read(trained):
    import ctranslate2

    from pipeline.system.ct2 import MULTILINGUAL_VOCAB, read_export

    ct2 = trained / "exp/ct2_int8"
    best = trained / "exp/whisper_ft/best"
    for name in ("model.bin", "config.json", "vocabulary.json", "tokenizer.json", "preprocessor_config.json",
                 "asr_adapt.json", "ct2_export.json", "README.md", OWNER_FILE):  # fmt: skip
        assert (ct2 / name).is_file(), name
    record = read_export(ct2)
    gen = json.loads((best / "generation_config.json").read_text())
    pa = gen["lang_to_id"]["<|pa|>"]
    assert record.prompt_ids == [gen["decoder_start_token_id"], pa, gen["task_to_id"]["transcribe"],
                                 gen["no_timestamps_token_id"]]  # fmt: skip
    assert record.encoder_input == "trimmed" and record.quantization == "int8"
    assert record.suppressed_in_model == len(gen["suppress_tokens"]) and record.padded_vocabulary > 0
    config = json.loads((ct2 / "config.json").read_text())
    assert config["lang_ids"] == [pa] and sorted(config["suppress_ids"]) == sorted(gen["suppress_tokens"])
    assert len(json.loads((ct2 / "vocabulary.json").read_text())) == MULTILINGUAL_VOCAB
    model = ctranslate2.models.Whisper(str(ct2))
    assert model.is_multilingual  # a small vocabulary would read as English-only: no language token
    wave, _ = sf.read(trained / "data/audio/dev000.wav", dtype="float32")
    from transformers import WhisperFeatureExtractor

    features = WhisperFeatureExtractor.from_pretrained(ct2)(wave, sampling_rate=16000, return_tensors="np")
    detected = model.detect_language(ctranslate2.StorageView.from_array(features.input_features))
    assert detected[0][0][0] == "<|pa|>"
    card = (ct2 / "README.md").read_text()
    assert "library_name: ctranslate2" in card and 'language="pa"' in card and "real length" in card
    assert card.splitlines()[card.splitlines().index("---", 1) + 2] == "# whisper_ft (CTranslate2, int8)"


def test_the_cards_ctranslate2_snippet_runs_as_written(trained, capsys):
    """The model card's real-length CTranslate2 code, pasted as it is, prints what our decode gives."""
    import re

    from pipeline.system.recognizer import load_any

    ct2 = trained / "exp/ct2_float32"
    snippets = re.findall(r"```python\n(.*?)```", (ct2 / "README.md").read_text(), re.S)
    code = next(s for s in snippets if "ctranslate2.models.Whisper" in s)
    clip = trained / "data/audio/dev000.wav"
    exec(code.replace("path/to/ct2_float32", str(ct2)).replace("clip.wav", str(clip)), {})
    printed = capsys.readouterr().out.strip()
    wave, _ = sf.read(clip, dtype="float32")
    assert printed and printed == load_any(trained / "exp/final").transcribe([wave])[0]


def test_ct2_greedy_equals_our_decode(trained):
    """CTranslate2 on the features our decode uses (the clip's real length: the model was trained so)."""
    import ctranslate2
    import tokenizers
    from transformers import WhisperFeatureExtractor

    from pipeline.system.ct2 import ct2_features, ct2_greedy, read_export

    data = trained / "data"
    hyps = trained / "hyps.jsonl"
    assert main(["decode", "--model", str(trained / "exp/final"), "--manifest", str(data / "dev.jsonl"),
                 "--out", str(hyps)]) == 0  # fmt: skip
    ours = {h.id: h.text for h in read_hyps(hyps)}
    ct2 = trained / "exp/ct2_float32"
    model = ctranslate2.models.Whisper(str(ct2))
    fe = WhisperFeatureExtractor.from_pretrained(ct2)
    tok = tokenizers.Tokenizer.from_file(str(ct2 / "tokenizer.json"))
    prompt = read_export(ct2).prompt_ids
    theirs = {}
    for line in (data / "dev.jsonl").read_text().splitlines():
        utt = json.loads(line)
        wave, _ = sf.read(data / utt["audio"], dtype="float32")
        theirs[utt["id"]] = tok.decode(ct2_greedy(model, ct2_features(fe, wave, trimmed=True), prompt)).strip()
    assert theirs == ours and all(ours.values())


@pytest.mark.skipif(importlib.util.find_spec("faster_whisper") is None, reason="faster-whisper is not installed")
def test_faster_whisper_transcribes_the_export_in_its_language_and_vocabulary(trained):
    """``WhisperModel(dir).transcribe(path)`` as a user calls it: the trained language, found by itself, and
    only tokens of the trained vocabulary (the trap token, which wins an unrestricted search, never)."""
    from faster_whisper import WhisperModel

    best = trained / "exp/whisper_ft/best"
    suppressed = set(json.loads((best / "generation_config.json").read_text())["suppress_tokens"])
    eot = json.loads((best / "generation_config.json").read_text())["eos_token_id"]
    model = WhisperModel(str(trained / "exp/ct2_int8"), device="cpu", cpu_threads=1)
    segments, info = model.transcribe(str(trained / "data/audio/dev001.wav"))
    segments = list(segments)
    assert info.language == "pa"
    text_tokens = [t for s in segments for t in s.tokens if t < eot]
    assert "".join(s.text for s in segments).strip() and text_tokens
    assert not set(text_tokens) & suppressed


def test_ct2_export_refuses_what_has_no_ctranslate2_form(trained, tmp_path, capsys):
    from ctc_fixtures import tiny_whisper_encoder, vocab

    from pipeline.models.ctc import WhisperEncoderCTC
    from pipeline.models.ctc_checkpoint import save_ctc_model

    data = str(trained / "data")
    enc, fe = tiny_whisper_encoder()
    ctc = save_ctc_model(WhisperEncoderCTC(enc, vocab()), tmp_path / "ctc", fe)
    cases = [
        (["--model", str(ctc), "--format", "ct2"], "not a Whisper model folder"),
        (["--from-rescore", str(tmp_path), "--format", "ct2"], "converts one Whisper decoder"),
        (["--model", str(trained / "exp/final"), "--quantization", "int8"], "goes with --format ct2"),
        (["--model", str(trained / "exp/final"), "--format", "ct2", "--beams", "4"], "--lm, --beams and --tail-silence"),
    ]
    for args, message in cases:
        assert main(["export", *args, "--data", data, "--out", str(tmp_path / "out")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_runtimes_benchmark_prints_a_row_per_runtime(trained, capsys):
    from benchmarks.runtimes import main as runtimes

    assert runtimes(["--system", str(trained / "exp/final"), "--ct2", str(trained / "exp/ct2_int8"),
                     "--manifest", str(trained / "data/dev.jsonl"), "--limit", "2", "--threads", "1",
                     "--skip", "pipeline,faster-whisper"]) == 0  # fmt: skip
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("2 clips") and table[2].startswith("| runtime | WER % | CER % | s |")
    rows = [line.split(" | ")[0].lstrip("| ") for line in table[4:]]
    assert rows[:3] == ["ours (greedy)", "CTranslate2 int8, greedy, 30-s padded features",
                        "CTranslate2 int8, greedy, real-length features"]  # fmt: skip


# ----------------------------------------------------------------------------------- speed rungs


def _dev_clips(trained: Path) -> tuple[list[str], list[np.ndarray]]:
    files = sorted(str(f) for f in (trained / "data/audio").glob("dev*.wav"))
    return files, [sf.read(f, dtype="float32")[0] for f in files]


def _transcribed(capsys, args: list[str]) -> tuple[list[str], str]:
    capsys.readouterr()
    assert main(["transcribe", "--no-progress", *args]) == 0
    captured = capsys.readouterr()
    return [line.split("\t")[1] for line in captured.out.splitlines()], captured.err


def test_speed_rungs_run_greedy_through_ctranslate2_beam_and_the_systems_own_search(trained, capsys):
    import pipeline
    from pipeline.decode.recognizer import SearchOptions, load_recognizer

    system = trained / "exp/final_ct2"
    spec = json.loads((system / "system.json").read_text())
    assert spec["ct2"] == "ct2" and spec["search"]["beams"] == 2 and (system / "ct2/model.bin").is_file()
    files, waves = _dev_clips(trained)
    decoder = system / "decoder"
    greedy = load_recognizer(decoder, SearchOptions(), fallback_language="pa").transcribe(waves)
    beam = load_recognizer(decoder, SearchOptions(beams=2), fallback_language="pa").transcribe(waves)
    assert greedy != beam and all(greedy)  # the rungs can be told apart

    fast, err = _transcribed(capsys, ["--model", str(system), "--speed", "fast", *files])
    assert fast == greedy and "transcribe: speed fast: greedy, CTranslate2 float32 (ct2/)" in err
    best, err = _transcribed(capsys, ["--model", str(system), *files])
    assert best == beam and "speed best: the system's own search: beam 2" in err
    balanced, err = _transcribed(capsys, ["--model", str(system), "--speed", "balanced", *files])
    assert balanced == beam and "speed balanced: beam 2 of decoder/" in err  # no character LM: beam only
    assert pipeline.transcribe(waves, system, speed="fast") == greedy
    assert pipeline.load_recognizer(system, speed="fast").kind == "ct2"


def test_fast_without_a_ctranslate2_decoder_is_our_greedy_without_a_warning(trained, capsys, caplog):
    import pipeline
    from pipeline.decode.recognizer import SearchOptions, load_recognizer

    system = trained / "exp/final"  # exported without --with-ct2
    files, waves = _dev_clips(trained)
    greedy = load_recognizer(system / "decoder", SearchOptions(), fallback_language="pa").transcribe(waves)
    fast, err = _transcribed(capsys, ["--model", str(system), "--speed", "fast", *files])
    assert fast == greedy
    assert "transcribe: speed fast: greedy of decoder/ (this toolkit's)\n" in err and "warning" not in err
    assert pipeline.transcribe(waves, system, speed="fast") == greedy
    assert "CTranslate2" not in caplog.text  # the API does not warn either


def test_a_rung_that_cannot_be_had_is_a_one_line_error(trained, tmp_path, capsys):
    from ctc_fixtures import tiny_whisper_encoder, vocab

    import pipeline
    from pipeline.models.ctc import WhisperEncoderCTC
    from pipeline.models.ctc_checkpoint import save_ctc_model

    files, waves = _dev_clips(trained)
    enc, fe = tiny_whisper_encoder()
    ctc = save_ctc_model(WhisperEncoderCTC(enc, vocab()), tmp_path / "ctc", fe)
    data = str(trained / "data")
    assert main(["export", "--model", str(ctc), "--data", data, "--out", str(tmp_path / "ctc_system")]) == 0
    cases = [
        (["--model", str(tmp_path / "ctc_system"), "--speed", "balanced"], "decodes with a CTC model"),
        (["--model", str(trained / "exp/whisper_ft/best"), "--speed", "fast"], "needs a system directory"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["transcribe", "--no-progress", *args, files[0]]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    fast, err = _transcribed(capsys, ["--model", str(tmp_path / "ctc_system"), "--speed", "fast", files[0]])
    assert "speed fast: CTC greedy, no LM" in err
    with pytest.raises(ValueError, match="needs a system directory"):
        pipeline.load_recognizer(trained / "exp/whisper_ft/best", speed="balanced")
    with pytest.raises(ValueError, match="one of fast, balanced, best"):
        pipeline.load_recognizer(trained / "exp/final", speed="fastest")
    # a CTC checkpoint has no CTranslate2 form: export refuses --with-ct2, and writes nothing
    assert main(["export", "--model", str(ctc), "--data", data, "--with-ct2", "int8",
                 "--out", str(tmp_path / "out")]) == 2  # fmt: skip
    assert "CTranslate2 converts a Whisper decoder only" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_speed_ladder_prints_every_rung_with_its_ratio_to_the_transformers_pipeline(trained, capsys, monkeypatch):
    import benchmarks.speed_ladder as ladder

    before = tree_digest(trained / "exp/final_ct2")
    args = ["--system", str(trained / "exp/final_ct2"), "--manifest", str(trained / "data/dev.jsonl"),
            "--limit", "2", "--threads", "1"]  # fmt: skip
    real = ladder.needs
    monkeypatch.setattr(ladder, "needs", lambda m: real("not_a_module_x") if m == "faster_whisper" else real(m))
    assert ladder.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2 clips, ") and lines[0].endswith(" s of audio, 1 CPU thread(s)")
    assert lines[2] == "| | rung | WER % | CER % | s | RTF | x (a) |"
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[4:]}
    assert list(rows) == ["(a)", "(b)", "(c)", "(d)", "(e)", "(f)"]
    assert rows["(a)"][0] == "transformers pipeline, greedy, float32" and rows["(a)"][-1] == "1 |"
    assert rows["(b)"][0] == "ours, greedy (--speed fast)"
    assert rows["(c)"][0] == "ours, CTranslate2 int8 greedy (--speed fast of an export --with-ct2 int8)" \
        and rows["(c)"][-1] != "- |"
    assert rows["(d)"][1].startswith("skipped: not_a_module_x is not installed")  # a runtime not installed
    assert rows["(e)"][0] == "ours, beam 2 (no character LM) (--speed balanced)"
    assert rows["(f)"][0] == "the full system (--speed best): beam 2"
    # the system has a float32 ct2/: row (c) ran an int8 conversion made outside it
    assert tree_digest(trained / "exp/final_ct2") == before
    wer_b, wer_f = float(rows["(b)"][1]), float(rows["(f)"][1])
    assert 0 <= wer_b <= 100 and 0 <= wer_f <= 100

"""System directories: ``export`` copies a tuned rescored system (or one decoder) into one folder that,
copied anywhere with its sources gone, transcribes exactly as the recipe's run did."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tree_fixtures import tree_digest  # noqa: E402

from pipeline.cli import main  # noqa: E402
from pipeline.decode.hyps import read_hyps  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny_data(root: Path) -> Path:
    """A tiny corpus as ``prepare`` leaves it: train, dev and test manifests, prepare.json, stats.json."""
    from pipeline.testing.tiny import write_tiny_corpus

    data = write_tiny_corpus(root, n_train=6, n_dev=10)
    lines = (data / "dev.jsonl").read_text().splitlines()
    (data / "dev.jsonl").write_text("\n".join(lines[:5]) + "\n")
    (data / "test.jsonl").write_text("\n".join(lines[5:]) + "\n")
    (data / "prepare.json").write_text(json.dumps({"process": {"language": "sa", "rules": "sa",
                                                               "root": "/corpora/tiny_sa"}}))  # fmt: skip
    splits = {"train": {"utterances": 6, "hours": 0.0012, "speakers": 2}, "test": {"utterances": 5, "hours": 0.001,
                                                                                  "speakers": 2}}  # fmt: skip
    (data / "stats.json").write_text(json.dumps({"splits": splits}))
    return data


@pytest.fixture(scope="module")
def rescored(tmp_path_factory):
    """The Sanskrit recipe's final stage in miniature: a decoder, a CTC system, word and char LMs, the
    decoder's fused N-best and the CTC proposals rescored on dev (--tune) and test (--weights), scored,
    and the system exported. Returns the tree's root."""
    from ctc_fixtures import tiny_whisper_encoder, vocab

    from pipeline.models.ctc import WhisperEncoderCTC
    from pipeline.models.ctc_checkpoint import save_ctc_model
    from pipeline.testing.tiny import save_tiny_whisper

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("system")
    data = _tiny_data(root / "data")
    exp = root / "exp"
    model = save_tiny_whisper(exp / "whisper" / "best", seed=2)
    enc, fe = tiny_whisper_encoder()
    ctc = save_ctc_model(WhisperEncoderCTC(enc, vocab()), exp / "ctc" / "best", fe)
    assert main(["lm", "--train", str(data / "train.jsonl"), "--out", str(exp / "lm"), "--order", "2",
                 "--char-order", "3", "--tune-on", str(data / "dev.jsonl"), "--model", str(ctc),
                 "--alphas", "0,0.5", "--betas", "0,1"]) == 0  # fmt: skip
    common = ["rescore", "--model", str(model), "--ctc", str(ctc), "--lm", str(exp / "lm"), "--char-lm",
              str(exp / "lm"), "--beams", "3", "--nbest", "3", "--batch-size", "2", "--fusion-weight", "0.5",
              "--fusion-bonus", "1.0", "--fusion-rate-from", str(data / "train.jsonl")]  # fmt: skip
    run = exp / "sys"
    assert main([*common, "--manifest", str(data / "dev.jsonl"), "--out", str(run / "dev/hyps.jsonl"), "--tune",
                 "--tune-metric", "wer+cer"]) == 0  # fmt: skip
    assert main([*common, "--manifest", str(data / "test.jsonl"), "--out", str(run / "test/hyps.jsonl"),
                 "--weights", str(run / "dev/weights.json")]) == 0  # fmt: skip
    for split in ("dev", "test"):
        assert main(["score", "--manifest", str(data / f"{split}.jsonl"), "--hyps", str(run / split / "hyps.jsonl"),
                     "--system", "sys", "--kind", "finetuned"]) == 0  # fmt: skip
    assert main(["export", "--from-rescore", str(run / "dev"), "--data", str(data), "--results",
                 str(run / "dev/results.json"), str(run / "test/results.json"), "--recipe", "recipes/tiny/run.sh",
                 "--out", str(exp / "final")]) == 0  # fmt: skip
    torch.set_num_threads(threads)
    return root


def _moved_away(root: Path, tmp_path: Path) -> Path:
    """The exported system copied to ``tmp_path``; the experiment folder is renamed by the caller."""
    copy = tmp_path / "elsewhere" / "sa_system"
    shutil.copytree(root / "exp" / "final", copy)
    return copy


def test_the_rescore_run_records_its_models_settings_and_the_rate_cap_as_a_number(rescored):
    from pipeline.decode.fusion import max_rate_of
    from pipeline.rescore.record import read_record

    record = read_record(rescored / "exp/sys/dev")
    assert record.models == [str(rescored / "exp/whisper/best")] and record.ctc == str(rescored / "exp/ctc/best")
    assert (record.beams, record.nbest, record.batch_size, record.data_language) == (3, 3, 2, "sa")
    assert record.fusion.max_rate == max_rate_of(rescored / "data/train.jsonl", 1.25) > 0
    weights = json.loads((rescored / "exp/sys/dev/weights.json").read_text())
    assert record.weights.word_bonus == weights["word_bonus"] and record.tuning.metric == "wer+cer"
    assert not (rescored / "exp/sys/test/rescore.json").exists()  # only a --tune run records a system


def test_a_copied_rescored_system_transcribes_and_decodes_as_the_rescore_did(rescored, tmp_path, capsys):
    system = _moved_away(rescored, tmp_path)
    want = {h.id: h.text for h in read_hyps(rescored / "exp/sys/test/hyps.jsonl")}
    test = [json.loads(line) for line in (rescored / "data/test.jsonl").read_text().splitlines()]
    spec = json.loads((system / "system.json").read_text())
    assert spec["schema_version"] == 1 and spec["kind"] == "rescored"
    assert spec["search"]["fusion"]["max_rate"] > 0 and spec["search"]["beams"] == 3
    # nothing that loads points back to where it came from (system.json's provenance only records it)
    for f in system.rglob("*"):
        if f.is_file() and f.name != "system.json":
            assert str(rescored).encode() not in f.read_bytes(), f
    weights = json.loads((system / "weights.json").read_text())
    assert "grid" not in weights and "tuned_on" not in weights
    lm = json.loads((system / "lm/lm.json").read_text())
    assert set(lm) == {"arpa", "alpha", "beta", "beam_width"}  # no grid, no paths
    os.rename(rescored / "exp", rescored / "exp.away")  # the sources are gone
    try:
        capsys.readouterr()
        files = [str(rescored / "data" / u["audio"]) for u in test]
        assert main(["transcribe", "--model", str(system), *files]) == 0
        lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
        assert {Path(p).stem: text for p, text in lines} == want  # file dev005.wav is utterance dev005
        out = tmp_path / "decoded" / "hyps.jsonl"
        assert main(["decode", "--model", str(system), "--manifest", str(rescored / "data/test.jsonl"),
                     "--out", str(out)]) == 0  # fmt: skip
        assert {h.id: h.text for h in read_hyps(out)} == want
    finally:
        os.rename(rescored / "exp.away", rescored / "exp")


def test_every_candidate_and_score_of_the_system_is_the_rescore_s(rescored, tmp_path):
    # the choice above could hang on one score; each candidate, with every score, must be the run's
    import numpy as np

    from data_prep.manifest import read_manifest
    from pipeline.rescore.candidates import read_nbest
    from pipeline.system.recognizer import RescoredSystem
    from pipeline.system.spec import read_spec

    system = _moved_away(rescored, tmp_path)
    loaded = RescoredSystem(system, read_spec(system))
    utts = sorted(read_manifest(rescored / "data/test.jsonl"), key=lambda u: u.duration)  # rescore's batches
    nbests = {nb.id: nb for nb in read_nbest(rescored / "exp/sys/test/nbest.jsonl")}
    for start in range(0, len(utts), 2):
        batch = utts[start : start + 2]
        got = loaded.candidates([u.load_audio(rescored / "data") for u in batch])
        for u, cands in zip(batch, got):
            want = nbests[u.id].candidates
            assert [(c.text, c.source, c.rank) for c in cands] == [(c.text, c.source, c.rank) for c in want]
            for name in ("att", "ctc", "lm", "clm"):
                np.testing.assert_allclose([getattr(c, name) for c in cands], [getattr(c, name) for c in want],
                                           rtol=1e-5, atol=1e-4)  # fmt: skip


def test_the_model_card_carries_the_data_results_and_base_model(rescored):
    from pipeline.score.results import read_results

    card = (rescored / "exp/final/README.md").read_text()
    head, body = card.removeprefix("---\n").split("\n---\n", 1)
    meta = yaml.safe_load(head)
    assert meta["language"] == ["sa"] and meta["license"] == "other" and "model-index" in meta
    test = read_results(rescored / "exp/sys/test/results.json")
    (metrics,) = [r["metrics"] for r in meta["model-index"][0]["results"] if r["dataset"]["split"] == "test"]
    assert metrics[0] == {"type": "wer", "value": round(100 * test.wer, 2), "name": "test WER"}
    for section in ("## Usage", "## Base model", "## Training data", "## Results", "## Training",
                    "## Intended use and limitations"):  # fmt: skip
        assert section in body
    assert f"{100 * test.wer_ci.low:.2f}, {100 * test.wer_ci.high:.2f}" in body  # the interval
    assert "| train | 6 | 0.0012 | 2 |" in body and "recipes/tiny/run.sh" in body


def test_a_single_decoder_system_decodes_as_its_decode_run(rescored, tmp_path, capsys):
    data, model = rescored / "data", rescored / "exp/whisper/best"
    scored = tmp_path / "exp/plain/test/hyps.jsonl"
    assert main(["decode", "--model", str(model), "--manifest", str(data / "test.jsonl"), "--out", str(scored),
                 "--batch-size", "3"]) == 0  # fmt: skip
    out = tmp_path / "exp/plain_final"
    assert main(["export", "--model", str(model), "--batch-size", "3", "--data", str(data), "--out", str(out)]) == 0
    spec = json.loads((out / "system.json").read_text())
    assert spec["kind"] == "decoder" and spec["decoders"] == ["decoder"] and spec["search"]["batch_size"] == 3
    system = tmp_path / "moved" / "plain"
    shutil.move(out, system)
    want = {h.id: h.text for h in read_hyps(scored)}
    capsys.readouterr()
    files = [str(data / "audio" / f"{i}.wav") for i in want]
    assert main(["transcribe", "--model", str(system), *files]) == 0
    assert {Path(p).stem: t for p, t in (line.split("\t") for line in capsys.readouterr().out.splitlines())} == want
    import pipeline

    recognizer = pipeline.load_recognizer(system)
    assert recognizer.batch_size == 3 and pipeline.transcribe(files, recognizer) == list(want.values())


def test_export_refuses_changed_sources_and_unsafe_outputs_and_touches_no_input(rescored, tmp_path, capsys):
    run, data = rescored / "exp/sys/dev", rescored / "data"
    before = tree_digest(rescored, skip=rescored / "exp/final")
    base = ["export", "--from-rescore", str(run), "--data", str(data)]
    assert main([*base, "--out", str(data / "system")]) == 2  # inside an input
    assert "lies inside the input" in capsys.readouterr().err
    users = tmp_path / "mine"
    (users / "notes.txt").parent.mkdir()
    (users / "notes.txt").write_text("keep")
    assert main([*base, "--out", str(users)]) == 2  # a folder the toolkit did not make
    assert (users / "notes.txt").read_text() == "keep"
    # a model retrained after the rescore run that tuned the weights with it
    changed = tmp_path / "changed_run"
    changed.mkdir()
    record = json.loads((run / "rescore.json").read_text())
    record["inputs"]["ctc"] = "0" * 16
    (changed / "rescore.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["export", "--from-rescore", str(changed), "--data", str(data), "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its ctc" in err[0] and "changed after this rescore run" in err[0]
    # exported again over its own output: replaced
    assert main([*base, "--out", str(rescored / "exp/final")]) == 0
    assert tree_digest(rescored, skip=rescored / "exp/final") == before


def test_loading_refuses_an_unknown_schema_version_a_missing_part_and_search_options(rescored, tmp_path, capsys):
    from pipeline.decode.recognizer import SearchOptions
    from pipeline.system.recognizer import load_any
    from pipeline.system.spec import SystemSpecError

    system = tmp_path / "sys"
    system.mkdir()
    spec = json.loads((rescored / "exp/final/system.json").read_text())
    (system / "system.json").write_text(json.dumps({**spec, "schema_version": 2}))
    clip = str(rescored / "data/audio/dev005.wav")
    assert main(["transcribe", "--model", str(system), clip]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "system schema version 2 is not supported" in err[0] and str(system) in err[0]
    (system / "system.json").write_text(json.dumps(spec))
    with pytest.raises(SystemSpecError, match="names decoder, ctc, lm, lm/char.arpa, weights.json"):
        load_any(system)
    with pytest.raises(ValueError, match="drop --beams, --lm"):
        load_any(rescored / "exp/final", SearchOptions(beams=4, lm="x"))


def test_the_base_model_is_followed_through_soups_and_self_training(tmp_path):
    from pipeline.system.card import base_model

    soup, st = tmp_path / "soup", tmp_path / "st"
    for folder, base in ((soup, "whisper-base"), (st, str(soup))):
        folder.mkdir()
        (folder / "asr_adapt.json").write_text(json.dumps({"base_model": base}))
    assert base_model(st) == "openai/whisper-base"
    (soup / "asr_adapt.json").write_text(json.dumps({"language": "sa"}))  # a local start that records none
    assert base_model(st) is None


def test_a_rescored_systems_speed_rungs_are_its_decoders_fused_beam_and_greedy(rescored, caplog):
    import soundfile as sf

    from pipeline.decode.fusion import Fusion
    from pipeline.decode.recognizer import SearchOptions, load_recognizer
    from pipeline.system.recognizer import load_with_rung
    from pipeline.system.spec import read_spec

    system = rescored / "exp/final"
    spec = read_spec(system)
    test = [json.loads(line) for line in (rescored / "data/test.jsonl").read_text().splitlines()]
    waves = [sf.read(rescored / "data" / u["audio"], dtype="float32")[0] for u in test]
    f, decoder = spec.search.fusion, system / "decoder"
    fusion = Fusion(system / "lm/char.arpa", f.weight, f.bonus, f.top_k, f.length_penalty, f.max_rate)
    fused = SearchOptions(language=spec.search.language_token, beams=3, fusion=fusion)
    balanced, rung = load_with_rung(system, speed="balanced")
    assert balanced.kind == "whisper+char-lm" and rung.describe() == "speed balanced: beam 3 + character-LM fusion " \
        "of decoder/" and not rung.fallback  # fmt: skip
    assert balanced.transcribe(waves) == load_recognizer(decoder, fused, fallback_language="sa").transcribe(waves)
    greedy = SearchOptions(language=spec.search.language_token)
    fast, rung = load_with_rung(system, speed="fast")  # no ct2/: our greedy, as it should be
    assert fast.transcribe(waves) == load_recognizer(decoder, greedy, fallback_language="sa").transcribe(waves)
    assert rung.describe() == "speed fast: greedy of decoder/ (this toolkit's)" and not rung.fallback
    best, rung = load_with_rung(system)
    assert best.kind == "rescored" and rung.describe() == "speed best: the system's own search: 1 decoder(s)' " \
        "beam-3 3-best with character-LM fusion + 4 CTC proposals, rescored"  # fmt: skip


def test_a_rescored_system_exported_with_its_ctranslate2_decoder_runs_fast_through_it(rescored, tmp_path, capsys):
    import soundfile as sf

    from pipeline.decode.recognizer import SearchOptions, load_recognizer
    from pipeline.system.recognizer import load_with_rung

    out = tmp_path / "final_ct2"
    assert main(["export", "--from-rescore", str(rescored / "exp/sys/dev"), "--data", str(rescored / "data"),
                 "--with-ct2", "float32", "--out", str(out)]) == 0  # fmt: skip
    spec = json.loads((out / "system.json").read_text())
    assert spec["ct2"] == "ct2" and "`ct2/`" in (out / "README.md").read_text()
    assert json.loads((out / "ct2/ct2_export.json").read_text())["source"] == "decoder"  # no path of the build
    test = [json.loads(line) for line in (rescored / "data/test.jsonl").read_text().splitlines()]
    waves = [sf.read(rescored / "data" / u["audio"], dtype="float32")[0] for u in test]
    fast, rung = load_with_rung(out, speed="fast")
    greedy = SearchOptions(language=spec["search"]["language_token"])
    assert rung.describe() == "speed fast: greedy, CTranslate2 float32 (ct2/)"
    assert fast.transcribe(waves) == load_recognizer(out / "decoder", greedy, fallback_language="sa").transcribe(waves)


def test_a_system_exported_with_tail_silence_transcribes_as_its_decode_with_it(rescored, tmp_path, capsys):
    data, model = rescored / "data", rescored / "exp/whisper/best"
    hyps = {}
    for tail in ("0", "0.5"):
        out = tmp_path / f"exp/tail{tail}/test/hyps.jsonl"
        assert main(["decode", "--model", str(model), "--manifest", str(data / "test.jsonl"), "--out", str(out),
                     "--batch-size", "3", "--tail-silence", tail]) == 0  # fmt: skip
        hyps[tail] = {h.id: h.text for h in read_hyps(out)}
    assert hyps["0"] != hyps["0.5"]  # the model hears the tail: the system must hear it too
    system = tmp_path / "exp/tail_final"
    assert main(["export", "--model", str(model), "--batch-size", "3", "--tail-silence", "0.5", "--data", str(data),
                 "--out", str(system)]) == 0  # fmt: skip
    assert json.loads((system / "system.json").read_text())["search"]["tail_silence_s"] == 0.5
    files = [str(data / "audio" / f"{i}.wav") for i in hyps["0.5"]]
    capsys.readouterr()
    assert main(["transcribe", "--model", str(system), *files]) == 0
    got = {Path(p).stem: t for p, t in (line.split("\t") for line in capsys.readouterr().out.splitlines())}
    assert got == hyps["0.5"]
    assert main(["transcribe", "--model", str(system), "--tail-silence", "1", *files]) == 2  # the system's own
    assert "--tail-silence" in capsys.readouterr().err
    assert main(["export", "--model", str(model), "--tail-silence", "9", "--data", str(data),
                 "--out", str(tmp_path / "exp/bad")]) == 2  # fmt: skip


def test_tail_silence_is_appended_to_every_clip_and_range_checked():
    import numpy as np

    from pipeline.decode.recognizer import Recognizer, with_tail_silence

    heard = []
    plain = Recognizer("fake", "fake", lambda waves: [(str(len(w)), 0) for w in heard.extend(waves) or waves])
    assert with_tail_silence(plain, 0) is plain
    padded = with_tail_silence(plain, 0.25)
    assert padded([np.ones(100), np.ones(7)]) == [("4100", 0), ("4007", 0)]
    assert not heard[0][100:].any() and heard[0][:100].all()
    with pytest.raises(ValueError, match="between 0 and"):
        with_tail_silence(plain, -1)

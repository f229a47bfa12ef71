"""Bad input to the commands after ``prepare``: one error line naming the file (and line or key), no
traceback, nothing lost (unreadable clips are rejects), and a killed run's torn line does not spoil the next."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from dp_fixtures import riff_wav
from tree_fixtures import tree_digest

from data_prep.manifest import Source, Utterance, read_rejects, write_jsonl
from pipeline.cli import main
from pipeline.decode.hyps import Hypothesis, write_hyps
from pipeline.decode.manifest import decode_manifest
from pipeline.decode.resumable import partial_path, read_records, run_resumable


def _utt(uid: str, text: str = "ab", audio: str = "") -> Utterance:
    return Utterance(id=uid, audio=audio or f"{uid}.wav", duration=0.5, text=text, text_raw=text, language="sa",
                     speaker="s", source=Source("corpus.tsv", 1), split="dev")  # fmt: skip


def _manifest(path: Path, utts: list[Utterance], extra: list[str] = ()) -> Path:
    write_jsonl(path, utts)
    if extra:
        with open(path, "a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in extra)
    return path


def _line(**changes) -> str:
    return json.dumps({**_utt("bad").to_json(), **changes})


@pytest.mark.parametrize("line, message", [
    (_line(duration="abc"), "field 'duration' must be a finite number"),
    (_line(text=5), "field 'text' must be a string"),
    (_line(flags="silent"), "field 'flags' must be a list of strings, got 'silent'"),
    (json.dumps({k: v for k, v in _utt("bad").to_json().items() if k != "text"}), "missing field(s) 'text'"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps(_utt("u0").to_json()), "duplicate utterance id 'u0' (first at line 1)"),
])  # fmt: skip
def test_score_names_the_manifest_line_of_a_bad_record(tmp_path, capsys, line, message):
    manifest = _manifest(tmp_path / "dev.jsonl", [_utt("u0"), _utt("u1")], [line])
    write_hyps(tmp_path / "hyps.jsonl", [Hypothesis("u0", "ab")])
    rc = main(["score", "--manifest", str(manifest), "--hyps", str(tmp_path / "hyps.jsonl"), "--lang", "sa",
               "--system", "s", "--kind", "other", "--bootstrap", "10"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc != 0 and f"{manifest}:3: {message}" in err and "Traceback" not in err


def test_score_rejects_a_hypothesis_with_a_wrong_type(tmp_path, capsys):
    manifest = _manifest(tmp_path / "dev.jsonl", [_utt("u0")])
    (tmp_path / "hyps.jsonl").write_text('{"id": "u0", "text": "ab", "seconds": "x"}\n', encoding="utf-8")
    rc = main(["score", "--manifest", str(manifest), "--hyps", str(tmp_path / "hyps.jsonl"), "--lang", "sa",
               "--system", "s", "--kind", "other", "--bootstrap", "10"])  # fmt: skip
    assert rc == 1 and f"{tmp_path / 'hyps.jsonl'}:1: field 'seconds'" in capsys.readouterr().err


def test_missing_manifest_is_one_error_line(tmp_path, capsys):
    rc = main(["lm", "--train", str(tmp_path / "nowhere.jsonl"), "--out", str(tmp_path / "lm")])
    assert rc == 2 and capsys.readouterr().err.strip() == f"lm: error: {tmp_path / 'nowhere.jsonl'}: manifest not found"


def test_lm_refuses_a_train_manifest_without_text_and_bad_orders(tmp_path, capsys):
    train = _manifest(tmp_path / "train.jsonl", [_utt("u0", text=" ").replace(split="train")])
    assert main(["lm", "--train", str(train), "--out", str(tmp_path / "lm")]) == 2
    assert f"{train}: no utterance with a transcript" in capsys.readouterr().err
    assert not (tmp_path / "lm").exists()
    for option in ("--order=0", "--char-order=1"):
        with pytest.raises(SystemExit):  # argparse: a usage error before any work
            main(["lm", "--train", str(train), "--out", str(tmp_path / "lm"), option])
        assert "expected an n-gram order >= 2" in capsys.readouterr().err


def _wav(path: Path) -> None:
    sf.write(path, np.zeros(8000, np.float32) + 0.1, 16000)


def test_decode_lists_unreadable_clips_in_a_rejects_file(tmp_path):
    from pipeline.decode.resumable import rejects_path

    _wav(tmp_path / "u0.wav")
    (tmp_path / "u2.wav").write_bytes(b"not audio")
    utts = [_utt("u0"), _utt("u1"), _utt("u2")]
    out = tmp_path / "exp" / "hyps.jsonl"
    sources = {u.id: Source("dev.jsonl", i + 1) for i, u in enumerate(utts)}
    hyps, errors = decode_manifest(utts, tmp_path, lambda waves: [("ab", 1)] * len(waves), out, sources=sources)
    assert [h.id for h in hyps] == ["u0"]
    assert errors[0].startswith("dev.jsonl:2: u1: ")
    rejects = read_rejects(rejects_path(out))
    assert [(r.id, r.reason, str(r.source)) for r in rejects] == [
        ("u1", "missing_audio", "dev.jsonl:2"), ("u2", "unreadable_audio", "dev.jsonl:3")]  # fmt: skip
    _wav(tmp_path / "u1.wav")  # fixed audio: the rerun decodes it and the stale rejects go
    (tmp_path / "u2.wav").unlink()
    _wav(tmp_path / "u2.wav")
    hyps, errors = decode_manifest(utts, tmp_path, lambda waves: [("ab", 1)] * len(waves), out)
    assert len(hyps) == 3 and not errors and not rejects_path(out).exists()


@pytest.mark.parametrize("data, detail", [
    (riff_wav(sr=0), "sample rate 0 Hz is not a plausible audio rate"),
    (riff_wav(sr=2**31 - 1), "sample rate 2147483647 Hz is not a plausible audio rate"),
    (riff_wav(channels=0), "Channel count is zero"),
    (riff_wav(samples=np.full(8000, np.nan), float32=True), "8000 NaN/infinite samples"),
], ids=["rate0", "rate2**31-1", "no_channels", "nan"])  # fmt: skip
def test_decode_rejects_a_clip_with_a_damaged_header_and_decodes_the_others(tmp_path, data, detail):
    # a rate of 0 was a traceback (soxr's ValueError) that ended the decode; NaN samples went to the model
    from pipeline.decode.resumable import rejects_path

    _wav(tmp_path / "u0.wav")
    (tmp_path / "u1.wav").write_bytes(data)
    _wav(tmp_path / "u2.wav")
    before = tree_digest(tmp_path)
    utts = [_utt("u0"), _utt("u1"), _utt("u2")]
    out = tmp_path / "exp" / "hyps.jsonl"
    sources = {u.id: Source("dev.jsonl", i + 1) for i, u in enumerate(utts)}
    hyps, errors = decode_manifest(utts, tmp_path, lambda waves: [("ab", 1)] * len(waves), out, sources=sources)
    assert [h.id for h in hyps] == ["u0", "u2"]
    assert len(errors) == 1 and errors[0].startswith(f"dev.jsonl:2: u1: {tmp_path / 'u1.wav'}: ") and detail in errors[0]
    (r,) = read_rejects(rejects_path(out))
    assert (r.id, r.reason, str(r.source)) == ("u1", "unreadable_audio", "dev.jsonl:2") and detail in r.detail
    assert tree_digest(tmp_path, skip=tmp_path / "exp") == before


def test_rerun_after_a_torn_partial_line_keeps_every_record_readable(tmp_path):
    for i in range(3):
        _wav(tmp_path / f"u{i}.wav")
    utts = [_utt(f"u{i}") for i in range(3)]
    out = tmp_path / "hyps.jsonl"
    done_line = json.dumps(Hypothesis("u0", "ab").to_json())
    partial_path(out).write_text(done_line + '\n{"id": "u1", "te', encoding="utf-8")  # killed mid-write

    def work(batch, waves):
        if batch[0].id == "u2":
            raise KeyboardInterrupt  # killed again, after u1's batch was written
        return [Hypothesis(u.id, "ba") for u in batch]

    done = read_records(partial_path(out), Hypothesis.from_json)
    with pytest.raises(KeyboardInterrupt):
        run_resumable(utts, tmp_path, out, work, write_hyps, done=done, batch_size=1, desc="t")
    lines = partial_path(out).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["u0", "u1"]  # u1 not glued to the torn line


def test_decode_refuses_an_output_it_cannot_write_before_loading_a_model(tmp_path, capsys):
    manifest = _manifest(tmp_path / "dev.jsonl", [_utt("u0")])
    rc = main(["decode", "--model", str(tmp_path / "no_model"), "--manifest", str(manifest),
               "--out", str(manifest / "hyps.jsonl")])  # fmt: skip
    assert rc == 2 and f"{manifest}: is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "hyps.jsonl").mkdir()
    rc = main(["decode", "--model", str(tmp_path / "no_model"), "--manifest", str(manifest),
               "--out", str(tmp_path / "hyps.jsonl")])  # fmt: skip
    assert rc == 2 and "is a directory" in capsys.readouterr().err


def test_rescore_weights_must_be_finite(tmp_path):
    from pipeline.rescore.combine import load_weights

    path = tmp_path / "weights.json"
    path.write_text('{"ctc_weight": NaN, "lm_weight": 0, "word_bonus": 0}', encoding="utf-8")
    with pytest.raises(ValueError, match="ctc_weight not finite"):
        load_weights(path)
    path.write_text('{"ctc_weight": 0, "lm_weight": 0, "word_bonus": 0, "beam_pick": "false"}', encoding="utf-8")
    with pytest.raises(ValueError, match="beam_pick must be true or false"):
        load_weights(path)


def test_pseudo_label_names_a_repeated_hypothesis_and_counts_unused_ones(tmp_path, capsys):
    labeled = _manifest(tmp_path / "train.jsonl", [_utt(f"t{i}", "ab ba").replace(split="train") for i in range(3)])
    unlabeled = _manifest(tmp_path / "dev.jsonl", [_utt("u0")])
    write_hyps(tmp_path / "a.jsonl", [Hypothesis("u0", "ab"), Hypothesis("other", "ab")])
    write_hyps(tmp_path / "b.jsonl", [Hypothesis("u0", "ba")])
    base = ["pseudo-label", "--labeled", str(labeled), "--unlabeled", str(unlabeled), "--lang", "sa"]
    rc = main([*base, "--hyps", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert f"{tmp_path / 'b.jsonl'}:1: duplicate hypothesis id 'u0' (first at {tmp_path / 'a.jsonl'}:1)" in (
        capsys.readouterr().err)
    assert main([*base, "--hyps", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "pseudo_label.json").read_text(encoding="utf-8"))
    assert summary["unused_hyps"] == 1 and summary["unused_hyps_first"] == [f"{tmp_path / 'a.jsonl'}:2"]
    assert "1 hypotheses have no utterance" in capsys.readouterr().err


def test_soup_names_a_corrupt_weights_file(tmp_path, capsys):
    from pipeline.testing.tiny import save_tiny_whisper

    a, b = save_tiny_whisper(tmp_path / "a", seed=0), save_tiny_whisper(tmp_path / "b", seed=1)
    weights = b / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert main(["soup", "--models", str(a), str(b), "--out", str(tmp_path / "soup")]) == 2
    assert f"{weights}: not a readable safetensors file" in capsys.readouterr().err


def test_train_names_the_config_key_of_a_missing_manifest(tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"data:\n  lang: sa\n  manifests_dir: {tmp_path / 'nowhere'}\ntrain:\n  max_steps: 1\n",
                   encoding="utf-8")  # fmt: skip
    assert main(["train", "--config", str(cfg)]) == 2
    assert f"{cfg}: data.manifests_dir: train manifest {tmp_path / 'nowhere' / 'train.jsonl'} not found" in (
        capsys.readouterr().err)
    cfg.write_text("data:\n  lang: sa\ntrain:\n  max_steps: 1\n", encoding="utf-8")
    assert main(["train", "--config", str(cfg)]) == 2
    assert f"{cfg}: data.train and data.manifests_dir are both empty" in capsys.readouterr().err


def test_config_override_of_a_made_up_section_names_the_override(tmp_path):
    from pipeline.config import ConfigError, load_config

    cfg = tmp_path / "config.yaml"
    cfg.write_text("data:\n  lang: sa\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\(override nosection\.x=1\): unknown key 'nosection'"):
        load_config(cfg, ["nosection.x=1"])


def test_a_repeated_id_is_an_error_to_decode_but_weights_a_clip_in_training(tmp_path):
    from data_prep.manifest import ManifestError, read_manifest
    from pipeline.train.data import load_examples

    path = _manifest(tmp_path / "train.jsonl", [_utt("a"), _utt("b"), _utt("a")])
    with pytest.raises(ManifestError, match=r"train.jsonl:3: duplicate utterance id 'a' \(first at line 1\)"):
        read_manifest(path)
    assert [u.id for u in read_manifest(path, unique_ids=False)] == ["a", "b", "a"]
    examples, _ = load_examples(path, lambda text: ([1, 2], 2))
    assert len(examples) == 3  # the repeated line is a second draw of its clip (oversampling)


@pytest.fixture(scope="module")
def cut_models(tmp_path_factory):
    """A tiny Whisper, a Whisper-encoder CTC checkpoint and a Whisper with a joint CTC head (``ctc/``), each
    with one weights file cut short (a copy interrupted, a full disk), a Whisper whose config.json is cut
    short; a clip, its manifest and a char vocab."""
    from ctc_fixtures import tiny_whisper_encoder, vocab

    from pipeline.models.ctc import WhisperEncoderCTC
    from pipeline.models.ctc_checkpoint import save_ctc_model
    from pipeline.testing.tiny import save_tiny_whisper, write_tiny_char_vocab, write_tiny_corpus

    root = tmp_path_factory.mktemp("cut_models")
    whisper = save_tiny_whisper(root / "whisper")
    enc, fe = tiny_whisper_encoder()
    ctc = save_ctc_model(WhisperEncoderCTC(enc, vocab()), root / "ctc", fe)
    joint = save_tiny_whisper(root / "joint")
    save_ctc_model(WhisperEncoderCTC(enc, vocab()), joint / "ctc", fe)
    data = write_tiny_corpus(root / "data", n_train=2, n_dev=1)
    write_tiny_char_vocab(data)
    config = save_tiny_whisper(root / "config_cut") / "config.json"
    for cut in (whisper / "model.safetensors", ctc / "model.safetensors", joint / "ctc" / "model.safetensors", config):
        cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return root


def _train_config(root: Path, model: Path, **model_keys) -> Path:
    config = root / f"train_{model.name}_{len(model_keys)}.yaml"
    train = {"max_steps": 1, "threads": 1, "ctc_weight": 0.3} if not model_keys else {"max_steps": 1, "threads": 1}
    config.write_text(json.dumps({"data": {"lang": "sa", "manifests_dir": str(root / "data")},
                                  "model": {"name": str(model), **model_keys}, "train": train,
                                  "output_dir": str(root / "exp")}), encoding="utf-8")  # fmt: skip
    return config


@pytest.mark.parametrize("command, weights", [
    (["decode", "--model", "{root}/whisper", "--manifest", "{root}/data/dev.jsonl", "--out", "{root}/exp/h.jsonl"],
     "whisper/model.safetensors"),
    (["decode", "--model", "{root}/ctc", "--manifest", "{root}/data/dev.jsonl", "--out", "{root}/exp/h.jsonl"],
     "ctc/model.safetensors"),
    (["transcribe", "--model", "{root}/whisper", "{root}/data/clips/dev_0.wav"], "whisper/model.safetensors"),
    (["rescore", "--model", "{root}/whisper", "--manifest", "{root}/data/dev.jsonl", "--out", "{root}/exp/h.jsonl"],
     "whisper/model.safetensors"),
    (["rescore", "--model", "{root}/joint", "--ctc", "{root}/ctc", "--manifest", "{root}/data/dev.jsonl", "--out",
      "{root}/exp/h.jsonl"], "ctc/model.safetensors"),
    (["train", "--config", "{whisper_config}"], "whisper/model.safetensors"),
    (["train", "--config", "{joint_config}"], "joint/ctc/model.safetensors"),
    (["train", "--config", "{ctc_config}"], "ctc/model.safetensors"),
], ids=["decode", "decode-ctc", "transcribe", "rescore", "rescore-ctc", "train", "train-joint-ctc", "train-ctc"])  # fmt: skip
def test_a_model_cut_short_is_one_error_line_naming_the_file(cut_models, capsys, command, weights):
    # it was safetensors' traceback ("Error while deserializing header: ..."), naming no file
    root = cut_models
    names = {"root": root, "whisper_config": _train_config(root, root / "whisper"),
             "joint_config": _train_config(root, root / "joint"),
             "ctc_config": _train_config(root, root / "ctc", type="ctc")}
    before = tree_digest(root, skip=root / "exp")
    assert main([arg.format(**names) for arg in command]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # rescore prints its own errors, without the command's name
    assert re.match(rf"({command[0]}: )?error: {re.escape(str(root / weights))}: not a readable safetensors file \(",
                    err[-1])
    assert not any("Traceback" in line for line in err)
    assert tree_digest(root, skip=root / "exp") == before


def test_a_model_config_cut_short_is_one_error_line_naming_it(cut_models, capsys):
    # it passed for "neither a transformers model nor a CT2 model", a traceback in decode
    root = cut_models
    assert main(["decode", "--model", str(root / "config_cut"), "--manifest", str(root / "data" / "dev.jsonl"),
                 "--out", str(root / "exp" / "h.jsonl")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"decode: error: {root / 'config_cut' / 'config.json'}: not valid JSON (")

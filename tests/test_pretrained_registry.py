"""Model resolution: local dirs, CT2 conversion with an atomic content-keyed cache, offline hub ids, CLI."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("ctranslate2")

from test_pretrained_whisper_convert import make_tiny_ct2, make_tiny_whisper  # noqa: E402

from pipeline.pretrained import registry  # noqa: E402
from pipeline.pretrained.registry import ModelNotAvailable, list_bundled, resolve_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    hf = make_tiny_whisper(tmp_path_factory.mktemp("hf"))
    ct2 = make_tiny_ct2(hf, tmp_path_factory.mktemp("ct2") / "tiny-ct2", "float16")
    return hf, ct2


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASR_ADAPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("ASR_ADAPT_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert registry.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("ASR_ADAPT_CACHE")
    assert registry.cache_dir() == tmp_path / "x" / "asr-adapt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert registry.cache_dir().parts[-2:] == (".cache", "asr-adapt")


def test_transformers_dir_is_used_as_is(tiny_dirs, cache):
    hf, _ = tiny_dirs
    assert resolve_model(hf) == hf
    assert not cache.exists()


def test_ct2_dir_is_converted_once(tiny_dirs, cache, monkeypatch):
    _, ct2 = tiny_dirs
    out = resolve_model(str(ct2))
    assert out.parent == cache and out.name.startswith("tiny-ct2-")
    assert registry.is_transformers_dir(out)
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "conversion.json"} <= {
        p.name for p in out.iterdir()
    }
    assert [p.name for p in cache.iterdir()] == [out.name]  # no temp folder left behind

    def boom(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr("pipeline.pretrained.whisper_convert.convert_ct2_whisper", boom)
    assert resolve_model(str(ct2)) == out


def test_cache_key_follows_content(tiny_dirs, cache, tmp_path):
    import shutil

    _, ct2 = tiny_dirs
    copy = tmp_path / "tiny-ct2"
    shutil.copytree(ct2, copy)
    first = resolve_model(copy)
    assert resolve_model(ct2) == first  # same bytes elsewhere: same cache entry
    cfg = copy / "config.json"
    cfg.write_text(cfg.read_text().replace("[", "[ ", 1))
    assert resolve_model(copy) != first


def test_failed_conversion_leaves_nothing(tiny_dirs, cache, monkeypatch):
    _, ct2 = tiny_dirs

    def fail(self, *a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("transformers.WhisperProcessor.save_pretrained", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        resolve_model(ct2)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_offline_hub_id_names_bundled_alternatives(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable) as e:
        resolve_model("openai/whisper-small")
    msg = str(e.value)
    assert "openai/whisper-small" in msg and "offline" in msg.lower()
    assert "whisper-base" in msg and "whisper-tiny.en" in msg


def test_missing_path_and_file(tmp_path, cache):
    with pytest.raises(ModelNotAvailable, match="no such directory"):
        resolve_model(str(tmp_path / "nope"))
    f = tmp_path / "model.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelNotAvailable, match="is a file"):
        resolve_model(f)


def test_bundled_not_installed_says_which_extra(monkeypatch, cache):
    fake = registry.BundledModel("whisper-x", "test", ("no_such_package_xyz",), "data", ("no-such-package",))
    monkeypatch.setitem(registry.BUNDLED, "whisper-x", fake)
    assert fake.installed is False
    with pytest.raises(ModelNotAvailable, match=r"no-such-package.*asr-adapt\[models\]"):
        resolve_model("whisper-x")


def test_list_bundled_names():
    names = {m.name for m in list_bundled()}
    assert {"whisper-base", "whisper-tiny.en"} <= names


def test_convert_cli_out_dir(tiny_dirs, tmp_path, capsys, cache):
    from pipeline.cli import main

    _, ct2 = tiny_dirs
    out = tmp_path / "converted"
    assert main(["convert", "--model", str(ct2), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert registry.is_transformers_dir(out)
    # Idempotent, and a non-model folder is never overwritten.
    assert main(["convert", "--model", str(ct2), "--out", str(out)]) == 0
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "keep.txt").write_text("x")
    assert main(["convert", "--model", str(ct2), "--out", str(junk)]) == 1
    assert "exists and is not a converted model" in capsys.readouterr().err
    assert main(["convert", "--model", str(ct2)]) == 0
    assert capsys.readouterr().out.strip().startswith(str(cache))

"""The CT2 model.bin reader against files written by hand from the documented format."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from pipeline.pretrained.ct2_reader import (
    CT2FormatError,
    dequantize,
    model_bin_parts,
    read_ct2_dir,
    read_model_bin,
    read_vocabulary,
)

_TYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4, "bfloat16": 5}


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(path, variables: dict, aliases: dict | None = None, version: int = 6, spec="WhisperSpec") -> bytes:
    """Serialize ``name -> (ct2 dtype, array)`` as documented in ct2_reader; returns the bytes."""
    out = struct.pack("<I", version) + _string(spec) + struct.pack("<I", 3) + struct.pack("<I", len(variables))
    for name, (dtype, arr) in variables.items():
        arr = np.asarray(arr)  # (ascontiguousarray would turn scalars into 1-element arrays)
        out += _string(name) + struct.pack("<B", arr.ndim) + b"".join(struct.pack("<I", d) for d in arr.shape)
        data = arr.tobytes()
        out += struct.pack("<B", _TYPE_IDS[dtype]) + struct.pack("<I", len(data)) + data
    aliases = aliases or {}
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases.items():
        out += _string(alias) + _string(target)
    path.write_bytes(out)
    return out


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (truncation; values chosen to be exact)."""
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


@pytest.fixture
def sample_vars():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    return {
        "decoder/activation": ("int8", np.array(3, dtype=np.int8)),
        "decoder/embeddings/weight": ("float16", w.astype(np.float16)),
        "encoder/conv1/weight": ("float32", rng.normal(size=(2, 3, 3)).astype(np.float32)),
        "encoder/num_heads": ("int16", np.array(8, dtype=np.int16)),
        "misc/int32": ("int32", np.arange(5, dtype=np.int32)),
        "misc/bf16": ("bfloat16", _bf16(np.array([1.5, -2.0, 0.25], dtype=np.float32))),
    }


def test_reads_every_dtype_and_resolves_aliases(tmp_path, sample_vars):
    write_model_bin(tmp_path / "model.bin", sample_vars, {"decoder/projection/weight": "decoder/embeddings/weight"})
    m = read_model_bin([tmp_path / "model.bin"])
    assert (m.spec, m.revision, m.binary_version) == ("WhisperSpec", 3, 6)
    for name, (dtype, arr) in sample_vars.items():
        assert m.dtypes[name] == dtype
        assert m.variables[name].shape == arr.shape
        np.testing.assert_array_equal(m.variables[name], arr)
    assert m.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert m.variables["decoder/projection/weight"] is m.variables["decoder/embeddings/weight"]
    np.testing.assert_array_equal(dequantize(m, "misc/bf16"), [1.5, -2.0, 0.25])
    assert dequantize(m, "decoder/embeddings/weight").dtype == np.float32


@pytest.mark.parametrize("cut", [1, 7, 30, -3])
def test_split_parts_equal_whole_file(tmp_path, sample_vars, cut):
    data = write_model_bin(tmp_path / "whole.bin", sample_vars)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    # Cut anywhere, even inside a header string: the reader must not care where.
    (a / "model.bin.part1").write_bytes(data[:cut])
    (b / "model.bin.part2").write_bytes(data[cut:])
    (a / "config.json").write_text(json.dumps({"lang_ids": [1]}))
    parts = model_bin_parts(a, [b])
    assert [p.name for p in parts] == ["model.bin.part1", "model.bin.part2"]
    whole = read_model_bin([tmp_path / "whole.bin"])
    split = read_ct2_dir(a, [b])
    assert split.config == {"lang_ids": [1]}
    for name in whole.variables:
        np.testing.assert_array_equal(split.variables[name], whole.variables[name])


def test_missing_part_is_reported(tmp_path, sample_vars):
    data = write_model_bin(tmp_path / "whole.bin", sample_vars)
    (tmp_path / "model.bin.part2").write_bytes(data[10:])
    with pytest.raises(FileNotFoundError, match=r"missing part\(s\) \[1\]"):
        model_bin_parts(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no model.bin"):
        model_bin_parts(empty)


def test_truncated_file_names_file_and_variable(tmp_path, sample_vars):
    data = write_model_bin(tmp_path / "model.bin", sample_vars)
    (tmp_path / "model.bin").write_bytes(data[:-40])
    with pytest.raises(CT2FormatError, match=r"model\.bin: truncated at byte \d+"):
        read_model_bin([tmp_path / "model.bin"])


def test_trailing_garbage_and_bad_version_are_refused(tmp_path, sample_vars):
    data = write_model_bin(tmp_path / "model.bin", sample_vars)
    (tmp_path / "model.bin").write_bytes(data + b"xx")
    with pytest.raises(CT2FormatError, match="unexpected bytes"):
        read_model_bin([tmp_path / "model.bin"])
    write_model_bin(tmp_path / "model.bin", sample_vars, version=3)
    with pytest.raises(CT2FormatError, match="binary version 3 is not supported"):
        read_model_bin([tmp_path / "model.bin"])


def test_size_mismatch_is_refused(tmp_path):
    arr = np.zeros((2, 2), dtype=np.float32)
    data = bytearray(write_model_bin(tmp_path / "model.bin", {"x": ("float32", arr)}))
    # Declare 4 fewer bytes than the shape needs: the byte-count field sits right before the data.
    pos = len(data) - 4 - arr.nbytes - 4
    struct.pack_into("<I", data, pos, arr.nbytes - 4)
    (tmp_path / "model.bin").write_bytes(bytes(data))
    with pytest.raises(CT2FormatError, match="declares 12 bytes, expected 16"):
        read_model_bin([tmp_path / "model.bin"])


def test_int8_and_int16_dequantization(tmp_path):
    w = np.array([[0.5, -1.0, 0.25], [2.0, 0.0, -0.5]], dtype=np.float32)
    scale8 = 127.0 / np.abs(w).max(axis=1)
    q8 = np.rint(w * scale8[:, None]).astype(np.int8)
    scale16 = np.float32(2**10 / np.abs(w).max())
    q16 = np.rint(w * scale16).astype(np.int16)
    write_model_bin(
        tmp_path / "model.bin",
        {
            "a/weight": ("int8", q8),
            "a/weight_scale": ("float32", scale8.astype(np.float32)),
            "b/weight": ("int16", q16),
            "b/weight_scale": ("float32", np.array(scale16)),
        },
        {"c/weight": "a/weight"},
    )
    m = read_model_bin([tmp_path / "model.bin"])
    np.testing.assert_allclose(dequantize(m, "a/weight"), w, atol=0.5 / scale8.min())
    np.testing.assert_allclose(dequantize(m, "c/weight"), w, atol=0.5 / scale8.min())  # alias uses target's scale
    np.testing.assert_allclose(dequantize(m, "b/weight"), w, atol=0.5 / scale16)


def test_vocabulary_txt_keeps_odd_characters(tmp_path):
    (tmp_path / "vocabulary.txt").write_text("a\nĠb\n<|en|>\n\u2028x\n", encoding="utf-8")
    assert read_vocabulary(tmp_path) == ["a", "Ġb", "<|en|>", "\u2028x"]


@pytest.mark.parametrize(
    "name,layers,vocab,d_model",
    [("whisper-base", 6, 51865, 512), ("whisper-tiny.en", 4, 51864, 384)],
)
def test_reads_the_bundled_packages(name, layers, vocab, d_model):
    from pipeline.pretrained.registry import BUNDLED

    bundled = BUNDLED[name]
    if not bundled.installed:
        pytest.skip(f"{name} packages not installed")
    dirs = bundled.package_dirs()
    m = read_ct2_dir(dirs[0], dirs[1:])
    assert (m.spec, m.revision, m.binary_version) == ("WhisperSpec", 3, 6)
    assert m.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert m.variables["decoder/embeddings/weight"].shape == (vocab, d_model)
    assert m.variables["encoder/conv1/weight"].shape == (d_model, 80, 3)
    assert int(m.variables["decoder/activation"]) == 3  # GELU
    assert int(m.variables["decoder/scale_embeddings"]) == 0
    assert {n.split("/")[1] for n in m.variables if n.startswith("encoder/layer_") and "norm" not in n} == {
        f"layer_{i}" for i in range(layers)
    }
    assert {m.dtypes[n] for n in m.variables if n.endswith("/weight")} == {"float16"}
    assert len(m.vocabulary) == vocab
    assert set(m.config) >= {"suppress_ids", "suppress_ids_begin", "lang_ids", "alignment_heads"}

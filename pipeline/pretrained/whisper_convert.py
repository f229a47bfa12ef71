"""Convert a CTranslate2 Whisper model into a transformers ``WhisperForConditionalGeneration`` directory.

The mapping is the inverse of CTranslate2's own ``TransformersConverter``:

======================================================  =====================================================
CT2 variable                                            transformers parameter
======================================================  =====================================================
encoder/conv{1,2}/{weight,bias}                         model.encoder.conv{1,2}.{weight,bias}
{enc,dec}oder/position_encodings/encodings              model.{enc,dec}oder.embed_positions.weight
{enc,dec}oder/layer_norm/{gamma,beta}                   model.{enc,dec}oder.layer_norm.{weight,bias}
*/layer_i/self_attention/linear_0 (fused Q,K,V)         layers.i.self_attn.{q,k,v}_proj
*/layer_i/self_attention/linear_1                       layers.i.self_attn.out_proj
*/layer_i/self_attention/layer_norm                     layers.i.self_attn_layer_norm
decoder/layer_i/attention/linear_0                      layers.i.encoder_attn.q_proj
decoder/layer_i/attention/linear_1 (fused K,V)          layers.i.encoder_attn.{k,v}_proj
decoder/layer_i/attention/linear_2                      layers.i.encoder_attn.out_proj
decoder/layer_i/attention/layer_norm                    layers.i.encoder_attn_layer_norm
*/layer_i/ffn/linear_{0,1}                              layers.i.fc{1,2}
*/layer_i/ffn/layer_norm                                layers.i.final_layer_norm
decoder/embeddings/weight                               model.decoder.embed_tokens.weight
decoder/projection/weight (alias of the embeddings)     proj_out.weight (tied)
======================================================  =====================================================

transformers' Whisper has no key bias; CT2 stores a zero one inside the fused
projections. Dropping a key bias is exact anyway: it adds ``q . b`` to every
score of a query, which softmax cancels. Scalar variables (activation, heads,
pre_norm, ...) are checked against what transformers' Whisper computes, so a
model that would silently behave differently is refused.

The tokenizer comes from the package's ``tokenizer.json``; the model's output
layer is larger than that file's vocabulary (timestamp tokens are missing), so
``<|0.00|>``..``<|30.00|>`` are added to make ids and vocabulary agree. The
generation config is built from the package's ``config.json`` (suppressed
tokens, language ids, alignment heads) and the tokenizer's special tokens.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pipeline.pretrained.ct2_reader import CT2FormatError, CT2Model, dequantize, read_ct2_dir

#: CT2 ActivationType enum value -> transformers activation name
_ACTIVATIONS = {0: "relu", 1: "gelu_new", 3: "gelu"}
#: Whisper decoding convention (OpenAI's max_initial_timestamp = 1.0 s at 0.02 s per step).
MAX_INITIAL_TIMESTAMP_INDEX = 50
TIME_PRECISION = 0.02
GPT2_EOT_ID = 50256
#: Version of this converter's output: part of the registry's cache key, bump when the output changes.
CONVERTER_VERSION = "1"


class _Consumer:
    """Hands out CT2 variables as float tensors and remembers which ones were used."""

    def __init__(self, ct2: CT2Model):
        self.ct2 = ct2
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.ct2.variables

    def tensor(self, name: str) -> torch.Tensor:
        if name not in self.ct2.variables:
            raise CT2FormatError(f"{self.ct2.source}: missing variable {name}")
        self.used.update((name, name + "_scale"))
        return torch.from_numpy(np.ascontiguousarray(dequantize(self.ct2, name)))

    def scalar(self, name: str, default: int | None = None) -> int:
        if name not in self.ct2.variables:
            if default is None:
                raise CT2FormatError(f"{self.ct2.source}: missing variable {name}")
            return default
        self.used.add(name)
        return int(self.ct2.variables[name])

    def unused(self) -> list[str]:
        return sorted(set(self.ct2.variables) - self.used)


def _num_layers(ct2: CT2Model, side: str) -> int:
    found = {int(m.group(1)) for n in ct2.variables if (m := re.match(rf"{side}/layer_(\d+)/", n))}
    if found != set(range(len(found))):
        raise CT2FormatError(f"{ct2.source}: {side} layers are not numbered 0..N-1: {sorted(found)}")
    return len(found)


def _linear(c: _Consumer, src: str, dst: str, sd: dict[str, torch.Tensor]) -> None:
    sd[f"{dst}.weight"] = c.tensor(f"{src}/weight")
    if c.has(f"{src}/bias"):
        sd[f"{dst}.bias"] = c.tensor(f"{src}/bias")


def _layer_norm(c: _Consumer, src: str, dst: str, sd: dict[str, torch.Tensor]) -> None:
    sd[f"{dst}.weight"] = c.tensor(f"{src}/gamma")
    sd[f"{dst}.bias"] = c.tensor(f"{src}/beta")


def _split_fused(c: _Consumer, src: str, dsts: Sequence[str], sd: dict[str, torch.Tensor]) -> None:
    """Split a fused projection (rows stacked in ``dsts`` order); the key projection gets no bias."""
    weight = c.tensor(f"{src}/weight")
    parts = torch.chunk(weight, len(dsts), dim=0)
    bias_parts = torch.chunk(c.tensor(f"{src}/bias"), len(dsts), dim=0) if c.has(f"{src}/bias") else None
    for i, dst in enumerate(dsts):
        sd[f"{dst}.weight"] = parts[i].clone()
        if bias_parts is not None and not dst.endswith("k_proj"):
            sd[f"{dst}.bias"] = bias_parts[i].clone()


def _self_attention(c: _Consumer, s: str, d: str, sd: dict[str, torch.Tensor]) -> None:
    """A layer's self-attention: CT2 fuses Q, K and V into one projection."""
    _split_fused(c, f"{s}/self_attention/linear_0", [f"{d}.self_attn.{p}_proj" for p in "qkv"], sd)
    _linear(c, f"{s}/self_attention/linear_1", f"{d}.self_attn.out_proj", sd)
    _layer_norm(c, f"{s}/self_attention/layer_norm", f"{d}.self_attn_layer_norm", sd)


def _ffn(c: _Consumer, s: str, d: str, sd: dict[str, torch.Tensor]) -> None:
    """A layer's feed-forward block and its layer norm."""
    _linear(c, f"{s}/ffn/linear_0", f"{d}.fc1", sd)
    _linear(c, f"{s}/ffn/linear_1", f"{d}.fc2", sd)
    _layer_norm(c, f"{s}/ffn/layer_norm", f"{d}.final_layer_norm", sd)



def ct2_to_state_dict(ct2: CT2Model) -> tuple[dict[str, torch.Tensor], dict]:
    """Map every CT2 Whisper variable to a transformers state dict; returns it and the inferred config fields."""
    if ct2.spec != "WhisperSpec":
        raise CT2FormatError(f"{ct2.source}: spec {ct2.spec!r} is not a Whisper model")
    c = _Consumer(ct2)
    sd: dict[str, torch.Tensor] = {}

    # Behaviour flags: refuse what transformers' Whisper would compute differently.
    activation = c.scalar("decoder/activation", default=3)
    if activation not in _ACTIVATIONS:
        raise CT2FormatError(f"{ct2.source}: unsupported decoder activation id {activation}")
    for flag, expected in (
        ("decoder/pre_norm", 1),
        ("decoder/scale_embeddings", 0),
        ("decoder/alibi", 0),
        ("decoder/start_from_zero_embedding", 0),
    ):
        value = c.scalar(flag, default=expected)
        if value != expected:
            raise CT2FormatError(f"{ct2.source}: {flag} = {value}; transformers' Whisper needs {expected}")
    # Options of ALiBi, which is off (checked above): they have no effect.
    c.scalar("decoder/alibi_use_positive_positions", default=0)
    c.scalar("decoder/scale_alibi", default=0)
    # Runtime options of CT2's alignment output, not weights.
    c.scalar("decoder/alignment_heads", default=0)
    c.scalar("decoder/alignment_layer", default=0)

    enc, dec = "model.encoder", "model.decoder"
    _linear(c, "encoder/conv1", f"{enc}.conv1", sd)
    _linear(c, "encoder/conv2", f"{enc}.conv2", sd)
    sd[f"{enc}.embed_positions.weight"] = c.tensor("encoder/position_encodings/encodings")
    _layer_norm(c, "encoder/layer_norm", f"{enc}.layer_norm", sd)
    n_enc = _num_layers(ct2, "encoder")
    for i in range(n_enc):
        s, d = f"encoder/layer_{i}", f"{enc}.layers.{i}"
        _self_attention(c, s, d, sd)
        _ffn(c, s, d, sd)

    sd[f"{dec}.embed_tokens.weight"] = c.tensor("decoder/embeddings/weight")
    sd[f"{dec}.embed_positions.weight"] = c.tensor("decoder/position_encodings/encodings")
    _layer_norm(c, "decoder/layer_norm", f"{dec}.layer_norm", sd)
    n_dec = _num_layers(ct2, "decoder")
    for i in range(n_dec):
        s, d = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        _self_attention(c, s, d, sd)
        _linear(c, f"{s}/attention/linear_0", f"{d}.encoder_attn.q_proj", sd)
        _split_fused(c, f"{s}/attention/linear_1", [f"{d}.encoder_attn.{p}_proj" for p in "kv"], sd)
        _linear(c, f"{s}/attention/linear_2", f"{d}.encoder_attn.out_proj", sd)
        _layer_norm(c, f"{s}/attention/layer_norm", f"{d}.encoder_attn_layer_norm", sd)
        _ffn(c, s, d, sd)

    projection = c.tensor("decoder/projection/weight")
    tied = torch.equal(projection, sd[f"{dec}.embed_tokens.weight"])
    sd["proj_out.weight"] = projection
    if c.has("decoder/projection/bias"):
        bias = c.tensor("decoder/projection/bias")
        if bias.abs().max() > 0:
            raise CT2FormatError(f"{ct2.source}: output projection has a bias; transformers' Whisper has none")

    enc_heads = c.scalar("encoder/num_heads", default=0)
    dec_heads = c.scalar("decoder/num_heads", default=0)
    leftover = c.unused()
    if leftover:
        raise CT2FormatError(f"{ct2.source}: variables not mapped to transformers: {leftover}")

    d_model = sd[f"{enc}.conv1.weight"].shape[0]
    fields = {
        "vocab_size": sd[f"{dec}.embed_tokens.weight"].shape[0],
        "num_mel_bins": sd[f"{enc}.conv1.weight"].shape[1],
        "d_model": d_model,
        "encoder_layers": n_enc,
        "decoder_layers": n_dec,
        # Whisper uses 64-dimensional heads when the file does not say.
        "encoder_attention_heads": enc_heads or d_model // 64,
        "decoder_attention_heads": dec_heads or d_model // 64,
        "encoder_ffn_dim": sd[f"{enc}.layers.0.fc1.weight"].shape[0] if n_enc else 4 * d_model,
        "decoder_ffn_dim": sd[f"{dec}.layers.0.fc1.weight"].shape[0] if n_dec else 4 * d_model,
        "max_source_positions": sd[f"{enc}.embed_positions.weight"].shape[0],
        "max_target_positions": sd[f"{dec}.embed_positions.weight"].shape[0],
        "activation_function": _ACTIVATIONS[activation],
        "scale_embedding": False,
        "tie_word_embeddings": tied,
    }
    return sd, fields


# ----------------------------------------------------------------------------- tokenizer


def _tokenizer_json_path(src_dir: Path) -> Path:
    path = src_dir / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{src_dir}: no tokenizer.json next to model.bin; a CT2 Whisper directory needs it "
            "(ct2-transformers-converter --copy_files tokenizer.json)"
        )
    return path


def build_tokenizer(src_dir: str | os.PathLike, vocab_size: int, vocabulary: Sequence[str] = ()):
    """A transformers Whisper tokenizer from ``tokenizer.json``, completed with timestamp tokens up to ``vocab_size``.

    ``vocabulary`` (CT2's vocabulary.txt) supplies the names of the missing ids
    when present, so the ids line up exactly with what the model was trained on.
    """
    from tokenizers import AddedToken, Tokenizer
    from transformers import WhisperTokenizerFast

    path = _tokenizer_json_path(Path(src_dir))
    backend = Tokenizer.from_file(str(path))
    have = backend.get_vocab_size(with_added_tokens=True)
    if have > vocab_size:
        raise CT2FormatError(f"{path}: {have} tokens but the model has only {vocab_size} outputs")
    missing = vocab_size - have
    if missing:
        if len(vocabulary) == vocab_size:
            names = list(vocabulary[have:])
        else:
            names = [f"<|{i * TIME_PRECISION:.2f}|>" for i in range(missing)]
        backend.add_tokens([AddedToken(n, lstrip=False, rstrip=False, normalized=False, special=False) for n in names])
        if backend.token_to_id(names[0]) != have or backend.get_vocab_size(with_added_tokens=True) != vocab_size:
            raise CT2FormatError(f"{path}: could not append the {missing} missing tokens at ids {have}..")
    special = [t.content for t in backend.get_added_tokens_decoder().values() if t.special]
    tokenizer = WhisperTokenizerFast(tokenizer_object=backend, additional_special_tokens=special)
    # The Whisper tokenizer class rebuilds its backend from vocab/merges in some transformers versions:
    # check that the ids survived.
    for name in (special[:1] + names[-1:]) if missing else special[:1]:
        if tokenizer.convert_tokens_to_ids(name) != backend.token_to_id(name):
            raise CT2FormatError(f"{path}: token {name} changed id while building the transformers tokenizer")
    return tokenizer


# ----------------------------------------------------------------------------- generation config


def _token_id(tokenizer, token: str) -> int | None:
    tid = tokenizer.convert_tokens_to_ids(token)
    return None if tid is None or tid == tokenizer.unk_token_id and token != tokenizer.unk_token else int(tid)


def special_ids(tokenizer) -> dict[str, int | None]:
    """Ids of Whisper's control tokens as this tokenizer spells them."""
    names = {
        "eot": "<|endoftext|>",
        "sot": "<|startoftranscript|>",
        "translate": "<|translate|>",
        "transcribe": "<|transcribe|>",
        "sot_lm": "<|startoflm|>",
        "sot_prev": "<|startofprev|>",
        "no_speech": "<|nocaptions|>",
        "no_timestamps": "<|notimestamps|>",
    }
    return {k: _token_id(tokenizer, v) for k, v in names.items()}


def build_generation_config(ct2_config: dict, tokenizer, model_fields: dict, source: str = ""):
    """Whisper's GenerationConfig from CT2's config.json and the tokenizer's control tokens."""
    from transformers import GenerationConfig

    ids = special_ids(tokenizer)
    for key in ("eot", "sot", "no_timestamps"):
        if ids[key] is None:
            raise CT2FormatError(f"{source}: tokenizer has no {key} token")
    # OpenAI's English-only models use GPT-2's vocabulary (end-of-text at 50256) and take no
    # language/task tokens; CT2's config lists lang_ids for them anyway, so they are not evidence.
    multilingual = bool(ct2_config.get("lang_ids")) and ids["eot"] != GPT2_EOT_ID
    gen = {
        "decoder_start_token_id": ids["sot"],
        "bos_token_id": ids["eot"],
        "eos_token_id": ids["eot"],
        "pad_token_id": ids["eot"],
        "no_timestamps_token_id": ids["no_timestamps"],
        "is_multilingual": multilingual,
        "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
        "return_timestamps": False,
        "suppress_tokens": list(ct2_config.get("suppress_ids") or []),
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin") or []),
    }
    if ids["sot_prev"] is not None:
        gen["prev_sot_token_id"] = ids["sot_prev"]
    if ct2_config.get("alignment_heads"):
        gen["alignment_heads"] = [list(map(int, h)) for h in ct2_config["alignment_heads"]]
    if multilingual:
        lang_to_id = {}
        for lid in ct2_config.get("lang_ids") or []:
            token = tokenizer.convert_ids_to_tokens(int(lid))
            if not (isinstance(token, str) and re.fullmatch(r"<\|[a-z]{2,3}(_[a-z]+)?\|>", token)):
                raise CT2FormatError(f"{source}: lang_ids entry {lid} is token {token!r}, not a language token")
            lang_to_id[token] = int(lid)
        gen["lang_to_id"] = lang_to_id
        gen["task_to_id"] = {"transcribe": ids["transcribe"], "translate": ids["translate"]}
    return GenerationConfig(**gen)


# ----------------------------------------------------------------------------- whole directory


def build_whisper(ct2: CT2Model, src_dir: str | os.PathLike):
    """(model, processor, generation_config) in float32 from a CT2 model read from ``src_dir``."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    sd, fields = ct2_to_state_dict(ct2)
    tokenizer = build_tokenizer(src_dir, fields["vocab_size"], ct2.vocabulary)
    generation_config = build_generation_config(ct2.config, tokenizer, fields, source=str(src_dir))
    config = WhisperConfig(
        **fields,
        decoder_start_token_id=generation_config.decoder_start_token_id,
        bos_token_id=generation_config.bos_token_id,
        eos_token_id=generation_config.eos_token_id,
        pad_token_id=generation_config.pad_token_id,
        # Suppression lives in the generation config only (generate() warns when both set it).
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if fields["tie_word_embeddings"]:
        missing = [k for k in missing if k != "proj_out.weight"]
    if missing or unexpected:
        raise CT2FormatError(f"{ct2.source}: state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model.generation_config = generation_config
    model.eval()
    feature_extractor = WhisperFeatureExtractor(feature_size=fields["num_mel_bins"])
    processor = WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    return model, processor, generation_config


def _apply_umask(folder: Path) -> None:
    """mkdtemp (and some writers) create private files; give the result the user's usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def write_converted(model, processor, out_dir: str | os.PathLike, provenance: dict) -> Path:
    """Save model + processor + generation config into ``out_dir`` atomically (temp dir, then rename)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "conversion.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        _apply_umask(tmp)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if (out_dir / "config.json").is_file():  # another process finished the same conversion first
                shutil.rmtree(tmp, ignore_errors=True)
                return out_dir
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def convert_ct2_whisper(
    ct2_dir: str | os.PathLike, out_dir: str | os.PathLike, extra_dirs: Sequence[str | os.PathLike] = ()
) -> Path:
    """Read a CT2 Whisper directory (model.bin possibly split over ``extra_dirs``) and write a transformers one."""
    ct2 = read_ct2_dir(ct2_dir, extra_dirs)
    model, processor, _ = build_whisper(ct2, ct2_dir)
    provenance = {
        "converter": "pipeline.pretrained.whisper_convert",
        "converter_version": CONVERTER_VERSION,
        "source": ct2.source,
        "ct2_spec": ct2.spec,
        "ct2_spec_revision": ct2.revision,
        "ct2_binary_version": ct2.binary_version,
        "stored_dtypes": sorted(set(ct2.dtypes.values())),
    }
    return write_converted(model, processor, out_dir, provenance)

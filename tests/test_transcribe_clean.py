"""``_clean`` keeps every generated content token, whether or not generate() echoes the prompt."""

from __future__ import annotations

import os

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.decode.whisper import _generate_kwargs, clean_tokens, drop_runaways  # noqa: E402
from pipeline.testing.tiny import build_tiny_whisper  # noqa: E402


def _prompt(gen, processor, code: str = "pa") -> list[int]:
    lang = processor.tokenizer.convert_tokens_to_ids(f"<|{code}|>")
    return [gen.decoder_start_token_id, lang, gen.task_to_id["transcribe"], gen.no_timestamps_token_id]


def test_clean_with_and_without_the_prompt():
    model, processor = build_tiny_whisper()
    gen = model.generation_config
    eos = gen.eos_token_id
    # Content starting with a lone lead byte (0xE0, "à"): byte-level BPE output, kept as is.
    content = processor.tokenizer(" ਅੱਜ", add_special_tokens=False).input_ids[1:]
    assert processor.tokenizer.convert_ids_to_tokens(content[0]) == "à"
    for row in (content + [eos, eos], _prompt(gen, processor) + content + [eos], content):
        assert clean_tokens(row, gen, own_budget=100) == (content, False)
    # Every content id (bytes and merges) survives in first position.
    for first in range(gen.eos_token_id):
        assert clean_tokens([first, 5, eos], gen, own_budget=100)[0] == [first, 5]


def test_hypotheses_that_ran_into_the_clip_s_budget_give_way_to_ones_that_ended():
    model, processor = build_tiny_whisper()
    gen = model.generation_config
    eos = gen.eos_token_id
    prompt = _prompt(gen, processor)
    short = prompt + [5, 6, eos, eos, eos, eos]
    runaway = prompt + [5, 6, 7, 8, 9, 10]  # still running when the search stopped
    over_budget = prompt + [5, 6, 7, 8, 9, eos]  # ended, but past this clip's budget of 4 tokens
    assert drop_runaways([runaway, short, over_budget], gen, own_budget=4) == [short]
    assert drop_runaways([runaway, over_budget], gen, own_budget=4) == [runaway, over_budget]  # nothing ended
    assert drop_runaways([runaway, over_budget], gen, own_budget=10) == [over_budget]


def test_generate_returns_new_tokens_only_and_clean_keeps_them():
    torch.set_num_threads(1)
    model, processor = build_tiny_whisper()
    gen = model.generation_config
    feats = processor.feature_extractor([np.zeros(8000, np.float32)], sampling_rate=16000, return_tensors="pt")
    kw = _generate_kwargs(model, "pa", "transcribe")
    with torch.inference_mode():
        plain = model.generate(feats.input_features, max_length=6, do_sample=False, **kw)
        full = model.generate(feats.input_features, max_length=6, do_sample=False, return_dict_in_generate=True, **kw)
    row = plain[0].tolist()
    # transformers' Whisper generate() returns the new tokens only (the dict output keeps the prompt).
    assert full.sequences[0].tolist() == _prompt(gen, processor) + row
    expected = row[: row.index(gen.eos_token_id)] if gen.eos_token_id in row else row
    assert clean_tokens(row, gen, own_budget=100)[0] == expected
    assert clean_tokens(full.sequences[0].tolist(), gen, own_budget=100)[0] == expected

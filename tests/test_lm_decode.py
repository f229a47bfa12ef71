"""Greedy and LM beam-search CTC decoding on hand-built score matrices; LM weight tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ctc_fixtures import vocab

from pipeline.decode.ctc_beam import CTCBeamDecoder, greedy_decode, greedy_decode_batch
from pipeline.lm import build_ngram_lm
from pipeline.rescore.lm_weights import tune_lm_weights

# vocab: <pad> 0, <unk> 1, | 2, a 3, b 4, c 5, d 6
IDS = {"_": 0, "?": 1, "|": 2, "a": 3, "b": 4, "c": 5, "d": 6}


def frames(spec: list) -> np.ndarray:
    """Log-probabilities from a frame list: a symbol (p=0.9) or a dict symbol -> probability."""
    out = np.full((len(spec), len(IDS)), 1e-4, dtype=np.float64)
    for t, f in enumerate(spec):
        dist = {f: 0.9} if isinstance(f, str) else f
        for sym, p in dist.items():
            out[t, IDS[sym]] = p
        out[t] /= out[t].sum()
    return np.log(out).astype(np.float32)


def test_greedy_collapses_repeats_drops_blanks_and_maps_delimiter():
    voc = vocab()
    x = frames(list("aa_a|bb_c") + ["?", "_", "_"])
    assert greedy_decode(x, voc) == "aa bc"  # <unk> is dropped from the text
    assert greedy_decode(x, voc, length=4) == "aa"
    assert greedy_decode(frames(list("|||__")), voc) == ""
    batch = torch.from_numpy(np.stack([frames(list("ab|c_")), frames(list("dd___"))]))
    assert greedy_decode_batch(batch, torch.tensor([5, 2]), voc) == ["ab c", "d"]


def test_beam_without_lm_agrees_with_greedy_on_peaked_scores():
    voc = vocab()
    dec = CTCBeamDecoder(voc, beam_width=8)
    x = frames(list("_aa_b|cc_d_"))
    assert dec.decode(x) == greedy_decode(x, voc) == "ab cd"
    assert dec.decode_batch([x, frames(list("b_b"))]) == ["ab cd", "bb"]


def _ambiguous() -> np.ndarray:
    """'ab ca' or 'ab da': the acoustics lean slightly towards d."""
    return frames(list("_ab_|") + [{"d": 0.5, "c": 0.45}] + list("a_"))


@pytest.fixture(scope="module")
def lm_path(tmp_path_factory):
    train = ["ab ca", "ca ab", "ab ca bd", "bd ab ca", "ca bd"] * 3
    return build_ngram_lm(train, 3, tmp_path_factory.mktemp("lm") / "train.arpa")


def test_lm_turns_an_acoustic_near_miss_into_the_in_vocabulary_words(lm_path):
    voc = vocab()
    x = _ambiguous()
    assert greedy_decode(x, voc) == "ab da"
    assert CTCBeamDecoder(voc, beam_width=16).decode(x) == "ab da"
    with_lm = CTCBeamDecoder(voc, lm_path, alpha=0.8, beta=1.0, beam_width=16)
    assert with_lm.decode(x) == "ab ca"
    with_lm.set_weights(0.0, 0.0)  # the LM switched off again
    assert with_lm.decode(x) == "ab da"
    padded = np.concatenate([x, frames(list("dddd"))])[None]
    with_lm.set_weights(0.8, 1.0)
    assert with_lm.decode_batch(padded, [len(x)]) == ["ab ca"]


def test_tune_lm_weights_picks_a_weight_that_helps_on_dev(lm_path):
    voc = vocab()
    dev = [_ambiguous(), frames(list("_bd|") + [{"d": 0.5, "c": 0.45}] + list("a")), frames(list("ab"))]
    refs = ["ab ca", "bd ca", "ab"]
    res = tune_lm_weights(dev, refs, voc, lm_path, alphas=(0.0, 0.8), betas=(0.0, 1.0), beam_width=16)
    assert len(res.grid) == 4
    no_lm = [g for g in res.grid if g["alpha"] == 0.0]
    assert res.alpha == 0.8 and res.wer == 0.0 and res.cer == 0.0
    assert min(g["wer"] for g in no_lm) > 0.0
    with pytest.raises(ValueError, match="references"):
        tune_lm_weights(dev, refs[:2], voc, lm_path)


def test_missing_lm_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.arpa"):
        CTCBeamDecoder(vocab(), tmp_path / "nope.arpa")

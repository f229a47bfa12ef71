"""Character-LM shallow fusion in Whisper's beam search (pipeline/rescore/fusion.py)."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from pipeline.decode.fusion import LN10, CharLMFusion, _complete_head
from pipeline.lm.build import build_char_lm
from pipeline.rescore.candidates import read_nbest
from pipeline.rescore.scorers import CharLM
from pipeline.testing.tiny import build_tiny_whisper

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = ["सः बालकः", "एषः बालकः", "सः गजः", "एषः गजः", "रामः वनं गच्छति"]


@pytest.fixture(scope="module")
def char_arpa(tmp_path_factory):
    return build_char_lm(TRAIN, 4, tmp_path_factory.mktemp("fusion") / "char.arpa")


def test_complete_head_keeps_an_unfinished_utf8_character_back():
    ka = "क".encode()  # 3 bytes
    assert _complete_head(b"ab") == 2
    assert _complete_head(ka) == 3
    assert _complete_head(ka[:2]) == 0 and _complete_head(ka[:1]) == 0
    assert _complete_head(b"a" + ka + ka[:2]) == 4
    assert _complete_head(b"") == 0


@pytest.mark.parametrize("text", ["एषः बालकः", " सः  गजः ", "रामः वनं अगच्छत्", "xyz गजः"])
def test_streamed_byte_pieces_score_the_same_as_the_whole_sentence(char_arpa, text):
    # Byte-level BPE cuts characters anywhere; fed piece by piece, with leading, repeated and
    # trailing spaces, the LM must see exactly char_tokens(normalized text) plus </s>.
    data = text.encode()
    rng = random.Random(len(text))
    cuts = sorted(rng.sample(range(1, len(data)), 7))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    fusion = CharLMFusion(char_arpa, {i: p for i, p in enumerate(pieces)}, eot=999, prompt_len=0,
                          weight=1.0)  # fmt: skip
    prefix, total = fusion.start(), 0.0
    for p in pieces:
        logp, _, prefix = fusion.extend(prefix, p)
        total += logp
    total += fusion.finish(prefix)
    assert prefix.pending == b""
    assert total * LN10 == pytest.approx(CharLM(char_arpa)(" ".join(text.split())), abs=1e-4)


def _restricted(allowed_tokens):
    model, processor = build_tiny_whisper(seed=3)
    tok = processor.tokenizer
    keep = {tok.convert_tokens_to_ids(t) for t in allowed_tokens} | {model.generation_config.eos_token_id}
    model.generation_config.suppress_tokens = [i for i in range(model.config.vocab_size) if i not in keep]
    return model, processor


def test_processor_adds_weighted_lm_scores_and_bonus_to_each_text_token(char_arpa):
    from pipeline.decode.fusion import Fusion
    from pipeline.decode.whisper_nbest import WhisperScorer

    model, processor = _restricted(["a", "b", "Ġa", "Ġb", "ab"])
    scorer = WhisperScorer(model, processor, "sa")
    fusion = Fusion(char_arpa, weight=0.5, bonus=0.25)
    proc = fusion.processor(scorer)
    assert fusion.processor(scorer) is proc  # one per decoder
    tok = processor.tokenizer
    assert {tok.convert_ids_to_tokens(i) for i in proc.token_ids} == {"a", "b", "Ġa", "Ġb", "ab"}
    assert proc.token_bytes[tok.convert_tokens_to_ids("Ġa")] == b" a"
    prompt = torch.tensor([scorer.labels.prefix + [tok.convert_tokens_to_ids("a")]])
    scores = torch.zeros(1, model.config.vocab_size)
    out = proc(prompt, scores.clone())
    lm = CharLM(char_arpa)
    after_a = lm._model.score("a", bos=True, eos=False)  # log10 of "a" after <s>
    b = tok.convert_tokens_to_ids("Ġb")
    both = lm._model.score("a \u2581 b", bos=True, eos=False)
    assert out[0, b] == pytest.approx(0.5 * LN10 * (both - after_a) + 0.25 * 2, abs=1e-4)  # ▁ and b scored
    eot = scorer.labels.eot
    assert out[0, eot] == pytest.approx(0.5 * LN10 * (lm._model.score("a", bos=True, eos=True) - after_a), abs=1e-4)
    suppressed = tok.convert_tokens_to_ids("c")
    assert out[0, suppressed] == 0.0  # not a text token of this decoder: untouched


def test_pre_beam_scores_only_the_best_tokens_of_a_large_vocabulary(char_arpa):
    pieces = {i: bytes([97 + i]) for i in range(6)}  # a..f
    fusion = CharLMFusion(char_arpa, pieces, eot=6, prompt_len=1, weight=1.0, top_k=2)
    scores = torch.tensor([[0.0, -1.0, -5.0, -0.5, -9.0, -9.0, -2.0]])
    out = fusion(torch.tensor([[50]]), scores)
    assert torch.isfinite(out[0, [0, 3, 6]]).all()  # the two best text tokens and the end token
    assert torch.isinf(out[0, [1, 2, 4, 5]]).all()


def test_fusion_steers_the_beam_and_the_rescore_command_records_it(tmp_path):
    from pipeline.cli import main
    from pipeline.testing.tiny import write_tiny_corpus

    data = write_tiny_corpus(tmp_path / "data", n_train=2, n_dev=3)
    model = tmp_path / "model"
    for part in _restricted(["a", "b", "Ġa", "Ġb", "ab"]):  # writes a's and b's, so the LM has something to pull
        part.save_pretrained(model)
    # An LM that knows only "b": a heavy fusion weight must turn the beam's output into b's.
    arpa = build_char_lm(["b b", "b", "b b b"], 3, tmp_path / "lm" / "char.arpa")
    out = tmp_path / "dev" / "hyps.jsonl"
    base = ["rescore", "--model", str(model), "--char-lm", str(arpa), "--beams", "3", "--nbest", "3",
            "--batch-size", "3", "--manifest", str(data / "dev.jsonl"), "--out", str(out)]  # fmt: skip
    assert main(base) == 0
    plain = read_nbest(out.parent / "nbest.jsonl")
    assert all(nb.fusion is None for nb in plain)
    assert main([*base, "--fusion-weight", "5", "--fusion-bonus", "0.5"]) == 0
    fused = read_nbest(out.parent / "nbest.jsonl")  # other settings: searched again, not reused
    assert all(nb.fusion == [5.0, 0.5, 128.0, 0.0, 0.0] for nb in fused)
    lm = CharLM(arpa)

    def mean_lm(nbests):
        return sum(lm(c.text) for nb in nbests for c in nb.candidates) / sum(len(nb.candidates) for nb in nbests)

    assert mean_lm(fused) > mean_lm(plain)
    assert json.loads((out.parent / "nbest.jsonl").read_text().splitlines()[0])["fusion"] == [5.0, 0.5, 128.0, 0.0, 0.0]
    assert main([*base, "--fusion-weight", "1", "--char-lm", ""]) == 2  # fusion needs the char LM
    assert main([*base, "--fusion-weight", "5", "--fusion-bonus", "0.5", "--fusion-rate-from",
                 str(data / "train.jsonl"), "--fusion-rate-margin", "0.1"]) == 0  # fmt: skip
    from data_prep.manifest import read_manifest
    from pipeline.decode.rates import RateBounds

    ceiling = RateBounds.from_labeled(list(read_manifest(data / "train.jsonl")), margin=0.1).high  # ~1 char a clip
    capped = read_nbest(out.parent / "nbest.jsonl")
    assert all(nb.fusion == [5.0, 0.5, 128.0, 0.0, round(ceiling, 4)] for nb in capped)
    durations = {u.id: u.duration for u in read_manifest(data / "dev.jsonl")}

    def fits(nb, c):
        return len(c.text.replace(" ", "")) <= math.ceil(ceiling * durations[nb.id])  # as CharLMFusion.max_chars

    assert not all(fits(nb, c) for nb in fused for c in nb.candidates)  # "b b" without the ceiling...
    assert all(fits(nb, c) for nb in capped for c in nb.candidates)  # ...and not with it
    assert any(c.text for nb in capped for c in nb.candidates)
    assert math.isfinite(fused[0].candidates[0].att)


def test_the_fused_search_ranks_by_its_own_length_penalty(char_arpa, monkeypatch):
    import numpy as np
    from transformers.generation.utils import GenerationMixin

    from pipeline.decode.fusion import Fusion
    from pipeline.decode.whisper_nbest import WhisperScorer

    model, processor = _restricted(["a", "b", "Ġa", "Ġb", "ab"])
    scorer = WhisperScorer(model, processor, "sa")
    seen = []
    generate = GenerationMixin.generate

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("length_penalty"))
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", spy)
    encoded = scorer.encode([np.zeros(8000, np.float32)])
    scorer.nbest(encoded, [0.5], beams=2, n=2)
    for lp in (0.0, 1.0):
        scorer.nbest(encoded, [0.5], beams=2, n=2, fusion=Fusion(char_arpa, 0.5, 1.0, length_penalty=lp).processor(scorer))
    assert seen == [None, 0.0, 1.0]  # plain beams keep the generation config's; fusion sets its own
    assert Fusion(char_arpa, 0.5, 1.0).settings() == [0.5, 1.0, 128.0, 0.0, 0.0]  # N-best records tell them apart


def test_a_hypothesis_longer_than_its_clip_allows_must_end_behind_the_others(char_arpa):
    pieces = {0: b"a", 1: b"b", 2: b" "}
    fusion = CharLMFusion(char_arpa, pieces, eot=3, prompt_len=1, weight=1.0, max_rate=2.0)
    fusion.set_clips([1.0, 2.0], beams=2)  # at most 2 and 4 characters
    assert (fusion.max_chars(0), fusion.max_chars(1)) == (2, 4)
    rows = torch.tensor([[50, 0, 2, 1, 0], [50, 0, 1, 2, 2], [50, 0, 1, 0, 1], [50, 0, 1, 2, 0]])
    out = fusion(rows, torch.zeros(4, 4))
    assert torch.isinf(out[0, :3]).all() and out[0, 3] == CharLMFusion.OVER_CEILING  # "a ba": 3 in 1 s
    assert torch.isfinite(out[1]).all() and out[1, 3] > CharLMFusion.OVER_CEILING  # "ab": spaces do not count
    assert torch.isfinite(out[2:]).all()  # clip 2: "abab" and "ab a" fit in 4
    fusion.set_clips([1.0, 2.0], beams=1)  # the same rows as four beams of their own clips...
    with pytest.raises(IndexError):
        fusion(rows, torch.zeros(4, 4))  # ...are more rows than clips: a wiring error, not a silent pass
    unlimited = CharLMFusion(char_arpa, pieces, eot=3, prompt_len=1, weight=1.0)
    unlimited.set_clips([1.0, 2.0], beams=2)
    assert torch.isfinite(unlimited(rows, torch.zeros(4, 4))).all()


def test_the_ceiling_keeps_a_short_clip_s_n_best_within_its_length(tmp_path):
    import numpy as np

    from pipeline.decode.fusion import Fusion
    from pipeline.decode.whisper_nbest import WhisperScorer

    # An LM that loves "b b b ...": with a bonus per character the search runs on past 1 s.
    arpa = build_char_lm(["b b", "b", "b b b"], 3, tmp_path / "char.arpa")
    model, processor = _restricted(["a", "b", "Ġa", "Ġb", "ab"])
    scorer = WhisperScorer(model, processor, "sa")
    encoded = scorer.encode([np.zeros(16000, np.float32), np.full(32000, 0.01, np.float32)])

    def lengths(rate):
        fusion = Fusion(arpa, 1.0, 1.0, max_rate=rate).processor(scorer)
        return [[len(t.replace(" ", "")) for t in texts] for texts in scorer.nbest(encoded, [1.0, 2.0], 3, 3, fusion)]

    free, capped = lengths(0.0), lengths(2.0)
    assert max(free[0]) > 2 and capped[0] and max(capped[0]) <= 2  # 2 characters per second of a 1 s clip
    assert capped[1] == free[1] and max(free[1]) <= 4  # the 2 s clip's hypotheses fit: untouched


def test_our_searches_ignore_the_exported_renormalize_flag():
    """An exported decoder's generation config sets ``renormalize_logits`` for plain ``generate()``; our searches
    must not take it (it would renormalize the decoder + LM scores the fusion weights were tuned on)."""
    from pipeline.decode.whisper import allowed_tokens_only

    for model in (_restricted(["a", "b", "Ġa", "Ġb", "ab"])[0], build_tiny_whisper(seed=3)[0]):
        model.generation_config.renormalize_logits = True
        with allowed_tokens_only(model):
            assert model.generation_config.renormalize_logits is False
        assert model.generation_config.renormalize_logits is True

"""N-best rescoring: exact scores from each model, the weight search, the command end to end;
and the two decoding speed-ups it brought (allowed-token projection, beam cache)."""

from __future__ import annotations

import itertools
import json
import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.decode.whisper import allowed_tokens_only, beam_search_cache  # noqa: E402
from pipeline.decode.whisper_nbest import WhisperScorer
from pipeline.models.ctc_vocab import CTCVocab  # noqa: E402
from pipeline.rescore.build import nbest_origin  # noqa: E402
from pipeline.rescore.candidates import Candidate, NBest, read_nbest, write_nbest  # noqa: E402
from pipeline.rescore.combine import Weights, choose, choose_texts, load_weights, tune_weights  # noqa: E402
from pipeline.rescore.scorers import ctc_log_probs  # noqa: E402
from pipeline.testing.tiny import build_tiny_whisper, write_tiny_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _restricted_tiny(allowed_tokens=("a", "b", "Ġa", "Ġb", "ab")):
    """A tiny Whisper whose generation config suppresses all but a few tokens (as restrict_vocab exports)."""
    model, processor = build_tiny_whisper(seed=3)
    tok = processor.tokenizer
    gen = model.generation_config
    keep = {tok.convert_tokens_to_ids(t) for t in allowed_tokens} | {gen.eos_token_id}
    gen.suppress_tokens = [i for i in range(model.config.vocab_size) if i not in keep]
    return model, processor, sorted(keep)


# ---------------------------------------------------------------- allowed-token projection


def test_allowed_projection_keeps_allowed_logits_and_restores_the_model():
    model, _, keep = _restricted_tiny()
    head, suppress = model.proj_out, list(model.generation_config.suppress_tokens)
    ids = torch.tensor([[model.generation_config.decoder_start_token_id, keep[0], keep[1]]])
    enc = torch.randn(1, 20, model.config.d_model)
    with torch.no_grad():
        full = model(encoder_outputs=(enc,), decoder_input_ids=ids).logits
        with allowed_tokens_only(model):
            assert model.generation_config.suppress_tokens is None
            part = model(encoder_outputs=(enc,), decoder_input_ids=ids).logits
    assert torch.allclose(part[..., keep], full[..., keep], atol=1e-5)
    others = [i for i in range(full.shape[-1]) if i not in keep]
    assert torch.isinf(part[..., others]).all() and (part[..., others] < 0).all()
    assert model.proj_out is head and model.generation_config.suppress_tokens == suppress


def test_allowed_projection_leaves_unrestricted_models_alone():
    model, _ = build_tiny_whisper(seed=3)
    head = model.proj_out
    with allowed_tokens_only(model):
        assert model.proj_out is head


@pytest.mark.parametrize("beams", [1, 3])
def test_transcription_is_unchanged_by_the_allowed_projection(beams, monkeypatch):
    import contextlib

    import numpy as np

    import pipeline.decode.whisper as W

    model, processor, _ = _restricted_tiny()
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(int(16000 * s)).astype(np.float32) * 0.1 for s in (0.5, 1.0, 1.5)]
    fast = W.transcribe_detailed(model, processor, audios, "sa", batch_size=3, num_beams=beams, progress=False)
    monkeypatch.setattr(W, "allowed_tokens_only", lambda m: contextlib.nullcontext(m))
    slow = W.transcribe_detailed(model, processor, audios, "sa", batch_size=3, num_beams=beams, progress=False)
    if beams == 1:  # the argmax cannot change
        assert [t.text for t in fast] == [t.text for t in slow]
    for t in fast:  # never a suppressed token: the projection restricts what generate can emit
        assert set(t.text) <= set("ab ")


def test_beam_cache_gives_the_same_nbest_as_the_default_cache():
    from transformers.generation.utils import GenerationMixin

    model, _ = build_tiny_whisper(seed=5)
    gen = model.generation_config
    from transformers.modeling_outputs import BaseModelOutput

    enc = BaseModelOutput(last_hidden_state=torch.randn(2, 30, model.config.d_model))
    prompt = torch.tensor([[gen.decoder_start_token_id]] * 2)
    kw = dict(encoder_outputs=enc, decoder_input_ids=prompt, num_beams=4, num_return_sequences=3,
              do_sample=False, max_new_tokens=12, output_scores=True, return_dict_in_generate=True)  # fmt: skip
    with torch.no_grad():
        a = GenerationMixin.generate(model, **kw)
        b = GenerationMixin.generate(model, cache=beam_search_cache(), **kw)
    assert torch.equal(a.sequences, b.sequences)
    assert torch.allclose(a.sequences_scores, b.sequences_scores, atol=1e-5)


# ---------------------------------------------------------------- model scores


def test_attention_log_probs_match_a_manual_teacher_forced_pass():
    import numpy as np

    model, processor = build_tiny_whisper(seed=7)
    scorer = WhisperScorer(model, processor, "sa")
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(8000).astype(np.float32) * 0.1, rng.standard_normal(16000).astype(np.float32) * 0.1]
    encoded = scorer.encode(waves)
    texts = ["ab", "ba ab", "b"]
    got = scorer.log_probs(encoded, [0, 1, 1], texts)
    states = encoded[0].last_hidden_state
    for (clip, text), value in zip([(0, "ab"), (1, "ba ab"), (1, "b")], got):
        seq = torch.tensor([scorer.labels(text)[0]])
        with torch.no_grad():
            logits = model(encoder_outputs=(states[clip : clip + 1],), decoder_input_ids=seq[:, :-1]).logits
        logp = logits.log_softmax(-1)[0]
        start = len(scorer.labels.prefix) - 1
        want = sum(float(logp[p, seq[0, p + 1]]) for p in range(start, seq.shape[1] - 1))
        assert value == pytest.approx(want, abs=1e-4)


def test_scores_after_a_beam_search_are_each_clip_s_own():
    # generate() expands the encoder states to one row per beam in place: scoring afterwards
    # must still see clip k's audio for clip k (it saw clip k // beams' before)
    import numpy as np

    model, processor = build_tiny_whisper(seed=7)
    scorer = WhisperScorer(model, processor, "sa")
    rng = np.random.default_rng(2)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (8000, 16000, 12000)]
    encoded = scorer.encode(waves)
    texts = ["ab", "ba ab", "b"]
    before = scorer.log_probs(encoded, [0, 1, 2], texts)
    scorer.nbest(encoded, [len(w) / 16000 for w in waves], beams=3, n=2)
    assert encoded[0].last_hidden_state.shape[0] == 3
    assert scorer.log_probs(encoded, [0, 1, 2], texts) == pytest.approx(before, abs=1e-5)
    alone = [scorer.log_probs(scorer.encode([w]), [0], [t])[0] for w, t in zip(waves, texts)]
    assert before == pytest.approx(alone, abs=1e-3)


def test_a_fine_tuned_model_is_prompted_with_the_language_it_was_trained_with():
    from pipeline.decode.whisper import decoding_language

    model, processor = build_tiny_whisper(seed=7)
    assert decoding_language(model, None, "sa") == "sa"  # a pretrained model: the manifest's language
    model.asr_adapt = {"language": "hi"}  # e.g. Sanskrit data trained behind <|hi|>
    assert decoding_language(model, None, "sa") == "hi"
    assert decoding_language(model, "sa", "pa") == "sa"  # an explicit choice wins
    scorer = WhisperScorer(model, processor, None, fallback_language="sa")
    hi = processor.tokenizer.convert_tokens_to_ids("<|hi|>")
    assert scorer.language == "hi" and hi in scorer.labels.prefix


def test_nbest_returns_at_most_n_texts_per_clip():
    import numpy as np

    model, processor = build_tiny_whisper(seed=7)
    scorer = WhisperScorer(model, processor, "sa")
    waves = [np.zeros(8000, np.float32), np.ones(12000, np.float32) * 0.01]
    out = scorer.nbest(scorer.encode(waves), [0.5, 0.75], beams=4, n=3)
    assert len(out) == 2 and all(1 <= len(texts) <= 3 for texts in out)  # runaways may be dropped


def _brute_force_ctc(logp: torch.Tensor, labels: list[int], blank: int) -> float:
    """log of the summed probability of every frame path that collapses to ``labels``."""
    total = 0.0
    for path in itertools.product(range(logp.shape[1]), repeat=logp.shape[0]):
        collapsed, prev = [], None
        for s in path:
            if s != prev and s != blank:
                collapsed.append(s)
            prev = s
        if collapsed == labels:
            total += math.exp(sum(float(logp[t, s]) for t, s in enumerate(path)))
    return math.log(total) if total > 0 else float("-inf")


def test_ctc_log_probs_sum_over_all_alignments():
    voc = CTCVocab({"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "b": 4})
    logp = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    texts = ["ab", "a", "aa", "a b", "a b a"]  # the last: 5 labels, more than the 4 frames
    got = ctc_log_probs(logp, 4, voc, texts)
    for text, value in zip(texts, got):
        want = _brute_force_ctc(logp, voc.encode(text), voc.blank)
        if math.isinf(want):
            assert math.isinf(value) and value < 0
        else:
            assert value == pytest.approx(want, abs=1e-4)
    assert math.isinf(got[4]) and all(math.isfinite(v) for v in got[:4])


# ---------------------------------------------------------------- choosing and tuning


def _cand(text, att, ctc=None, lm=None):
    return Candidate(text=text, source="beam", att=att, ctc=ctc, lm=lm, words=len(text.split()))


def test_weights_score_and_choose():
    nb = NBest("u1", [_cand("a b", -1.0, ctc=-9.0, lm=-5.0), _cand("a c", -1.5, ctc=-2.0, lm=-1.0)])
    assert choose(nb, Weights()).text == "a b"  # the decoder's own choice
    assert choose(nb, Weights(ctc_weight=0.5)).text == "a c"
    assert choose(nb, Weights(lm_weight=0.5)).text == "a c"
    assert choose(NBest("u2", []), Weights()) is None
    short = NBest("u3", [_cand("a", -1.0), _cand("a b c", -2.0)])
    assert choose(short, Weights(word_bonus=1.0)).text == "a b c"


def test_tuning_finds_weights_that_fix_the_decoder_and_prefers_no_change_on_ties():
    refs = ["x y", "p q", "m n"]
    nbests = [
        NBest("1", [_cand("x z", -1.0, ctc=-8, lm=-9), _cand("x y", -1.2, ctc=-3, lm=-2)]),
        NBest("2", [_cand("p q", -0.5, ctc=-2, lm=-2), _cand("p r", -0.9, ctc=-6, lm=-7)]),
        NBest("3", [_cand("m n", -0.1, ctc=-1, lm=-1)]),
    ]
    tuned = tune_weights(nbests, refs, ctc_weights=(0.0, 0.5), lm_weights=(0.0, 0.5), word_bonuses=(0.0,))
    assert tuned.wer == 0.0 and tuned.cer == 0.0
    # (0.5, 0.0) and (0.0, 0.5) both fix utterance 1: the smaller total weight wins, then the order.
    assert tuned.weights.ctc_weight + tuned.weights.lm_weight == 0.5
    assert len(tuned.grid) == 4  # no beam ranks: no search-pick point
    no_gain = tune_weights(nbests[1:], refs[1:], ctc_weights=(0.0, 0.5), lm_weights=(0.0, 0.5), word_bonuses=(0.0,))
    assert no_gain.weights == Weights()


def test_tuning_for_the_sum_of_wer_and_cer_does_not_leave_wer_to_a_near_tie_in_cer():
    # "abcdefgh" misses one space (CER 1/9, WER 100 %); "abcd efxy" two letters (CER 2/9, WER 50 %)
    nbests = [NBest(str(i), [_cand("abcdefgh", -1.0, lm=-5.0), _cand("abcd efxy", -1.5, lm=-1.0)]) for i in range(4)]
    refs = ["abcd efgh"] * 4
    by_cer = tune_weights(nbests, refs, lm_weights=(0.0, 0.5), word_bonuses=(0.0,), metric="cer")
    by_sum = tune_weights(nbests, refs, lm_weights=(0.0, 0.5), word_bonuses=(0.0,), metric="wer+cer")
    assert by_cer.weights.lm_weight == 0.0 and by_cer.wer == 1.0
    assert by_sum.weights.lm_weight == 0.5 and by_sum.wer == 0.5 and by_sum.metric == "wer+cer"
    with pytest.raises(ValueError, match="wer\\+cer"):
        tune_weights(nbests, refs, metric="ser")


def test_a_char_bonus_lets_the_rescoring_rank_as_a_fused_search_did():
    from pipeline.rescore.combine import lm_tokens, tune_weights

    assert lm_tokens("ab ba") == 5 and lm_tokens("") == 0 and lm_tokens("abc") == 3
    # the decoder alone prefers the short text; the fused search's length reward (1 per character-LM token)
    # picks the long one, which is right: only a char bonus in the grid reproduces that
    nbests, refs = [], []
    for i in range(6):
        nbests.append(NBest(str(i), [Candidate("ab", "beam", att=-1.0, clm=-3.0, words=1, rank=1),
                                     Candidate("ab ba ab", "beam", att=-5.0, clm=-6.0, words=3, rank=0)]))
        refs.append("ab ba ab")
    assert choose(nbests[0], Weights(char_bonus=1.0)).text == "ab ba ab"
    t = tune_weights(nbests, refs, word_bonuses=(0.0,), char_lm_weights=(0.0,), held_out_check=False)
    assert t.cer == 0.0
    without = tune_weights(nbests, refs, word_bonuses=(0.0,), char_lm_weights=(0.0,), char_bonuses=(0.0,))
    assert without.weights.beam_pick  # without it, only the search's own pick gets there


def test_tuning_keeps_the_search_s_own_pick_when_no_weighting_matches_it(tmp_path):
    # a fused search ranked "x y" first although its teacher-forced score and the LM prefer "x z"
    nbests = [NBest("1", [_cand("x z", -1.0, lm=-2), _cand("x y", -3.0, lm=-9)]),
              NBest("2", [_cand("p q", -0.5, lm=-2)])]  # fmt: skip
    nbests[0].candidates[0].rank, nbests[0].candidates[1].rank = 1, 0
    nbests[1].candidates[0].rank = 0
    tuned = tune_weights(nbests, ["x y", "p q"], lm_weights=(0.0, 0.5), word_bonuses=(0.0,))
    assert tuned.weights.beam_pick and tuned.wer == 0.0
    assert choose(nbests[0], tuned.weights).text == "x y" and choose(NBest("3", []), tuned.weights) is None
    tuned.save(tmp_path / "weights.json")
    assert load_weights(tmp_path / "weights.json") == tuned.weights


def test_a_weighting_that_wins_on_dev_but_not_held_out_gives_way_to_the_search_s_pick():
    # Each utterance: the search's pick "a" (rank 0) and "b", which an LM weight above `flip` prefers.
    # A weight of 3 fixes one more utterance than it breaks on the whole of dev, but tuned on either
    # half (even / odd utterances) the chosen weight does worse than the search on the other half.
    def utt(i, flip, ref):
        cands = [_cand("a", -1.0, lm=-2.0), _cand("b", -1.0 - flip, lm=-1.0)]
        cands[0].rank, cands[1].rank = 0, 1
        return NBest(str(i), cands), ref

    low, high = 0.25, 1.0  # flips at lm weight 0.5 and 3.0 / only at 3.0
    rows = [utt(0, low, "b"), utt(1, low, "a"), utt(2, high, "a"), utt(3, high, "b"), utt(4, high, "a"),
            utt(5, high, "b")]  # fmt: skip
    rows[4][0].candidates.pop()  # a lone (correct) candidate: neutral
    nbests, refs = [r[0] for r in rows], [r[1] for r in rows]
    grid = dict(lm_weights=(0.0, 0.5, 3.0), word_bonuses=(0.0,))
    unchecked = tune_weights(nbests, refs, held_out_check=False, **grid)
    assert unchecked.weights == Weights(lm_weight=3.0) and unchecked.wer == pytest.approx(2 / 6)
    checked = tune_weights(nbests, refs, **grid)
    assert checked.weights.beam_pick and checked.wer == pytest.approx(3 / 6)
    # held out: 0.5 (even half's choice) errs 3 times on the odd half, 3.0 (odd's) once on the even;
    # the search's pick errs twice and once
    assert checked.held_out == pytest.approx([4 / 6, 3 / 6])
    # a weighting that fixes both halves survives the check
    fixes = [utt(i, high, "b") for i in range(4)]
    kept = tune_weights([r[0] for r in fixes], [r[1] for r in fixes], **grid)
    assert kept.weights == Weights(lm_weight=3.0) and kept.held_out == pytest.approx([0.0, 1.0])


def test_tuning_skips_scores_no_candidate_has():
    nbests = [NBest("1", [_cand("x", -1.0), _cand("y", -2.0)])]
    tuned = tune_weights(nbests, ["y"], word_bonuses=(0.0, 1.0))
    assert len(tuned.grid) == 2 and tuned.weights.ctc_weight == 0.0 and tuned.weights.lm_weight == 0.0


def test_weights_and_nbest_files_round_trip(tmp_path):
    tuned = tune_weights([NBest("1", [_cand("x", -1.0, lm=-1.0)])], ["x"], word_bonuses=(0.0,))
    tuned.save(tmp_path / "weights.json")
    assert load_weights(tmp_path / "weights.json") == tuned.weights
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        load_weights(tmp_path / "bad.json")
    records = [NBest("1", [_cand("x", -1.0, ctc=float("-inf"), lm=-1.0)], seconds=0.5)]
    write_nbest(tmp_path / "nbest.jsonl", records)
    back = read_nbest(tmp_path / "nbest.jsonl")
    assert back[0].candidates[0].text == "x" and back[0].seconds == 0.5
    assert math.isinf(back[0].candidates[0].ctc)


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def tiny_assets(tmp_path_factory):
    from pipeline.testing.tiny import save_tiny_whisper

    root = tmp_path_factory.mktemp("rescore")
    data = write_tiny_corpus(root / "data", n_train=2, n_dev=5)
    (data / "test.jsonl").write_text((data / "dev.jsonl").read_text())  # same clips, named test
    return save_tiny_whisper(root / "model", seed=2), data


def _left_by_a_killed_run(argv: list[str]) -> None:
    """Record beside the hand-written N-best partial the identity the run of ``argv`` records before its work
    (a partial of the same inputs and settings, as a killed run leaves it)."""
    import argparse

    from data_prep.outputs import write_identity
    from pipeline.cli import rescore as cli
    from pipeline.decode.resumable import identity_path

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    write_identity(identity_path(cli.nbest_path_of(args)), cli.run_identity(args))


def test_rescore_command_tunes_on_dev_applies_on_test_and_resumes(tiny_assets, tmp_path, capsys):
    from pipeline.cli import main
    from pipeline.decode.hyps import read_hyps
    from pipeline.lm.build import build_ngram_lm

    model, data = tiny_assets
    lm = build_ngram_lm(["ab ba", "aab bb ab", "ba ba"], 2, tmp_path / "lm" / "lm.arpa")
    dev_out = tmp_path / "dev" / "hyps.jsonl"
    base = ["rescore", "--model", str(model), "--lm", str(lm), "--beams", "3", "--nbest", "2",
            "--batch-size", "2"]  # fmt: skip
    assert main([*base, "--manifest", str(data / "dev.jsonl"), "--out", str(dev_out), "--tune"]) == 0
    weights = json.loads((dev_out.parent / "weights.json").read_text())
    assert weights["n_utts"] == 5 and weights["tuned_on"].endswith("dev.jsonl") and weights["grid"]
    nbests = read_nbest(dev_out.parent / "nbest.jsonl")
    assert [nb.id for nb in nbests] == [f"dev{i:03d}" for i in range(5)]
    assert all(1 <= len(nb.candidates) <= 2 and all(c.lm is not None and c.ctc is None for c in nb.candidates)
               for nb in nbests)  # fmt: skip
    assert len(read_hyps(dev_out)) == 5
    assert weights["metric"] == "wer" and weights["dev_wer"] == min(g["wer"] for g in weights["grid"])
    # Tuned for CER instead: the finished N-best file is reused, the pick minimizes CER over the same grid.
    assert main([*base, "--manifest", str(data / "dev.jsonl"), "--out", str(dev_out), "--tune",
                 "--tune-metric", "cer"]) == 0  # fmt: skip
    by_cer = json.loads((dev_out.parent / "weights.json").read_text())
    assert by_cer["metric"] == "cer" and by_cer["dev_cer"] == min(g["cer"] for g in by_cer["grid"])
    assert read_nbest(dev_out.parent / "nbest.jsonl") == nbests

    # Never tune on test.
    test_out = tmp_path / "test" / "hyps.jsonl"
    assert main([*base, "--manifest", str(data / "test.jsonl"), "--out", str(test_out), "--tune"]) == 2
    assert "never on the test split" in capsys.readouterr().err

    # Resume: a finished record in the partial file is kept, not decoded again.
    test_out.parent.mkdir(parents=True)
    origin = nbest_origin([str(model)], None, str(lm), beams=3, n=2, ctc_proposals=4, language=None)
    kept = NBest("dev002", [_cand("bb bb bb", -0.1)], seconds=123.0, origin=origin)
    (test_out.parent / "nbest.jsonl.partial").write_text(json.dumps(kept.to_json()) + "\n" + '{"id": "dev0')
    args = [*base, "--manifest", str(data / "test.jsonl"), "--out", str(test_out),
            "--weights", str(dev_out.parent / "weights.json")]  # fmt: skip
    _left_by_a_killed_run(args)
    assert main(args) == 0
    hyps = {h.id: h for h in read_hyps(test_out)}
    assert len(hyps) == 5 and hyps["dev002"].text == "bb bb bb" and hyps["dev002"].seconds == 123.0
    assert not (test_out.parent / "nbest.jsonl.partial").exists()


def test_char_lm_prefers_spellings_like_the_train_text(tmp_path):
    from pipeline.lm.build import WORD_BOUNDARY, build_char_lm, char_tokens
    from pipeline.rescore.scorers import CharLM

    assert char_tokens(" एषः  बहः ") == ["ए", "ष", "ः", WORD_BOUNDARY, "ब", "ह", "ः"]
    arpa = build_char_lm(["सः बालकः", "एषः बालकः", "सः गजः", "एषः गजः"], 4, tmp_path / "char.arpa")
    lm = CharLM(arpa)
    assert lm("एषः बालकः") > lm("एषः बालकह") > float("-inf")
    assert lm("बालकः") > lm("ःकलाब")  # the same characters, scrambled


def test_tuning_table_gives_the_same_rates_as_scoring_the_chosen_texts():
    import random

    from pipeline.rescore.combine import ErrorTable
    from pipeline.rescore.lm_weights import error_rates

    rng = random.Random(0)
    words = ["ab", "ba", "aab", "b", "bba"]

    def sentence():
        return " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))

    refs, nbests = [], []
    for i in range(30):
        refs.append(sentence())
        cands = [Candidate(sentence(), "beam", att=rng.uniform(-9, 0), ctc=rng.choice([rng.uniform(-9, 0), float("-inf")]),
                           lm=rng.uniform(-20, 0), clm=rng.uniform(-30, 0)) for _ in range(rng.randint(0, 5))]  # fmt: skip
        for r, c in enumerate(random.Random(i).sample(cands, len(cands))):  # ranks: the search's own order
            c.words, c.rank = len(c.text.split()), r
        nbests.append(NBest(str(i), cands))
    # a clip whose candidates the CTC model cannot align at all: the others' scores decide, as on dev
    refs.append("ab ba")
    nbests.append(NBest("unaligned", [Candidate("b", "beam", att=-5.0, ctc=float("-inf"), words=1, rank=0),
                                      Candidate("ab ba", "beam", att=-1.0, ctc=float("-inf"), words=2, rank=1)]))
    assert choose(nbests[-1], Weights(ctc_weight=0.5)).text == "ab ba"
    table = ErrorTable(nbests, refs)
    for _ in range(25):
        w = Weights(rng.choice([0, 0.3, 0.7]), rng.choice([0, 0.5]), rng.choice([0, 2.0]), rng.choice([0, 0.5]),
                    char_bonus=rng.choice([0, 1.0]))  # fmt: skip
        assert table.rates(w) == pytest.approx(error_rates(refs, choose_texts(nbests, w)))
    w = Weights(beam_pick=True)
    assert table.rates(w) == pytest.approx(error_rates(refs, choose_texts(nbests, w)))
    # the grid search's pass over every bonus at once gives each point's rates exactly
    bonuses, char_bonuses = [0, 0.5, 2.0, 7.0], [0, 1.0, 1.5]
    for base in (Weights(), Weights(0.3, 0.5, char_lm_weight=0.5), Weights(0.7, 0, char_lm_weight=2.0)):
        wers, cers = table.rates_over_bonuses(base, bonuses, char_bonuses)
        for (i, wb), (j, cb) in itertools.product(enumerate(bonuses), enumerate(char_bonuses)):
            w = Weights(base.ctc_weight, base.lm_weight, wb, base.char_lm_weight, char_bonus=cb)
            assert (wers[i, j], cers[i, j]) == table.rates(w)


def test_ablation_reports_oracle_and_every_subset(tmp_path, capsys):
    from benchmarks.rescore_ablation import SUBSETS, main
    from data_prep.manifest import Utterance, write_jsonl

    write_jsonl(tmp_path / "dev.jsonl", [Utterance(id="1", audio="a.flac", duration=1.0, text="x y", language="sa"),
                                         Utterance(id="2", audio="b.flac", duration=1.0, text="p q", language="sa")])  # fmt: skip
    write_nbest(tmp_path / "nbest.jsonl", [
        NBest("1", [_cand("x z", -1.0, ctc=-8, lm=-9), _cand("x y", -1.2, ctc=-3, lm=-2)]),
        NBest("2", [_cand("p q", -0.5, ctc=-2, lm=-2)]),
    ])  # fmt: skip
    files = ["--nbest", str(tmp_path / "nbest.jsonl"), "--manifest", str(tmp_path / "dev.jsonl")]
    assert main([*files, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()[1:]]
    by = {r["scores"]: r for r in rows}
    assert by["decoder's first choice"]["wer"] == 0.25 and by["oracle (best candidate)"]["wer"] == 0.0
    assert len(rows) == 2 + len(SUBSETS) and by["+ ctc"]["wer"] == 0.0 and by["+ char lm"]["wer"] == 0.25


def test_ablation_judges_ctc_proposals_apart_from_ctc_scores(tmp_path, capsys):
    import dataclasses

    from benchmarks.rescore_ablation import SUBSETS, decoder_pool, main
    from data_prep.manifest import Utterance, write_jsonl

    write_jsonl(tmp_path / "dev.jsonl", [Utterance(id="1", audio="a.flac", duration=1.0, text="x y", language="sa")])
    right_from_ctc = dataclasses.replace(_cand("x y", -3.0, ctc=-1.0), source="ctc")
    both = dataclasses.replace(_cand("x w", -2.0, ctc=-4.0), source="beam+ctc")
    nbests = [NBest("1", [_cand("x z", -1.0, ctc=-5.0), both, right_from_ctc])]
    assert [c.text for c in decoder_pool(nbests)[0].candidates] == ["x z", "x w"]
    write_nbest(tmp_path / "nbest.jsonl", nbests)
    files = ["--nbest", str(tmp_path / "nbest.jsonl"), "--manifest", str(tmp_path / "dev.jsonl")]
    assert main([*files, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()[1:]]
    by = {r["scores"]: r for r in rows}
    assert len(rows) == 2 + 2 * len(SUBSETS)
    assert by["+ ctc"]["wer"] == 0.0  # the CTC model's own proposal, chosen by its score
    assert by["decoder pool: + ctc"]["wer"] == 0.5  # without it, the best a weighting can do


def test_an_ensemble_pools_every_decoders_nbest_and_averages_their_log_probs():
    import numpy as np

    from pipeline.rescore.build import score_batch

    scorers = [WhisperScorer(*build_tiny_whisper(seed=s), "sa") for s in (7, 8)]
    rng = np.random.default_rng(4)
    waves = [rng.standard_normal(8000).astype(np.float32) * 0.1, rng.standard_normal(12000).astype(np.float32) * 0.1]
    pooled = score_batch(waves, "sa", scorers, None, None, beams=3, n=2)
    alone = [score_batch(waves, "sa", s, None, None, beams=3, n=2) for s in scorers]
    for i, cands in enumerate(pooled):
        texts = {c.text for c in cands}
        assert texts == {c.text for c in alone[0][i]} | {c.text for c in alone[1][i]}
        assert len(texts) == len(cands)  # each text once, whoever proposed it
        for c in cands:
            each = [s.log_probs(s.encode([waves[i]]), [0], [c.text])[0] for s in scorers]
            assert c.att_each == pytest.approx(each, rel=1e-4)  # batch vs single clip: float noise
            assert c.att == pytest.approx(sum(c.att_each) / 2, abs=1e-6)
            assert set(c.source.split("+")) <= {"beam", "beam:1"}
    assert all(c.att_each is None for cands in alone[0] for c in cands)


def test_rescore_command_with_an_ensemble_decodes_again_what_one_decoder_scored(tiny_assets, tmp_path):
    from pipeline.cli import main
    from pipeline.decode.hyps import read_hyps
    from pipeline.testing.tiny import save_tiny_whisper

    model, data = tiny_assets
    second = save_tiny_whisper(tmp_path / "second", seed=5)
    out = tmp_path / "ens" / "hyps.jsonl"
    out.parent.mkdir()
    single = NBest("dev001", [_cand("bb bb bb", -0.1)], seconds=123.0)  # scored by one decoder only
    (out.parent / "nbest.jsonl.partial").write_text(json.dumps(single.to_json()) + "\n")
    args = ["rescore", "--model", str(model), str(second), "--beams", "2", "--nbest", "2", "--batch-size", "2",
            "--manifest", str(data / "dev.jsonl"), "--out", str(out), "--tune"]  # fmt: skip
    _left_by_a_killed_run(args)
    assert main(args) == 0
    nbests = {nb.id: nb for nb in read_nbest(out.parent / "nbest.jsonl")}
    assert len(nbests) == 5 and nbests["dev001"].seconds != 123.0
    assert all(len(c.att_each) == 2 for nb in nbests.values() for c in nb.candidates)
    hyps = read_hyps(out)
    assert len(hyps) == 5 and all(h.model == f"{model}+{second}" for h in hyps)


def test_ablation_of_an_ensemble_shows_each_decoder_alone_on_its_own_candidates(tmp_path, capsys):
    from benchmarks.rescore_ablation import main, single_decoder
    from data_prep.manifest import Utterance, write_jsonl

    def cand(text, source, each):
        return Candidate(text, source, att=sum(each) / 2, words=len(text.split()), att_each=each)

    nbests = [NBest("1", [cand("x z", "beam", [-1.0, -5.0]), cand("x y", "beam+beam:1", [-2.0, -1.0]),
                          cand("x q", "beam:1", [-9.0, -0.5])])]  # fmt: skip
    zero, one = single_decoder(nbests, 0)[0].candidates, single_decoder(nbests, 1)[0].candidates
    assert [(c.text, c.att) for c in zero] == [("x z", -1.0), ("x y", -2.0)]
    assert [(c.text, c.att) for c in one] == [("x y", -1.0), ("x q", -0.5)]
    write_jsonl(tmp_path / "dev.jsonl", [Utterance(id="1", audio="a.flac", duration=1.0, text="x y", language="sa")])
    write_nbest(tmp_path / "nbest.jsonl", nbests)
    files = ["--nbest", str(tmp_path / "nbest.jsonl"), "--manifest", str(tmp_path / "dev.jsonl")]
    assert main([*files, "--json"]) == 0
    by = {r["scores"]: r for r in map(json.loads, capsys.readouterr().out.splitlines()[1:])}
    # alone, decoder 0 picks "x z" (WER 0.5) and decoder 1 "x q" (0.5); their mean picks "x y"
    assert by["decoder 0 alone, all"]["wer"] == 0.5 and by["decoder 1 alone, all"]["wer"] == 0.5
    assert by["att + word bonus"]["wer"] == 0.0


def test_n_best_records_of_an_older_version_are_decoded_again(tiny_assets, tmp_path):
    from pipeline.cli import main

    model, data = tiny_assets
    out = tmp_path / "v1" / "hyps.jsonl"
    out.parent.mkdir()
    origin = nbest_origin([str(model)], None, None, beams=2, n=2, ctc_proposals=4, language=None)
    current = NBest("dev000", [_cand("bb", -0.1)], seconds=123.0, origin=origin)  # this version's: reused as it is
    old = {**NBest("dev001", [_cand("bb", -0.1)], seconds=123.0, origin=origin).to_json()}
    del old["v"]  # written before records had a version: its att may be another clip's
    (out.parent / "nbest.jsonl.partial").write_text(json.dumps(current.to_json()) + "\n" + json.dumps(old) + "\n")
    args = ["rescore", "--model", str(model), "--beams", "2", "--nbest", "2", "--batch-size", "2",
            "--manifest", str(data / "dev.jsonl"), "--out", str(out)]  # fmt: skip
    _left_by_a_killed_run(args)
    assert main(args) == 0
    nbests = {nb.id: nb for nb in read_nbest(out.parent / "nbest.jsonl")}
    assert nbests["dev000"].seconds == 123.0 and nbests["dev001"].seconds != 123.0
    assert all(nb.version == 2 for nb in nbests.values())
    assert all(json.loads(line)["v"] == 2 for line in (out.parent / "nbest.jsonl").read_text().splitlines())


def test_n_best_records_of_other_weights_or_search_settings_are_decoded_again(tiny_assets, tmp_path):
    """A retrained model in the same directory, or another beam width, does not reuse the finished N-best file."""
    import shutil

    from pipeline.cli import main
    from pipeline.testing.tiny import save_tiny_whisper

    model, data = tiny_assets
    mine = tmp_path / "model"
    shutil.copytree(model, mine)
    out = tmp_path / "dev" / "hyps.jsonl"
    base = ["rescore", "--batch-size", "5", "--manifest", str(data / "dev.jsonl"), "--out", str(out)]
    assert main([*base, "--model", str(mine), "--beams", "2", "--nbest", "2"]) == 0
    first = read_nbest(out.parent / "nbest.jsonl")
    assert len({nb.origin for nb in first}) == 1 and first[0].origin
    assert main([*base, "--model", str(mine), "--beams", "2", "--nbest", "2"]) == 0  # same: reused
    assert read_nbest(out.parent / "nbest.jsonl") == first
    shutil.rmtree(mine)
    save_tiny_whisper(mine, seed=7)  # other weights, same directory
    assert main([*base, "--model", str(mine), "--beams", "2", "--nbest", "2"]) == 0
    second = read_nbest(out.parent / "nbest.jsonl")
    assert all(a.origin != b.origin for a, b in zip(first, second))  # a reused record keeps its origin
    assert main([*base, "--model", str(mine), "--beams", "3", "--nbest", "2"]) == 0
    assert all(a.origin != b.origin for a, b in zip(second, read_nbest(out.parent / "nbest.jsonl")))

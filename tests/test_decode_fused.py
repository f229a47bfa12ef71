"""``decode --fusion-weight``: the rescoring stage's fused beam search as a decoder of new audio."""

from __future__ import annotations

import numpy as np
import pytest

from data_prep.text.normalize import normalize_text
from pipeline.decode.fusion import Fusion
from pipeline.decode.hyps import read_hyps
from pipeline.lm.build import build_char_lm
from pipeline.rescore.candidates import read_nbest
from pipeline.testing.tiny import build_tiny_whisper, write_tiny_corpus

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _restricted_model(out):
    """A tiny Whisper that may write only a, b and spaces (so that an LM of b's can pull it), saved to ``out``."""
    model, processor = build_tiny_whisper(seed=3)
    tok = processor.tokenizer
    keep = {tok.convert_tokens_to_ids(t) for t in ["a", "b", "Ġa", "Ġb", "ab"]} | {model.generation_config.eos_token_id}
    model.generation_config.suppress_tokens = [i for i in range(model.config.vocab_size) if i not in keep]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fused")
    data = write_tiny_corpus(root / "data", n_train=2, n_dev=3)
    arpa = build_char_lm(["b b", "b", "b b b"], 3, root / "lm" / "char.arpa")  # an LM that loves b's
    return root, data, _restricted_model(root / "model"), arpa


def test_fused_decode_writes_the_fused_search_s_best_and_differs_from_the_plain_beam(setup):
    from pipeline.cli import main

    root, data, model, arpa = setup
    common = ["--model", str(model), "--manifest", str(data / "dev.jsonl"), "--batch-size", "3"]
    fused = ["--char-lm", str(arpa.parent), "--fusion-weight", "1", "--fusion-bonus", "1"]
    assert main(["decode", *common, "--num-beams", "3", "--out", str(root / "plain" / "hyps.jsonl")]) == 0
    assert main(["decode", *common, "--num-beams", "3", *fused, "--out", str(root / "fused" / "hyps.jsonl")]) == 0
    assert main(["rescore", *common, "--beams", "3", "--nbest", "3", *fused,
                 "--out", str(root / "rescored" / "hyps.jsonl")]) == 0  # fmt: skip
    plain = {h.id: h.text for h in read_hyps(root / "plain" / "hyps.jsonl")}
    decoded = {h.id: h for h in read_hyps(root / "fused" / "hyps.jsonl")}
    search_pick = {nb.id: next(c.text for c in nb.candidates if c.rank == 0)
                   for nb in read_nbest(root / "rescored" / "nbest.jsonl")}  # fmt: skip
    assert {k: normalize_text(h.text, "sa") for k, h in decoded.items()} == search_pick
    assert all(h.text and h.tokens > 0 for h in decoded.values())
    # the plain beam writes a's too; the LM, which knows only b's, pulls the fused search to them
    assert all("a" in t for t in plain.values()) and all(set(h.text) <= {"b", " "} for h in decoded.values())


def test_a_clip_longer_than_30_s_is_searched_in_pieces_and_joined(setup, monkeypatch):
    from pipeline.decode.fused import fused_batch_decoder
    from pipeline.decode.whisper_nbest import WhisperScorer
    from pipeline.models.whisper import load_whisper

    root, _, model, arpa = setup
    scorer = WhisperScorer(*load_whisper(str(model)), "sa")
    seen = []

    def fake_nbest(encoded, durations, beams, n, fusion=None):
        seen.append(list(durations))
        return [[f"p{k}"] for k in range(len(durations))]

    monkeypatch.setattr(scorer, "nbest", fake_nbest)
    decode = fused_batch_decoder(scorer, Fusion(arpa, 1.0, 1.0), beams=2)
    long = np.random.default_rng(0).normal(0, 0.1, 45 * 16000).astype(np.float32)
    out = decode([np.zeros(16000, np.float32), long])
    assert len(seen[0]) == 3 and seen[0][0] == 1.0  # the short clip, then the long one's two pieces
    assert max(seen[0][1:]) <= 30.0 and sum(seen[0][1:]) == pytest.approx(45.0)
    assert [t for t, _ in out] == ["p0", "p1 p2"]


def test_fused_decode_refuses_what_it_cannot_do(setup, capsys):
    from pipeline.cli import main

    root, data, model, arpa = setup
    base = ["decode", "--model", str(model), "--manifest", str(data / "dev.jsonl"), "--out", str(root / "x.jsonl")]
    assert main([*base, "--fusion-weight", "1"]) == 2
    assert "--char-lm" in capsys.readouterr().err
    assert main([*base, "--fusion-weight", "1", "--char-lm", str(root / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main([*base, "--fusion-weight", "1", "--char-lm", str(arpa), "--task", "translate"]) == 2
    assert "translate" in capsys.readouterr().err
    assert main([*base, "--fusion-weight", "1", "--char-lm", str(arpa), "--fusion-rate-from",
                 str(root / "missing.jsonl")]) == 2  # fmt: skip
    assert "missing.jsonl" in capsys.readouterr().err
    assert not (root / "x.jsonl").exists()


def test_transcribe_takes_the_same_fused_search(setup, tmp_path, capsys):
    import soundfile as sf

    from data_prep.audio import load_audio
    from pipeline.cli import main
    from pipeline.decode.fused import fused_batch_decoder
    from pipeline.decode.whisper_nbest import WhisperScorer
    from pipeline.models.whisper import load_whisper

    _, data, model, arpa = setup
    rng = np.random.default_rng(2)
    files = []
    for k, seconds in enumerate((1.0, 2.5)):
        files.append(tmp_path / f"clip{k}.wav")
        sf.write(files[k], rng.normal(0, 0.1, int(seconds * 16000)).astype(np.float32), 16000)
    fused = ["--char-lm", str(arpa), "--fusion-weight", "1", "--fusion-bonus", "1", "--beams", "3"]
    assert main(["transcribe", "--model", str(model), "--language", "sa", *fused, *map(str, files)]) == 0
    lines = [ln.split("\t") for ln in capsys.readouterr().out.splitlines()]
    decode = fused_batch_decoder(WhisperScorer(*load_whisper(str(model)), "sa"), Fusion(arpa, 1.0, 1.0), beams=3)
    expected = decode([load_audio(f) for f in files])
    assert lines == [[str(f), text] for f, (text, _) in zip(files, expected)]
    assert all(set(text) <= {"b", " "} and text for _, text in lines)
    # an untrained model without --language would detect one; the LM is one language's
    assert main(["transcribe", "--model", str(model), *fused, str(files[0])]) == 2  # bad input, as decode says it
    assert "--language" in capsys.readouterr().err

"""Robust CTC loss, label-length checks and the blank-collapse monitor."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.nn.functional as F
from ctc_fixtures import vocab

from data_prep.manifest import Source, Utterance
from pipeline.models.ctc_loss import (
    check_label_lengths,
    ctc_loss,
    filter_label_too_long,
    min_ctc_frames,
    pad_labels,
)
from pipeline.models.ctc_monitor import BlankCollapseMonitor
from pipeline.models.ctc_vocab import CTCVocab, VocabError


def _case(seed=0, b=3, t=50, v=7, lab=(5, 3, 8)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, v, generator=g)
    seqs = [torch.randint(1, v, (n,), generator=g).tolist() for n in lab]
    labels, lengths = pad_labels(seqs)
    return logits, torch.full((b,), t), labels, lengths, seqs


def test_matches_torch_fp32_reference_for_logits_and_log_probs():
    logits, il, labels, ll, seqs = _case()
    flat = torch.tensor([x for s in seqs for x in s])
    ref = F.ctc_loss(logits.log_softmax(-1).transpose(0, 1), flat, il, ll, blank=0, reduction="mean")
    assert torch.allclose(ctc_loss(logits, il, labels, ll), ref, atol=1e-5)
    assert torch.allclose(ctc_loss(logits.log_softmax(-1), il, labels, ll), ref, atol=1e-5)
    # label lengths derived from the -100 padding; 1-D concatenated labels also work
    assert torch.allclose(ctc_loss(logits, il, labels), ref, atol=1e-5)
    assert torch.allclose(ctc_loss(logits, il, flat, ll), ref, atol=1e-5)


def test_rejects_blank_inside_labels_and_bad_shapes():
    logits, il, labels, ll, _ = _case()
    labels[0, 0] = 0
    with pytest.raises(ValueError, match="blank"):
        ctc_loss(logits, il, labels, ll)
    with pytest.raises(ValueError, match="batch, frames, vocab"):
        ctc_loss(logits[0], il, labels, ll)


def test_fp16_log_softmax_overflow_is_nan_naively_but_finite_here():
    """A confident fp16 model: log-softmax in fp16 gives -inf (< -65504), the naive loss is inf and grads NaN."""
    t, v = 300, 6
    logits = torch.full((1, t, v), -40000.0)
    logits[..., 0] = 40000.0  # blank everywhere, very confident
    logits = logits.half()
    labels, ll = pad_labels([[1, 2, 3, 4, 5]])
    il = torch.tensor([t])

    naive_in = logits.clone().requires_grad_()
    naive_lp = naive_in.log_softmax(-1)  # fp16: -80000 -> -inf
    assert torch.isinf(naive_lp).any()
    naive = F.ctc_loss(naive_lp.float().transpose(0, 1), labels[0, :5], il, ll)
    naive.backward()
    assert not torch.isfinite(naive)
    assert torch.isnan(naive_in.grad).any()

    ours_in = logits.clone().requires_grad_()
    loss = ctc_loss(ours_in, il, labels, ll)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 1000  # a huge but finite loss: the model is very wrong
    assert torch.isfinite(ours_in.grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_impossible_alignment_under_autocast_does_not_poison_the_batch(dtype):
    """One clip whose labels need more frames than it has: naive loss inf / NaN grads, ours trains the others."""
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 6)
    x = torch.randn(2, 15, 8)
    labels, ll = pad_labels([[1, 2, 3], [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 1]])  # 2nd needs 11 + 5 = 16 frames
    il = torch.tensor([15, 15])
    assert [p.index for p in check_label_lengths([[1, 2, 3], labels[1].tolist()], il)] == [1]

    with torch.autocast("cpu", dtype=dtype):
        naive = F.ctc_loss(head(x).log_softmax(-1).transpose(0, 1).float(), labels, il, ll)
    naive.backward()
    assert not torch.isfinite(naive)
    assert torch.isnan(head.weight.grad).any()

    head.zero_grad()
    with torch.autocast("cpu", dtype=dtype):
        loss = ctc_loss(head(x), il, labels, ll)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0


def test_bf16_long_sequence_matches_fp32_of_the_same_logits():
    """bf16 log-probs (8-bit mantissa) bias a long utterance's loss; ours takes the log-softmax in fp32."""
    g = torch.Generator().manual_seed(1)
    t, v = 3000, 40
    logits = (torch.randn(1, t, v, generator=g) * 8).bfloat16()
    labels, ll = pad_labels([torch.randint(1, v, (300,), generator=g).tolist()])
    il = torch.tensor([t])
    ref = F.ctc_loss(logits.float().log_softmax(-1).transpose(0, 1), labels, il, ll, reduction="sum")
    naive = F.ctc_loss(logits.log_softmax(-1).float().transpose(0, 1), labels, il, ll, reduction="sum")
    ours = ctc_loss(logits, il, labels, ll, reduction="sum")
    assert abs(ours - ref) < 1e-2
    assert abs(naive - ref) > 10 * abs(ours - ref)


def test_min_ctc_frames_counts_blanks_between_repeats():
    assert min_ctc_frames([]) == 0
    assert min_ctc_frames([3, 4, 5]) == 3
    assert min_ctc_frames([3, 3, 3]) == 5
    assert min_ctc_frames([3, 4, 4, 5, 5]) == 7


def test_check_label_lengths_boundaries_and_margin():
    labels = [[1, 2], [1, 1], [1, 2, 3]]
    problems = check_label_lengths(labels, [2, 2, 3], ids=["a", "b", "c"])
    assert [(p.index, p.id, p.needed, p.frames, p.reason) for p in problems] == [(1, "b", 3, 2, "label_too_long")]
    assert "needs at least 3" in problems[0].detail
    assert [p.index for p in check_label_lengths(labels, torch.tensor([2, 3, 3]), margin=1)] == [0, 1, 2]
    with pytest.raises(ValueError, match="frame counts"):
        check_label_lengths(labels, [1, 2])


def test_filter_label_too_long_makes_manifest_rejects():
    voc = vocab()
    utts = [
        Utterance(id="ok", audio="a.flac", duration=1.0, text="ab", source=Source("m.tsv", 2)),
        Utterance(id="fast", audio="b.flac", duration=0.1, text="abcd abcd", source=Source("m.tsv", 3)),
    ]
    # 50 output frames per second, like Whisper's encoder
    kept, rejects = filter_label_too_long(utts, voc, lambda n: n // 320)
    assert [u.id for u in kept] == ["ok"]
    assert [(r.id, r.reason, str(r.source)) for r in rejects] == [("fast", "label_too_long", "m.tsv:3")]


def test_pad_labels():
    labels, lengths = pad_labels([[3, 4], [5], []])
    assert labels.tolist() == [[3, 4], [5, -100], [-100, -100]]
    assert lengths.tolist() == [2, 1, 0]


def test_vocab_encode_decode_and_errors(tmp_path):
    voc = vocab()
    assert voc.encode("ab c") == [3, 4, 2, 5]
    assert voc.encode("ax") == [3, 1]  # unknown character -> <unk>
    with pytest.raises(VocabError, match="U\\+0078"):
        voc.encode("ax", strict=True)
    assert voc.collapse([0, 3, 3, 0, 3, 2, 2, 4, 0]) == [3, 3, 2, 4]
    assert voc.ids_to_text([2, 3, 1, 2, 2, 4, 2]) == "a b"
    voc.save(tmp_path / "vocab.json")
    assert CTCVocab.load(tmp_path / "vocab.json") == voc
    (tmp_path / "bad.json").write_text('{"<pad>": 0, "a": 2}')
    with pytest.raises(VocabError, match="bad.json"):
        CTCVocab.load(tmp_path / "bad.json")
    with pytest.raises(VocabError, match="blank"):
        CTCVocab({"a": 0})


def test_blank_collapse_monitor(caplog):
    mon = BlankCollapseMonitor(warmup_steps=100, threshold=0.8, patience=2)
    assert not mon.update(50, ["", "", ""]).collapsed  # still warming up
    assert not mon.update(100, ["", "", "", "", "a"]).collapsed  # 1st strike
    with caplog.at_level(logging.WARNING):
        rep = mon.update(200, ["", " ", "", "", "a"])
    assert rep.collapsed and mon.collapsed and rep.empty_fraction == pytest.approx(0.8)
    assert "lower the encoder" in rep.message and "collapsed" in caplog.text
    assert not mon.update(300, ["ab", "", "ca"]).collapsed
    with pytest.raises(ValueError):
        BlankCollapseMonitor(10, threshold=0.0)


def test_blank_collapse_monitor_state_survives_a_restart():
    mon = BlankCollapseMonitor(warmup_steps=0, threshold=0.5, patience=2)
    mon.update(10, ["", ""])  # first strike
    restored = BlankCollapseMonitor(warmup_steps=0, threshold=0.5, patience=2)
    restored.load_state_dict(json.loads(json.dumps(mon.state_dict())))  # as a checkpoint stores it
    assert restored.strikes == 1 and [r.step for r in restored.history] == [10]
    assert restored.update(20, ["", ""]).collapsed  # the second strike counts across the restart

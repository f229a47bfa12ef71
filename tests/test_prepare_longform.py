"""``prepare --format longform`` end to end, with a tiny CTC model trained on the tone alphabet."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from align_fixtures import tone_recording
from ctc_fixtures import SR, TEXTS, tiny_whisper_encoder, vocab, whisper_batch
from tree_fixtures import tree_digest

from data_prep.manifest import read_manifest, read_rejects
from pipeline.align.emissions import emissions
from pipeline.cli import main as cli
from pipeline.models.ctc import WhisperCTCConfig, WhisperEncoderCTC, ctc_param_groups
from pipeline.models.ctc_checkpoint import save_ctc_model
from pipeline.models.ctc_heads import HeadConfig
from pipeline.testing.ctc import train_ctc_steps

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny Whisper-encoder CTC system that has learnt the tones (120 steps, seconds)."""
    voc = vocab()
    whisper, fe = tiny_whisper_encoder()
    torch.manual_seed(0)
    hc = HeadConfig(kind="transformer", dim=32, layers=1, heads=2, ffn=64, dropout=0.0)
    net = WhisperEncoderCTC(whisper, voc, WhisperCTCConfig(head=hc, trainable_top_layers=-1)).train()
    opt = torch.optim.AdamW(ctc_param_groups(net, 1e-2, 3e-3), lr=1e-3)
    train_ctc_steps(net, [whisper_batch(fe, TEXTS, voc)], opt, 120)
    return save_ctc_model(net.eval(), tmp_path_factory.mktemp("model") / "ctc", feature_extractor=fe)


@pytest.fixture
def corpus(tmp_path):
    """Two speakers' recordings with their transcripts, one recording without a transcript, one that
    is not audio."""
    root = tmp_path / "corpus"
    for spk, lines in (("s1", TEXTS[:6]), ("s2", TEXTS[2:])):
        (root / spk).mkdir(parents=True)
        wave, _ = tone_recording(lines, pause_s=0.5)
        sf.write(root / spk / "talk.wav", wave, SR)
        (root / spk / "talk.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sf.write(root / "s1" / "untold.wav", tone_recording(["ab"])[0], SR)
    (root / "s2" / "broken.wav").write_bytes(b"not audio at all" * 64)
    (root / "s2" / "broken.txt").write_text("ab\n", encoding="utf-8")
    return root


def _args(corpus, model, out, *more):
    return ["prepare", "--format", "longform", "--src", str(corpus), "--align-model", str(model), "--lang", "en",
            "--out", str(out), "--split-speakers", "dev=s2", "--split-ratios", "1,0,0", "--allow-speaker-overlap",
            "--no-progress", "--vad", "energy", "--trim-vad", "none", *more]  # fmt: skip


def test_recordings_become_utterances_and_bad_files_rejects(corpus, model, tmp_path, capsys):
    before = tree_digest(corpus), tree_digest(model)
    out = tmp_path / "out"
    assert cli(_args(corpus, model, out, "--min-align-score", "-1000")) == 0
    assert (tree_digest(corpus), tree_digest(model)) == before
    utts = read_manifest(out / "manifest.jsonl")
    texts = {spk: [u.text for u in utts if u.speaker == spk] for spk in ("s1", "s2")}
    assert texts == {"s1": TEXTS[:6], "s2": TEXTS[2:]}
    assert all(u.id.startswith(f"{u.speaker}-talk-") and u.duration <= 20 for u in utts)
    assert [u.source.line for u in utts if u.speaker == "s1"] == [1, 2, 3, 4, 5, 6]
    rejects = {r.reason: r for r in read_rejects(out / "rejects.jsonl")}
    assert set(rejects) == {"missing_text", "unreadable_audio"}
    assert "untold" in rejects["missing_text"].source.file and "broken.wav" in rejects["unreadable_audio"].detail
    seconds = json.loads((out / "accounting.json").read_text())["seconds"]
    assert seconds["balanced"] and seconds["recordings"] == 4 and seconds["rejected_s"]["missing_text"] > 0
    assert seconds["recordings_of_unknown_length"] == 1  # the file that is not audio
    assert json.loads((out / "prepare.json").read_text())["longform"]["max_utterance_s"] == 20.0
    assert "[OK]" in capsys.readouterr().out
    # the same command again: nothing aligned anew, the same outputs
    manifest = (out / "manifest.jsonl").read_bytes()
    assert cli(_args(corpus, model, out, "--min-align-score", "-1000")) == 0
    assert (out / "manifest.jsonl").read_bytes() == manifest


def test_exit_status_as_for_other_formats(corpus, model, tmp_path, capsys):
    out = tmp_path / "out"
    before = tree_digest(tmp_path), tree_digest(model)
    args = _args(corpus, model, out)
    without_model = [a for a in args if a not in ("--align-model", str(model))]
    assert cli(without_model) == 2 and "needs --align-model" in capsys.readouterr().err
    assert cli(_args(corpus, corpus, out)) == 2 and "not a CTC checkpoint" in capsys.readouterr().err
    assert cli([*args, "--max-utterance-s", "40"]) == 2 and "--max-duration" in capsys.readouterr().err
    assert cli(_args(corpus, model, model / "out")) == 2 and "--out" in capsys.readouterr().err
    assert not (model / "out").exists()
    assert (tree_digest(tmp_path), tree_digest(model)) == before and not out.exists()
    # every segment below the score: nothing accepted, status 1 as for a corpus all of whose rows are rejected
    assert cli(_args(corpus, model, out, "--min-align-score", "0")) == 1
    assert {r.reason for r in read_rejects(out / "rejects.jsonl")} >= {"low_alignment_score"}


def test_emissions_of_a_long_recording_tile_its_frames(model):
    """Windows of 3 s overlapping by 1 s give exactly the frames one pass over the recording would."""
    from pipeline.decode.ctc import load_ctc_acoustics

    net, _, fe = load_ctc_acoustics(model)
    wave, _ = tone_recording(TEXTS * 2)
    em = emissions(net, wave, fe, window_s=3.0, context_s=0.5)
    assert len(wave) / SR > 9 and em.log_probs.shape[0] == net.output_frames(len(wave))
    assert em.frame_s == 0.02 and np.isfinite(em.log_probs.numpy()).all()

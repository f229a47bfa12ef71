"""Shifted test sets (``python -m pipeline degrade``): what is asked is what is measured on the written audio,
the same seed writes the same bytes, every input utterance is accounted for, and the inputs stay as they were."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.degrade import Condition, DegradeError, degrade
from data_prep.degrade_dsp import band_energy_fraction
from data_prep.manifest import Source, Utterance, read_manifest, read_rejects, write_jsonl
from data_prep.outputs import OutputRefused, ResumeError
from tests.tree_fixtures import tree_digest

SR = 16000


def _voice(rng: np.random.Generator, f0: float, seconds: float) -> np.ndarray:
    """A buzzy, syllable-modulated tone with a noise floor: energy from 100 Hz to 8 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    harmonics = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 40) if f0 * k < 7900)
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * harmonics * envelope + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def write_split(root: Path, name: str, speakers: list[str], per_speaker: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    utts = []
    for s, spk in enumerate(speakers):
        for i in range(per_speaker):
            uid = f"{name}-{spk}-{i}"
            sf.write(root / "audio" / f"{uid}.wav", _voice(rng, 110 + 40 * s, rng.uniform(0.6, 1.0)), SR)
            utts.append(Utterance(id=uid, audio=f"audio/{uid}.wav", duration=0.0, text="ab", text_raw="ab",
                                  language="sa", speaker=spk, split=name, source=Source("x.tsv", len(utts) + 1)))
    write_jsonl(root / f"{name}.jsonl", utts)
    return root / f"{name}.jsonl"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_split(root, "test", ["a", "b"], 2, seed=1)
    write_split(root, "train", ["a", "b", "c"], 2, seed=2)
    return root


def written(out: Path) -> list[tuple[Utterance, np.ndarray]]:
    return [(u, sf.read(out / u.audio, dtype="float32")[0]) for u in read_manifest(out / f"{out.name}.jsonl")]


def clean(data: Path, uid: str) -> np.ndarray:
    return sf.read(data / "audio" / f"{uid}.wav", dtype="float32")[0]


def test_the_same_seed_writes_the_same_bytes_and_another_seed_other_noise(data, tmp_path):
    cond = Condition("babble", snr_db=10)
    outs = [tmp_path / "shift" / f"run{i}" / "test_babble" for i in range(3)]
    for out, seed in zip(outs, (7, 7, 8), strict=True):
        degrade(data / "test.jsonl", out, cond, seed=seed, noise_manifest=data / "train.jsonl")
    first, second, other = (tree_digest(o) for o in outs)
    assert first == second and len(first) >= 4 + 3
    assert {k: v for k, v in first.items() if k.startswith("audio/")} != \
        {k: v for k, v in other.items() if k.startswith("audio/")}  # fmt: skip


@pytest.mark.parametrize("cond", [Condition("noise", snr_db=20), Condition("noise", snr_db=10, color="brown"),
                                  Condition("noise", snr_db=5), Condition("babble", snr_db=10, talkers=2)],
                         ids=lambda c: c.label)  # fmt: skip
def test_the_snr_measured_on_the_written_audio_is_the_asked_one(data, tmp_path, cond):
    out = tmp_path / "shift" / "test_noisy"
    noise = data / "train.jsonl" if cond.kind == "babble" else None
    s = degrade(data / "test.jsonl", out, cond, seed=0, noise_manifest=noise)
    measured = []
    for utt, y in written(out):
        x = clean(data, utt.id)
        g = float(np.dot(y, x) / np.dot(x, x))  # the mix may have been turned down as a whole
        measured.append(10 * np.log10(np.sum((g * x) ** 2) / np.sum((y - g * x) ** 2)))
    assert len(measured) == 4
    assert max(abs(m - cond.snr_db) for m in measured) < 0.5, measured
    record = json.loads((out / "degrade.json").read_text())
    assert abs(record["measured"]["snr_db"]["mean"] - cond.snr_db) < 0.5
    assert record["condition"]["snr_db"] == cond.snr_db and record["seed"] == 0 and s.written == 4


def test_babble_is_made_of_other_speakers_only(data):
    from data_prep.degrade import BabblePool, clip_generator

    pool = BabblePool(data / "train.jsonl")
    (utt,) = [u for u in read_manifest(data / "test.jsonl") if u.speaker == "a"][:1]
    talkers = pool.talkers(utt, 5, 16000, clip_generator(0, utt.id))
    by_tensor = {id(pool.audio(u)): u.speaker for us in pool.speakers.values() for u in us}
    assert len(talkers) == 2  # b and c: never a, however many are asked for
    assert {by_tensor[id(a)] for t in talkers for a in t} == {"b", "c"}


def test_the_telephone_channel_leaves_no_energy_above_4_khz(data, tmp_path):
    (data / "prepare.json").write_text(json.dumps({"process": {"rules": "sa-Latn"}}))
    out = tmp_path / "shift" / "test_telephone"
    degrade(data / "test.jsonl", out, Condition("telephone"), seed=0)
    assert json.loads((out / "degrade.json").read_text())["text_rules"] == "sa-Latn"  # what score normalizes with
    import torch

    for utt, y in written(out):
        before = band_energy_fraction(torch.from_numpy(clean(data, utt.id)), 4000.0)
        after = band_energy_fraction(torch.from_numpy(y), 4000.0)
        assert before > 0.01 and after < 1e-3, (before, after)  # above 4 kHz: -30 dB at most
        assert len(y) == len(clean(data, utt.id)) and "degraded:telephone" in utt.flags
    assert json.loads((out / "degrade.json").read_text())["measured"]["above_4k_db"]["max"] < -30


def test_reverb_impulse_responses_have_the_asked_reverberation_time(data, tmp_path):
    out = tmp_path / "shift" / "test_reverb"
    degrade(data / "test.jsonl", out, Condition("reverb", rt60_s=0.6), seed=0)
    rt60 = json.loads((out / "degrade.json").read_text())["measured"]["rt60_s"]
    assert 0.5 < rt60["min"] <= rt60["max"] < 0.7


def test_every_input_utterance_is_written_or_rejected_with_a_reason(data, tmp_path):
    utts = read_manifest(data / "test.jsonl")
    (data / "audio" / "bad.wav").write_bytes(b"RIFF not a wave file")
    sf.write(data / "audio" / "silent.wav", np.zeros(8000, dtype=np.float32), SR)
    extra = [utts[0].replace(id="gone", audio="audio/missing.wav"), utts[0].replace(id="bad", audio="audio/bad.wav"),
             utts[0].replace(id="silent", audio="audio/silent.wav")]  # fmt: skip
    write_jsonl(data / "mixed.jsonl", [*utts, *extra])
    out = tmp_path / "shift" / "mixed_noise"
    s = degrade(data / "mixed.jsonl", out, Condition("noise", snr_db=10), seed=0)
    kept = [u.id for u in read_manifest(out / "mixed_noise.jsonl")]
    rejects = {r.id: r for r in read_rejects(out / "rejects.jsonl")}
    assert kept == [u.id for u in utts]
    assert {k: r.reason for k, r in rejects.items()} == {"gone": "missing_audio", "bad": "unreadable_audio",
                                                          "silent": "silent_audio"}  # fmt: skip
    assert rejects["bad"].source == Source(str(data / "mixed.jsonl"), 6) and "bad.wav" in rejects["bad"].detail
    counts = json.loads((out / "degrade.json").read_text())["counts"]
    assert counts == {"input": 7, "written": 4, "rejected": {"missing_audio": 1, "silent_audio": 1,
                                                            "unreadable_audio": 1}}  # fmt: skip
    assert s.written == 4


def test_babble_without_another_speaker_rejects_the_clip(data, tmp_path):
    only_a = [u for u in read_manifest(data / "train.jsonl") if u.speaker == "a"]
    write_jsonl(data / "train_a.jsonl", only_a)
    out = tmp_path / "shift" / "test_babble"
    degrade(data / "test.jsonl", out, Condition("babble"), noise_manifest=data / "train_a.jsonl")
    assert [u.speaker for u in read_manifest(out / "test_babble.jsonl")] == ["b", "b"]
    assert {r.reason for r in read_rejects(out / "rejects.jsonl")} == {"no_noise_source"}


def test_the_inputs_are_left_as_they_were(data, tmp_path):
    before = tree_digest(data)
    degrade(data / "test.jsonl", tmp_path / "shift" / "t", Condition("babble"), noise_manifest=data / "train.jsonl")
    degrade(data / "test.jsonl", tmp_path / "shift" / "r", Condition("reverb"))
    assert tree_digest(data) == before


def test_an_out_that_holds_an_input_or_another_runs_set_is_refused(data, tmp_path):
    with pytest.raises(OutputRefused, match="contains the input"):
        degrade(data / "test.jsonl", data, Condition("telephone"))
    with pytest.raises(OutputRefused, match="lies inside the input"):
        degrade(data / "test.jsonl", data / "audio" / "x", Condition("telephone"))
    out = tmp_path / "shift" / "t"
    degrade(data / "test.jsonl", out, Condition("noise", snr_db=10))
    with pytest.raises(ResumeError, match="snr_db"):
        degrade(data / "test.jsonl", out, Condition("noise", snr_db=5))
    degrade(data / "test.jsonl", out, Condition("noise", snr_db=5), force=True)
    assert json.loads((out / "degrade.json").read_text())["condition"]["snr_db"] == 5
    with pytest.raises(DegradeError, match="--noise-manifest"):
        degrade(data / "test.jsonl", tmp_path / "b", Condition("babble"))


def test_the_command_writes_the_set_and_refuses_bad_settings_with_exit_2(data, tmp_path, capsys):
    from pipeline.cli import main

    cmd = ["degrade", "--manifest", str(data / "test.jsonl")]
    assert main([*cmd, "--condition", "telephone", "--out", str(tmp_path / "s" / "test_tel")]) == 0
    assert "telephone: 4 utterances" in capsys.readouterr().out
    assert (tmp_path / "s" / "test_tel" / "test_tel.jsonl").is_file()
    assert main([*cmd, "--condition", "babble", "--out", str(tmp_path / "s" / "b")]) == 2
    err = capsys.readouterr().err
    assert "--noise-manifest" in err and err.count("\n") == 1


def test_the_python_api_does_what_the_command_does(data, tmp_path):
    import pipeline

    record = pipeline.degrade_test_set(data / "test.jsonl", tmp_path / "s" / "test_noise", "noise", snr_db=5,
                                       color="brown", seed=3)  # fmt: skip
    assert record["condition"] == {"kind": "noise", "snr_db": 5, "color": "brown"} and record["seed"] == 3
    assert record["label"] == "noise_brown_5db" and record["counts"]["written"] == 4
    assert json.loads((tmp_path / "s" / "test_noise" / "degrade.json").read_text()) == record


def test_an_id_suffix_renames_the_utterances_of_the_same_audio(data, tmp_path, capsys):
    """Sets of one split in several conditions pooled (e.g. unlabeled audio to pseudo-label) need distinct ids."""
    from pipeline.cli import main

    cond = Condition("babble", snr_db=5)
    plain = tmp_path / "s" / "dev_babble5"
    suffixed = tmp_path / "t" / "dev_babble5"
    degrade(data / "test.jsonl", plain, cond, noise_manifest=data / "train.jsonl")
    degrade(data / "test.jsonl", suffixed, cond, noise_manifest=data / "train.jsonl", id_suffix="_babble5")
    (a, b) = (written(o) for o in (plain, suffixed))
    assert [u.id + "_babble5" for u, _ in a] == [u.id for u, _ in b]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(a, b, strict=True))  # the same clips
    with pytest.raises(ResumeError, match="id_suffix"):  # another suffix is another set
        degrade(data / "test.jsonl", suffixed, cond, noise_manifest=data / "train.jsonl", id_suffix="_x")
    bad = ["degrade", "--manifest", str(data / "test.jsonl"), "--condition", "telephone", "--id-suffix", "a b",
           "--out", str(tmp_path / "u" / "d")]  # fmt: skip
    assert main(bad) == 2 and "--id-suffix 'a b'" in capsys.readouterr().err

"""The bundled real Whisper models, converted by us, against CTranslate2 running the same files.

Slow (loads 74M-parameter weights): run with ``make test-slow``.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ctranslate2 = pytest.importorskip("ctranslate2")
pytest.importorskip("espeakng_loader")

from data_prep.synth import synthesize  # noqa: E402
from pipeline.pretrained.registry import BUNDLED  # noqa: E402

pytestmark = pytest.mark.slow

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
]


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    """Convert into a throw-away cache unless the caller chose one."""
    if os.environ.get("ASR_ADAPT_CACHE"):
        yield
        return
    os.environ["ASR_ADAPT_CACHE"] = str(tmp_path_factory.mktemp("asr_cache"))
    yield
    del os.environ["ASR_ADAPT_CACHE"]


def _joined_ct2_dir(name: str, dest):
    """The package's CT2 files in one folder with model.bin whole, as CTranslate2 needs them."""
    bundled = BUNDLED[name]
    if not bundled.installed:
        pytest.skip(f"{name}: install the weight packages ({', '.join(bundled.pip_packages)})")
    dirs = bundled.package_dirs()
    dest.mkdir()
    for f in dirs[0].iterdir():
        if f.is_file() and not f.name.startswith("model.bin"):
            shutil.copy(f, dest / f.name)
    parts = sorted((p for d in dirs for p in d.glob("model.bin*")), key=lambda p: p.name)
    with open(dest / "model.bin", "wb") as out:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, out)
    return dest


@pytest.mark.parametrize("name,language", [("whisper-base", "en"), ("whisper-tiny.en", None)])
def test_transcripts_and_logits_match_ctranslate2(name, language, tmp_path):
    from pipeline.decode.whisper import transcribe_arrays
    from pipeline.models.whisper import load_whisper

    torch.set_num_threads(1)
    ct2_dir = _joined_ct2_dir(name, tmp_path / "ct2")
    model, processor = load_whisper(name)
    gen = model.generation_config
    prompt = [gen.decoder_start_token_id]
    if gen.is_multilingual:
        prompt += [gen.lang_to_id[f"<|{language}|>"], gen.task_to_id["transcribe"]]
    prompt += [gen.no_timestamps_token_id]
    ct = ctranslate2.models.Whisper(str(ct2_dir), compute_type="float32", intra_threads=1)

    for sentence in SENTENCES:
        audio = synthesize(sentence)
        feats = processor.feature_extractor([audio], sampling_rate=16000, return_tensors="np").input_features
        ref = ct.generate(ctranslate2.StorageView.from_array(feats), [prompt], beam_size=1)[0]
        ref_text = processor.tokenizer.decode(ref.sequences_ids[0], skip_special_tokens=True).strip()
        ours = transcribe_arrays(model, processor, [audio], language=language, batch_size=1, progress=False)[0]
        assert ours == ref_text
        assert len(ref_text.split()) >= 5  # a real transcript, not an empty agreement

        raw = ct.generate(
            ctranslate2.StorageView.from_array(feats),
            [prompt],
            beam_size=1,
            max_length=len(prompt) + 2,
            return_logits_vocab=True,
            suppress_blank=False,
            suppress_tokens=[],
        )[0]
        ref_logits = np.asarray(raw.logits[0][0], dtype=np.float32)
        with torch.inference_mode():
            logits = model(input_features=torch.from_numpy(feats), decoder_input_ids=torch.tensor([prompt])).logits
        diff = float(np.abs(logits[0, -1].numpy() - ref_logits).max())
        print(f"{name}: first-step logits max abs diff {diff:.2e} ({sentence!r})")  # the BENCHMARKS figure (-s)
        assert diff <= 1e-3, f"{name}: first-step logits differ by {diff}"

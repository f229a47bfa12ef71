"""Speech synthesis with espeak-ng, for tests and demo corpora that need real speech offline.

The library and its voice data come from the ``espeakng-loader`` wheel; we call
it through ctypes in synchronous mode: ``espeak_Synth`` returns once the whole
text is spoken, having handed the samples (16-bit mono at espeak's own rate,
22050 Hz) to our callback. espeak-ng keeps global state, so it is initialised
once per process and every call holds a lock. Repeated calls with the same
arguments differ by a few samples: espeak's waveform generator carries its
phase over from one utterance to the next. Its random numbers (the breath noise
of voice variants such as ``f2``) are seeded from the clock when the library
starts; each call reseeds them from its own arguments, so the same calls in the
same order give the same samples in every process.

    from data_prep.synth import synthesize
    y = synthesize("the quick brown fox", voice="en+f3", rate_wpm=150, pitch=60)  # float32, 16 kHz
"""

from __future__ import annotations

import ctypes
import threading
import zlib

import numpy as np

from data_prep.audio import TARGET_SR, resample

# Constants of espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # end with a sentence pause, so speech does not stop abruptly
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class SynthError(RuntimeError):
    """espeak-ng is missing or refused the request."""


class _Espeak:
    """The process-wide espeak-ng instance."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise SynthError("speech synthesis needs the espeakng-loader package (pip install espeakng-loader)") from e
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.set_seed = getattr(self.lib, "espeak_ng_SetRandSeed", None)  # espeak-ng >= 1.52
        if self.set_seed is not None:
            self.set_seed.argtypes = [ctypes.c_long]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,  # text
            ctypes.c_size_t,  # size in bytes, including the terminator
            ctypes.c_uint,  # position
            ctypes.c_int,  # position type
            ctypes.c_uint,  # end position (0 = none)
            ctypes.c_uint,  # flags
            ctypes.POINTER(ctypes.c_uint),  # unique identifier (unused)
            ctypes.c_void_p,  # user data
        ]
        data = espeakng_loader.get_data_path().encode()
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.rate <= 0:
            raise SynthError(f"espeak-ng failed to initialise with data at {data.decode()}")
        self._chunks: list[np.ndarray] = []
        # Keep a reference: ctypes callbacks are freed with their Python object.
        self._callback = _SYNTH_CALLBACK(self._collect)
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lock = threading.Lock()

    def _collect(self, wav, numsamples: int, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # 0 = continue synthesis

    def speak(self, text: str, voice: str, rate_wpm: int, pitch: int) -> np.ndarray:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise SynthError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_PARAM_RATE, int(rate_wpm), 0)
            self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            if self.set_seed is not None:
                self.set_seed(zlib.crc32(f"{voice}|{rate_wpm}|{pitch}|{text}".encode()))
            self._chunks = []
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            err = self.lib.espeak_Synth(buf, ctypes.sizeof(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
            if err != _EE_OK:
                raise SynthError(f"espeak-ng could not synthesize {text[:40]!r} (error {err})")
            chunks, self._chunks = self._chunks, []
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return samples.astype(np.float32) / 32768.0


_engine: _Espeak | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Espeak:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Espeak()
        return _engine


def synthesize(text: str, voice: str = "en", rate_wpm: int = 160, pitch: int = 50) -> np.ndarray:
    """Speak ``text`` with an espeak-ng voice (e.g. "en", "en-us", "hi", "en+f3"); float32 mono at 16 kHz.

    ``rate_wpm`` is the speaking rate in words per minute (espeak accepts 80-450),
    ``pitch`` the base pitch 0-100.
    """
    if not text.strip():
        raise ValueError("synthesize: empty text")
    if not 80 <= rate_wpm <= 450:
        raise ValueError(f"synthesize: rate_wpm {rate_wpm} outside espeak's 80..450")
    if not 0 <= pitch <= 100:
        raise ValueError(f"synthesize: pitch {pitch} outside 0..100")
    engine = _get_engine()
    audio = engine.speak(text, voice, rate_wpm, pitch)
    return resample(audio, engine.rate, TARGET_SR)


def native_rate() -> int:
    """espeak-ng's own output rate (22050 Hz for its standard voices)."""
    return _get_engine().rate

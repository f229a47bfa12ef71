"""The signal processing behind ``degrade``: a telephone channel, generated and babble noise mixed at a
signal-to-noise ratio, synthetic reverberation, and the measurements that check them.

Every function takes and returns mono float32 tensors at :data:`SR` and draws its randomness from the
``torch.Generator`` it is given, so a clip degrades to the same samples whatever else runs.
The DSP is torchaudio's (``torchaudio.functional``): resampling, biquad filters, mu-law, ``add_noise``,
``fftconvolve``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

SR = 16000
#: Narrowband telephony (G.711/G.712): 8 kHz sampling, a 300-3400 Hz pass band, 8-bit mu-law.
PHONE_SR = 8000
PHONE_BAND_HZ = (300.0, 3400.0)
MU_LAW_CHANNELS = 256
#: An amplitude that decays 60 dB falls by this factor: exp(-ln(1000)).
_DECAY_60DB = math.log(1000.0)
NOISE_COLORS = ("pink", "brown", "white")


def telephone(x: torch.Tensor) -> torch.Tensor:
    """``x`` as heard through a narrowband telephone line, back at :data:`SR` with its length.

    Resampled to 8 kHz (nothing above 4 kHz survives), band-passed to 300-3400 Hz (a second-order
    high-pass and low-pass, each run twice: 24 dB per octave), mu-law encoded to 8 bits and decoded,
    and resampled to 16 kHz.
    """
    import torchaudio.functional as F

    y = F.resample(x, SR, PHONE_SR)
    for _ in range(2):
        y = F.highpass_biquad(y, PHONE_SR, PHONE_BAND_HZ[0])
        y = F.lowpass_biquad(y, PHONE_SR, PHONE_BAND_HZ[1])
    y = F.mu_law_decoding(F.mu_law_encoding(y.clamp(-1.0, 1.0), MU_LAW_CHANNELS), MU_LAW_CHANNELS)
    return fit_length(F.resample(y, PHONE_SR, SR), x.shape[-1])


def fit_length(y: torch.Tensor, n: int) -> torch.Tensor:
    """``y`` cut or zero-padded to ``n`` samples."""
    return y[..., :n] if y.shape[-1] >= n else torch.nn.functional.pad(y, (0, n - y.shape[-1]))


def colored_noise(n: int, color: str, generator: torch.Generator) -> torch.Tensor:
    """Stationary Gaussian noise of unit RMS whose power falls as 1/f (pink), 1/f^2 (brown) or not (white)."""
    if color not in NOISE_COLORS:
        raise ValueError(f"noise color must be one of {', '.join(NOISE_COLORS)}, not {color!r}")
    white = torch.randn(max(n, 2), generator=generator)
    if color != "white":
        spectrum = torch.fft.rfft(white)
        f = torch.arange(spectrum.shape[-1], dtype=torch.float32)
        f[0] = 1.0  # the DC bin is removed below; this only avoids dividing by zero
        spectrum = spectrum / (f.sqrt() if color == "pink" else f)
        spectrum[0] = 0.0
        white = torch.fft.irfft(spectrum, n=white.shape[-1])
    return unit_rms(white[:n])


def unit_rms(x: torch.Tensor) -> torch.Tensor:
    rms = x.pow(2).mean().sqrt()
    return x / rms if rms > 0 else x


def talker_stream(clips: Sequence[torch.Tensor], n: int, generator: torch.Generator) -> torch.Tensor:
    """One talker: ``clips`` one after another (as often as needed), ``n`` samples from a random start, unit RMS."""
    need = 2 * n
    parts, total = [], 0
    while total < need:
        for c in clips:
            parts.append(c)
            total += c.shape[-1]
    stream = torch.cat(parts)
    start = int(torch.randint(0, stream.shape[-1] - n + 1, (1,), generator=generator))
    return unit_rms(stream[start : start + n])


def babble(talkers: Sequence[Sequence[torch.Tensor]], n: int, generator: torch.Generator) -> torch.Tensor:
    """The sum of several talkers at equal level (each a list of clips), ``n`` samples, unit RMS."""
    return unit_rms(torch.stack([talker_stream(t, n, generator) for t in talkers]).sum(dim=0))


def mix_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``x`` plus ``noise`` scaled so that the energy ratio of the two is ``snr_db`` over the whole clip."""
    import torchaudio.functional as F

    return F.add_noise(x[None], noise[None], torch.tensor([float(snr_db)]))[0]


def synthetic_rir(rt60_s: float, generator: torch.Generator, sr: int = SR) -> torch.Tensor:
    """A room impulse response: a direct path, then Gaussian noise whose envelope decays 60 dB in ``rt60_s``.

    Unit energy; ``rt60_s`` long (the tail is 60 dB down by then).
    """
    if not rt60_s > 0:
        raise ValueError(f"rt60 must be positive, not {rt60_s}")
    n = max(2, int(round(rt60_s * sr)))
    t = torch.arange(n, dtype=torch.float32) / sr
    h = torch.randn(n, generator=generator) * torch.exp(-_DECAY_60DB * t / rt60_s)
    h[0] = h.abs().max() * 2  # the direct sound arrives first and loudest
    return h / h.pow(2).sum().sqrt()


def reverberate(x: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """``x`` convolved with ``rir``, cut to its length and brought back to its RMS."""
    import torchaudio.functional as F

    y = F.fftconvolve(x, rir)[: x.shape[-1]]
    rms_x, rms_y = x.pow(2).mean().sqrt(), y.pow(2).mean().sqrt()
    return y * (rms_x / rms_y) if rms_y > 0 else y


def snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    """10 log10 of the energy of ``clean`` over that of ``noisy - clean``."""
    noise = (noisy.double() - clean.double()).pow(2).sum()
    signal = clean.double().pow(2).sum()
    if noise == 0:
        return math.inf
    return float(10 * torch.log10(signal / noise))


def rt60_of(rir: torch.Tensor, sr: int = SR) -> float:
    """The reverberation time of ``rir`` measured as rooms are (ISO 3382 T20): the slope of the Schroeder
    decay curve between -5 and -25 dB, extrapolated to 60 dB."""
    energy = rir.double().pow(2).flip(0).cumsum(0).flip(0)
    edc = 10 * torch.log10(energy / energy[0])
    idx = torch.nonzero((edc <= -5) & (edc >= -25)).flatten()
    if idx.numel() < 2:
        return float("nan")
    t = idx.double() / sr
    y = edc[idx]
    slope = float(((t - t.mean()) * (y - y.mean())).sum() / (t - t.mean()).pow(2).sum())
    return -60.0 / slope if slope < 0 else float("nan")


def band_energy_fraction(x: torch.Tensor, low_hz: float, sr: int = SR) -> float:
    """The share of ``x``'s energy at frequencies above ``low_hz``."""
    power = torch.fft.rfft(x.double()).abs().pow(2)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / sr)
    total = float(power.sum())
    return float(power[freqs > low_hz].sum()) / total if total > 0 else 0.0

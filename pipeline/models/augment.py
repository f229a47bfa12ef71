"""Data augmentation shared by the seq2seq and CTC trainers.

- :func:`speed_perturb` changes tempo and pitch together (Kaldi-style), by
  resampling: the clip is read as if recorded at ``sr * factor`` and resampled
  to ``sr``, so a factor of 1.1 makes it 10 % shorter.
- :func:`add_noise` adds white noise at a given signal-to-noise ratio.
- :func:`spec_augment` masks random time spans (and, on log-mel input,
  frequency bands) of a 2-D tensor; it also works on cached encoder states,
  where only the time axis is meaningful.

All randomness comes from an explicit generator, so that a given
(seed, epoch, utterance) always gets the same augmentation — whatever the
number of data-loader workers, and after a resume.
"""

from __future__ import annotations

import numpy as np
import soxr
import torch


def speed_perturb(wave: np.ndarray, factor: float, sr: int = 16000) -> np.ndarray:
    """Return ``wave`` played ``factor`` times faster (shorter for factor > 1)."""
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    if factor == 1.0:
        return wave
    out = soxr.resample(np.asarray(wave, dtype=np.float32), sr * factor, sr, quality="HQ")
    return np.ascontiguousarray(out, dtype=np.float32)


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise so that signal power / noise power = ``snr_db``."""
    wave = np.asarray(wave, dtype=np.float32)
    power = float(np.mean(wave.astype(np.float64) ** 2))
    if power <= 0.0:
        return wave
    noise_power = power / (10.0 ** (snr_db / 10.0))
    noise = rng.standard_normal(wave.shape).astype(np.float32) * np.float32(np.sqrt(noise_power))
    return wave + noise


def _mask_spans(
    x: torch.Tensor, axis: int, n: int, max_width: int, limit: int, generator: torch.Generator, fill: float
) -> None:
    """Set ``n`` random spans of width 0..max_width along ``axis`` (first ``limit`` entries) to ``fill``."""
    if n <= 0 or max_width <= 0 or limit <= 0:
        return
    for _ in range(n):
        width = int(torch.randint(0, max_width + 1, (1,), generator=generator))
        width = min(width, limit)
        if width == 0:
            continue
        start = int(torch.randint(0, limit - width + 1, (1,), generator=generator))
        index = [slice(None)] * x.dim()
        index[axis] = slice(start, start + width)
        x[tuple(index)] = fill


def spec_augment(
    x: torch.Tensor,
    *,
    time_masks: int,
    time_max_width: int,
    freq_masks: int = 0,
    freq_max_width: int = 0,
    time_axis: int = -1,
    length: int | None = None,
    generator: torch.Generator,
    fill: float | None = None,
) -> torch.Tensor:
    """SpecAugment-style masking of a 2-D tensor (returns a masked copy).

    ``x`` is (freq, time) for log-mel features (``time_axis=-1``) or
    (time, dim) for encoder states (``time_axis=0``, ``freq_masks=0``).
    ``length`` limits the masks to the real (unpadded) frames. Masked cells get
    ``fill``, by default the mean of the real frames (a neutral value for
    normalized log-mel; use 0.0 for hidden states).
    """
    if x.dim() != 2:
        raise ValueError(f"spec_augment expects a 2-D tensor, got shape {tuple(x.shape)}")
    t_axis = time_axis % 2
    f_axis = 1 - t_axis
    n_time = x.shape[t_axis] if length is None else min(length, x.shape[t_axis])
    out = x.clone()
    if fill is None:
        real = out.narrow(t_axis, 0, max(n_time, 1))
        fill = float(real.float().mean())
    _mask_spans(out, t_axis, time_masks, time_max_width, n_time, generator, fill)
    _mask_spans(out, f_axis, freq_masks, freq_max_width, x.shape[f_axis], generator, fill)
    return out

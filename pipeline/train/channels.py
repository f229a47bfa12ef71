"""Multi-condition training (``augment.channels``): training clips played through the channels that ``degrade``
derives shifted test sets with (a telephone line, babble, noise, reverberation), applied to the
(speed-perturbed) audio before features.

Which channel a clip gets is drawn per (seed, epoch, clip) by the batch plan, like its speed factor
(:class:`pipeline.train.data.BatchPlan`). The channel's own randomness (the babble talkers, the noise, the
impulse response) comes from (clip id, channel, speed factor) alone, so a clip sounds the same whenever it
gets that channel, and its encoder states are cached once per (speed factor, channel)
(:mod:`pipeline.train.cache`).

Babble is built from the training set's labeled clips of speakers other than the clip's: never from dev or test
audio, nor from pseudo-labeled clips (their audio is another split's, see :mod:`pipeline.pseudo_label`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data_prep.degrade import (
    CLEAN,
    BabblePool,
    channel_condition,
    clip_generator,
    degrade_clip,
    full_scale_gain,
)
from pipeline.config import ConfigError
from pipeline.pseudo_label import FLAG as PSEUDO_LABEL_FLAG

#: The seed of every channel's randomness: a clip's channel is a function of its id, not of the training seed,
#: so that trainings of different seeds share their cached states.
CHANNEL_SEED = 0


def uses_babble(channels: Sequence[str]) -> bool:
    return any(c != CLEAN and channel_condition(c).kind == "babble" for c in channels)


class TrainChannels:
    """Plays the clips of ``examples`` (training :class:`pipeline.train.data.Example`) through a channel."""

    def __init__(self, examples: Sequence):
        self.examples = examples
        self._pool: BabblePool | None = None

    @property
    def pool(self) -> BabblePool:
        """The labeled training clips by speaker, the only audio babble is made of."""
        if self._pool is None:
            self._pool = BabblePool.of((ex.utt, ex.manifest_dir) for ex in self.examples
                                       if PSEUDO_LABEL_FLAG not in ex.utt.flags)  # fmt: skip
        return self._pool

    def fingerprint(self, channels: Sequence[str]) -> str:
        """What the played clips depend on beyond their own audio: the babble pool ("" without babble)."""
        return f"babble:{self.pool.fingerprint()}" if uses_babble(channels) else ""

    def apply(self, wave: np.ndarray, utt, channel: str, factor: float) -> np.ndarray:
        """``wave`` (``utt``'s samples at speed ``factor``) through ``channel``, below full scale."""
        import torch

        cond = channel_condition(channel)
        if cond is None:
            return wave
        x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        g = clip_generator(CHANNEL_SEED, f"{utt.id}\0{channel}\0{factor:g}")
        talkers = ()
        if cond.kind == "babble":
            talkers = self.pool.talkers(utt, cond.talkers, x.shape[-1], g)
            if not talkers:
                raise ConfigError(f"augment.channels {channel}: no labeled training clip of a speaker other than "
                                  f"{utt.speaker!r} ({utt.id}) to build babble from")  # fmt: skip
        y, _ = degrade_clip(x, cond, g, talkers)
        return (y * full_scale_gain(y)).numpy()  # as degrade writes it

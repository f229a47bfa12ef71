"""CTC loss that stays finite under mixed precision, and label-length checks.

Two ways a CTC run produces NaN that this module closes:

* **precision** — log-softmax taken in fp16 turns any log-probability below
  -65504 into -inf (and bf16 rounds log-probabilities to 8 bits); one -inf on
  the only path of an utterance makes its loss inf and its gradient NaN.
  :func:`ctc_loss` therefore leaves autocast and takes the log-softmax in fp32
  from the raw logits. It accepts logits or log-probabilities alike: the
  log-softmax of log-probabilities is themselves.
* **impossible alignments** — an utterance whose label sequence needs more
  frames than the encoder gives (every label one frame, plus a blank between
  two equal neighbours) has no CTC path: loss inf. ``zero_infinity=True``
  zeroes such losses and their gradients so one bad clip cannot poison a batch,
  and :func:`check_label_lengths` finds these clips beforehand so the data
  loader can reject them (reason ``label_too_long``) instead of silently
  training on nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data_prep.manifest import Reject, Utterance
from pipeline.models.ctc_vocab import CTCVocab

IGNORE_INDEX = -100  # padding of label matrices (transformers' convention)


def pad_labels(seqs: Sequence[Sequence[int]], pad: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) label matrix padded with ``pad``, and the (B,) label lengths."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max(width, 1)), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out, torch.tensor([len(s) for s in seqs], dtype=torch.long)


def ctc_loss(
    log_probs_or_logits: torch.Tensor,
    input_lengths: torch.Tensor,
    labels: torch.Tensor,
    label_lengths: torch.Tensor | None = None,
    blank: int = 0,
    reduction: str = "mean",
) -> torch.Tensor:
    """CTC loss of batch-first scores, computed in fp32 outside autocast.

    ``log_probs_or_logits``: (B, T, V) in any float dtype; ``input_lengths``: (B,)
    valid frames; ``labels``: (B, L) padded with any negative value (or 1-D,
    concatenated); ``label_lengths``: (B,), derived from the padding when None.
    ``reduction``: ``mean`` (torch's: each loss divided by its label length, then
    averaged), ``sum`` or ``none``. Impossible alignments contribute 0
    (``zero_infinity``); find them up front with :func:`check_label_lengths`.
    """
    if log_probs_or_logits.dim() != 3:
        raise ValueError(f"expected (batch, frames, vocab) scores, got shape {tuple(log_probs_or_logits.shape)}")
    if label_lengths is None:
        if labels.dim() != 2:
            raise ValueError("label_lengths is required for concatenated 1-D labels")
        label_lengths = (labels >= 0).sum(dim=1)
    if labels.dim() == 2:
        keep = torch.arange(labels.shape[1], device=labels.device)[None, :] < label_lengths.to(labels.device)[:, None]
        targets = labels[keep]
    else:
        targets = labels
    if bool((targets == blank).any()):
        raise ValueError(f"labels contain the blank id {blank}: the blank can never be a target")
    if bool((targets < 0).any()):
        raise ValueError("labels contain negative ids inside their lengths")
    device_type = log_probs_or_logits.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        log_probs = log_probs_or_logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T, B, V)
        t = log_probs.shape[0]
        return F.ctc_loss(
            log_probs,
            targets.to(log_probs.device, torch.long),
            input_lengths.to(log_probs.device, torch.long).clamp(max=t),
            label_lengths.to(log_probs.device, torch.long),
            blank=blank,
            reduction=reduction,
            zero_infinity=True,
        )


# ---------------------------------------------------------------------------- label lengths


def min_ctc_frames(labels: Sequence[int]) -> int:
    """Fewest frames that can emit ``labels``: one per label, plus a blank between equal neighbours."""
    labels = list(labels)
    repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    return len(labels) + repeats


@dataclass(frozen=True)
class LabelLengthProblem:
    """An utterance CTC cannot align: ``needed`` frames > the model's ``frames``."""

    index: int
    needed: int
    frames: int
    id: str = ""
    reason: str = "label_too_long"  # a data_prep.manifest.REJECT_REASONS member

    @property
    def detail(self) -> str:
        return (
            f"CTC needs at least {self.needed} output frames for this transcript "
            f"(labels + blanks between repeats) but the model gives {self.frames}"
        )


def check_label_lengths(
    labels: Sequence[Sequence[int]],
    frames: Sequence[int] | torch.Tensor,
    ids: Sequence[str] | None = None,
    margin: int = 0,
) -> list[LabelLengthProblem]:
    """The utterances whose labels need more than ``frames - margin`` output frames.

    ``frames`` are the model's output frames per utterance (see
    ``WhisperEncoderCTC.output_frames`` / ``wav2vec2_output_frames``). A
    ``margin`` > 0 also rejects alignments so tight that nearly every frame must
    carry a label (they train poorly).
    """
    frames = [int(f) for f in (frames.tolist() if isinstance(frames, torch.Tensor) else frames)]
    if len(frames) != len(labels):
        raise ValueError(f"{len(labels)} label sequences but {len(frames)} frame counts")
    out = []
    for i, (lab, n) in enumerate(zip(labels, frames)):
        need = min_ctc_frames(lab)
        if need > n - margin:
            out.append(LabelLengthProblem(index=i, needed=need, frames=n, id=ids[i] if ids is not None else ""))
    return out


def filter_label_too_long(
    utts: Sequence[Utterance],
    vocab: CTCVocab,
    frames_for_samples: Callable[[int], int],
    sample_rate: int = 16000,
    margin: int = 0,
) -> tuple[list[Utterance], list[Reject]]:
    """Split manifest rows into those CTC can align and ``label_too_long`` rejects.

    ``frames_for_samples`` maps a clip's sample count to the model's output
    frames (e.g. ``model.output_frames``). Use it on the training manifest (after
    speed perturbation the fastest factor gives the fewest frames: pass a
    function that accounts for it) and report the rejects like prepare's.
    """
    labels = [vocab.encode(u.text) for u in utts]
    frames = [frames_for_samples(int(round(u.duration * sample_rate))) for u in utts]
    bad = {p.index: p for p in check_label_lengths(labels, frames, [u.id for u in utts], margin)}
    kept = [u for i, u in enumerate(utts) if i not in bad]
    rejects = [
        Reject(reason=p.reason, detail=p.detail, source=utts[i].source, id=utts[i].id, audio=utts[i].audio,
               text_raw=utts[i].text_raw or utts[i].text)
        for i, p in sorted(bad.items())
    ]
    return kept, rejects

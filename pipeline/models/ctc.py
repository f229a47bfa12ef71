"""CTC models over pretrained speech encoders: a Whisper encoder + new character head.

The classic low-resource recipe puts a new CTC output layer over the target
language's characters (``vocab.json`` from the TRAIN split, see
:mod:`data_prep.vocab`) on a pretrained encoder. Two families:

* :class:`WhisperEncoderCTC` (this module): Whisper's encoder, run on the
  clip's real length (:func:`pipeline.models.encoder.encode_trimmed`, 50
  frames/s), then a :class:`~pipeline.models.ctc_heads.CTCHead`. Freezing:
  ``trainable_top_layers=0`` freezes the encoder (forward then also accepts
  states cached after the last layer, see :meth:`WhisperEncoderCTC.encode_lower`),
  ``k`` trains the top k layers + final norm (cache the states after layer L-k),
  ``-1`` trains everything but the fixed positional table.
* wav2vec2 / XLS-R / MMS: :mod:`pipeline.models.ctc_wav2vec2`.

Both return :class:`~pipeline.models.ctc_heads.CTCOutput` (fp32 logits, output
lengths, loss) from the same kind of call, and save to the same directory layout
(:mod:`pipeline.models.ctc_checkpoint`).

Settings that work (from the literature):
head lr ~1e-3 with a Transformer head, encoder lr 1e-5..5e-5
(:func:`ctc_param_groups`), warm-up over the first ~10 % of steps, SpecAugment
time masks, and :class:`~pipeline.models.ctc_monitor.BlankCollapseMonitor` on
the dev greedy outputs. A linear probe over the frozen whisper-base encoder does
not learn characters.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.models.ctc_heads import CTCHead, CTCOutput, HeadConfig, output_lengths
from pipeline.models.ctc_loss import ctc_loss
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.models.encoder import embed_features, encoder_lengths, mel_length, run_layers

log = logging.getLogger(__name__)



def _whisper_encoder(model: nn.Module) -> nn.Module:
    """The ``WhisperEncoder`` of a WhisperForConditionalGeneration / WhisperModel (or the encoder itself)."""
    if hasattr(model, "conv1") and hasattr(model, "layers"):
        return model
    if hasattr(model, "get_encoder"):
        return model.get_encoder()
    raise TypeError(f"no Whisper encoder in {type(model).__name__}")


@dataclass
class WhisperCTCConfig:
    """Everything besides weights that rebuilds a :class:`WhisperEncoderCTC`."""

    head: HeadConfig = field(default_factory=HeadConfig)
    trainable_top_layers: int = 0  # 0 frozen encoder, k top layers, -1 all
    base_model: str = ""  # where the encoder came from (for the record)


class WhisperEncoderCTC(nn.Module):
    """Whisper encoder (trimmed to each clip's length) + a new CTC head.

    ``encoder``: a ``WhisperForConditionalGeneration``, ``WhisperModel`` or
    ``WhisperEncoder`` (only the encoder is kept). ``vocab``: the character
    vocabulary (blank = ``<pad>``).
    """

    def __init__(self, encoder: nn.Module, vocab: CTCVocab, config: WhisperCTCConfig | None = None):
        super().__init__()
        self.config = config or WhisperCTCConfig()
        self.vocab = vocab
        self.encoder = _whisper_encoder(encoder)
        n = len(self.encoder.layers)
        k = self.config.trainable_top_layers
        if k < -1 or k > n:
            raise ValueError(f"trainable_top_layers={k}: must be -1 (all), 0 (frozen) or 1..{n}")
        self.split_layer = 0 if k == -1 else n - k
        d = self.encoder.conv1.out_channels
        self.head = CTCHead(d, len(vocab), self.config.head, blank=vocab.blank)
        self._set_trainable()

    # ------------------------------------------------------------------ freezing

    def _set_trainable(self) -> None:
        enc = self.encoder
        enc.requires_grad_(self.config.trainable_top_layers == -1)
        for layer in enc.layers[self.split_layer:]:
            layer.requires_grad_(True)
        enc.layer_norm.requires_grad_(self.split_layer < len(enc.layers))
        enc.embed_positions.requires_grad_(False)  # fixed sinusoids in Whisper
        self.head.requires_grad_(True)

    @property
    def encoder_frozen(self) -> bool:
        return self.config.trainable_top_layers == 0

    def train(self, mode: bool = True) -> WhisperEncoderCTC:
        super().train(mode)
        # The frozen lower part always runs in eval mode, exactly as when its states were cached.
        if self.split_layer > 0:
            for m in (self.encoder.conv1, self.encoder.conv2, *self.encoder.layers[: self.split_layer]):
                m.eval()
        return self

    # ------------------------------------------------------------------ lengths

    def output_frames(self, num_samples: int) -> int:
        """Output frames of the head for a clip of ``num_samples`` 16 kHz samples."""
        enc = encoder_lengths(torch.tensor([mel_length(num_samples)]))
        return int(output_lengths(enc, self.config.head)[0])

    # ------------------------------------------------------------------ forward

    def encode_lower(self, features: torch.Tensor, feature_lengths: torch.Tensor | None = None):
        """States after layer ``split_layer`` (what a cache stores) and encoder lengths, without gradients.

        Same convention as :func:`pipeline.models.encoder.encode_trimmed` with ``stop=split_layer``.
        """
        if feature_lengths is None:
            feature_lengths = torch.full((features.shape[0],), features.shape[-1], dtype=torch.long)
        with torch.no_grad():
            hidden, lengths = embed_features(self.encoder, features, feature_lengths)
            hidden = run_layers(self.encoder, hidden, lengths, 0, self.split_layer)
        return hidden, lengths

    def forward(
        self,
        features: torch.Tensor | None = None,
        feature_lengths: torch.Tensor | None = None,
        *,
        hidden_states: torch.Tensor | None = None,
        hidden_lengths: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        label_lengths: torch.Tensor | None = None,
    ) -> CTCOutput:
        """Logits (and the CTC loss when ``labels`` are given).

        Either ``features`` (B, n_mels, T) log-mel with ``feature_lengths`` (mel
        frames per clip; None = all T), or ``hidden_states`` (B, S, d): the
        states after layer ``split_layer`` (:meth:`encode_lower`, or the
        training cache) with ``hidden_lengths`` (encoder frames). ``labels``:
        (B, L) padded with -100 (see :func:`pipeline.models.ctc_loss.pad_labels`).
        """
        enc = self.encoder
        if hidden_states is None:
            if features is None:
                raise ValueError("give features or hidden_states")
            if feature_lengths is None:
                feature_lengths = torch.full((features.shape[0],), features.shape[-1], dtype=torch.long)
            if self.split_layer > 0:
                hidden_states, hidden_lengths = self.encode_lower(features, feature_lengths)
            else:
                hidden_states, hidden_lengths = embed_features(enc, features, feature_lengths)
        elif hidden_lengths is None:
            hidden_lengths = torch.full((hidden_states.shape[0],), hidden_states.shape[1], dtype=torch.long)
        hidden_states = hidden_states.to(enc.conv1.weight.dtype)
        hidden_lengths = hidden_lengths.to(hidden_states.device)
        if self.encoder_frozen:
            with torch.no_grad():
                hidden_states = enc.layer_norm(run_layers(enc, hidden_states, hidden_lengths, self.split_layer, None))
        else:
            hidden_states = enc.layer_norm(run_layers(enc, hidden_states, hidden_lengths, self.split_layer, None))
        logits, lengths = self.head(hidden_states, hidden_lengths)
        loss = None
        if labels is not None:
            loss = ctc_loss(logits, lengths, labels, label_lengths, blank=self.vocab.blank)
        return CTCOutput(logits=logits, lengths=lengths, loss=loss)

    @torch.no_grad()
    def greedy(self, out: CTCOutput) -> list[str]:
        """Greedy texts of a forward's output."""
        best = out.logits.argmax(-1).cpu()
        return [self.vocab.ids_to_text(self.vocab.collapse(best[i, : int(n)].tolist()))
                for i, n in enumerate(out.lengths.cpu())]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained_whisper(
        cls, name_or_path: str | os.PathLike, vocab: CTCVocab, config: WhisperCTCConfig | None = None
    ) -> tuple[WhisperEncoderCTC, object]:
        """Load a Whisper model with :func:`pipeline.models.whisper.load_whisper`; returns (model, processor)."""
        from pipeline.models.whisper import load_whisper

        whisper, processor = load_whisper(name_or_path)
        config = config or WhisperCTCConfig()
        config.base_model = config.base_model or str(name_or_path)
        return cls(whisper, vocab, config), processor


# ---------------------------------------------------------------------------- optimisation


def ctc_param_groups(model: nn.Module, head_lr: float, encoder_lr: float, weight_decay: float = 0.0) -> list[dict]:
    """Optimizer parameter groups: the new head (and MMS adapters) at ``head_lr``, the encoder at ``encoder_lr``.

    Biases and norm weights get no weight decay. Frozen parameters are left out.
    """
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = name.startswith(("head.", "lm_head.")) or ".adapter_layer." in name
        no_decay = p.dim() < 2
        groups.setdefault((is_head, no_decay), []).append(p)
    return [
        {"params": ps, "lr": head_lr if is_head else encoder_lr, "weight_decay": 0.0 if nd else weight_decay}
        for (is_head, nd), ps in groups.items()
    ]

"""CTC output heads over encoder states: ``linear``, ``transformer`` or ``bilstm``.

A head maps (B, S, d_enc) encoder states to (B, S', V) logits over the
character vocabulary, with S' = S * upsample / downsample:

* ``linear`` — dropout, layer norm, one linear layer: a probe. Over a *frozen* Whisper
  encoder it does not learn characters; use it only with
  trainable encoder layers.
* ``transformer`` — a projection to ``dim``, ``layers`` pre-norm Transformer
  layers that attend over the whole clip (masked padding), layer norm, output.
* ``bilstm`` — a projection, a ``layers``-deep bidirectional LSTM, output.

Frame rate: Whisper's encoder gives 50 frames/s (20 ms). Characters arrive at
~10-18/s in read speech, so 50/s leaves room for the blanks CTC needs between
repeated letters; ``downsample=2`` (25/s, cheaper) is only safe for slow
speech, and ``upsample=2`` (100/s, each frame split into two by a learned
projection) helps when :func:`~pipeline.models.ctc_loss.check_label_lengths`
rejects many clips.

Initialisation: the output layer sees layer-normalised input (every head kind,
the linear one included: Whisper's states reach tens) and starts with small
weights (std 0.02) and zero bias, so every frame starts close to uniform:
training does not start collapsed onto
one class, blank or not, and the first steps' gradients are not dominated by
an arbitrary large logit. ``init_blank_prob`` instead sets the blank's bias so
that it starts with that probability (CTC's known prior: most frames are
blank). It skips the first phase, where the loss falls only by learning
"blank everywhere". On the tone test task (tests/ctc_fixtures.py, frozen random
encoder, Transformer head, 3 seeds, 150 steps) 0.9 reached loss < 1 after
93/109/never steps against 126/142/132 for the neutral start, final CER
0.39/0.44/0.70 against 0.44 x 3: no consistent gain, so the default stays
neutral; try 0.9 when a run sits in the blank-only phase.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

HEAD_KINDS = ("linear", "transformer", "bilstm")


@dataclass
class CTCOutput:
    """What a CTC model's forward returns."""

    logits: torch.Tensor  # (B, T, V) fp32
    lengths: torch.Tensor  # (B,) valid output frames
    loss: torch.Tensor | None = None


@dataclass
class HeadConfig:
    """Shape of a CTC head (stored in the checkpoint's ``ctc_config.json``)."""

    kind: str = "transformer"  # linear | transformer | bilstm
    dim: int = 256  # width of the transformer/bilstm body (ignored by linear)
    layers: int = 2
    heads: int = 4  # attention heads (transformer)
    ffn: int = 1024  # feed-forward width (transformer)
    dropout: float = 0.1
    upsample: int = 1  # output frames per encoder frame
    downsample: int = 1  # encoder frames averaged into one output frame
    init_blank_prob: float | None = None  # None: neutral (uniform) start; see the module docstring

    def validate(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {HEAD_KINDS}, got {self.kind!r}")
        if self.upsample < 1 or self.downsample < 1:
            raise ValueError("upsample and downsample must be >= 1")
        if self.upsample > 1 and self.downsample > 1:
            raise ValueError("use either upsample or downsample, not both")
        if self.init_blank_prob is not None and not 0.0 < self.init_blank_prob < 1.0:
            raise ValueError(f"init_blank_prob must be in (0, 1), got {self.init_blank_prob}")
        if self.kind == "transformer" and self.dim % self.heads:
            raise ValueError(f"head dim {self.dim} is not a multiple of heads {self.heads}")

    def to_json(self) -> dict:
        return asdict(self)


def output_lengths(lengths: torch.Tensor, cfg: HeadConfig) -> torch.Tensor:
    """Head output frames for each encoder length."""
    if cfg.downsample > 1:
        return (lengths + cfg.downsample - 1) // cfg.downsample
    return lengths * cfg.upsample


def blank_bias(prob: float, vocab_size: int) -> float:
    """Bias that gives the blank probability ``prob`` when all other logits are 0."""
    return math.log(prob * (vocab_size - 1) / (1.0 - prob))


class CTCHead(nn.Module):
    """Encoder states -> CTC logits (see the module docstring)."""

    def __init__(self, d_in: int, vocab_size: int, cfg: HeadConfig, blank: int = 0):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.blank = blank
        self.dropout = nn.Dropout(cfg.dropout)
        width = d_in if cfg.kind == "linear" else cfg.dim
        self.proj = nn.Identity() if cfg.kind == "linear" else nn.Linear(d_in, width)
        # Upsampling: a learned split of each frame into `upsample` frames.
        self.split = nn.Linear(width, width * cfg.upsample) if cfg.upsample > 1 else None
        if cfg.kind == "transformer":
            layer = nn.TransformerEncoderLayer(
                width, cfg.heads, cfg.ffn, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
            )
            self.body = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        elif cfg.kind == "bilstm":
            if width % 2:
                raise ValueError(f"bilstm head dim must be even, got {width}")
            self.body = nn.LSTM(
                width, width // 2, num_layers=cfg.layers, batch_first=True, bidirectional=True,
                dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            )
        else:
            self.body = None
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab_size)
        self.reset_output()

    def reset_output(self) -> None:
        """Small output weights, zero bias (or the blank bias of ``init_blank_prob``): a near-uniform start.

        (Zero weights would start exactly uniform but, measured on the tone task,
        learn markedly slower: the body gets no gradient until they move.)
        """
        nn.init.normal_(self.out.weight, std=0.02)
        nn.init.zeros_(self.out.bias)
        if self.cfg.init_blank_prob is not None:
            with torch.no_grad():
                self.out.bias[self.blank] = blank_bias(self.cfg.init_blank_prob, self.out.out_features)

    def _resample(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k_down, k_up = self.cfg.downsample, self.cfg.upsample
        if k_down > 1:
            b, s, d = x.shape
            pad = (-s) % k_down
            mask = (torch.arange(s, device=x.device)[None, :] < lengths[:, None]).to(x.dtype)
            x = nn.functional.pad(x * mask[..., None], (0, 0, 0, pad))
            mask = nn.functional.pad(mask, (0, pad))
            x = x.view(b, -1, k_down, d).sum(2) / mask.view(b, -1, k_down).sum(2).clamp(min=1)[..., None]
        elif k_up > 1:
            b, s, d = x.shape
            x = self.split(x).view(b, s * k_up, d)
        return x, output_lengths(lengths, self.cfg)

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, d_in) states and (B,) lengths -> (B, S', V) fp32 logits and (B,) output lengths."""
        lengths = lengths.to(states.device)
        x = self.proj(self.dropout(states))
        x, out_lengths = self._resample(x, lengths)
        if isinstance(self.body, nn.TransformerEncoder):
            pad = torch.arange(x.shape[1], device=x.device)[None, :] >= out_lengths[:, None]
            x = self.body(x, src_key_padding_mask=pad if bool(pad.any()) else None)
        elif isinstance(self.body, nn.LSTM):
            total = x.shape[1]
            packed = nn.utils.rnn.pack_padded_sequence(x, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
            x, _ = self.body(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(x, batch_first=True, total_length=total)
        x = self.dropout(self.norm(x))
        # The output layer runs in fp32 even under autocast: fp16 logits can overflow to inf.
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = nn.functional.linear(x.float(), self.out.weight.float(), self.out.bias.float())
        return logits, out_lengths

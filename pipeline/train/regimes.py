"""Which weights train, and the forward pass that computes the loss.

Regimes (``train.regime``):

full            every weight trains; the encoder runs on features.
freeze-encoder  the encoder is frozen except its top ``k = encoder_trainable_top_layers``
                layers (and final layer norm when k > 0); the frozen part runs without
                gradients.
cached-encoder  as freeze-encoder, but the frozen part's output (the states after layer
                L-k) is read from :mod:`pipeline.train.cache` instead of being computed:
                a step costs the top k encoder layers + the decoder.
lora            the base model is frozen; LoRA adapters on the attention projections of
                the encoder and/or decoder train (merged into the weights on export).

:class:`Seq2SeqTrainModule` wraps the model in one ``nn.Module`` whose
``forward`` returns the loss, so that DDP (``accelerate``) sees the whole
computation. Padded batches of trimmed states get the cross-attention mask.
With ``restrict_vocab`` the softmax runs over the tokens of the training text
(+ specials) only: the logits are the same dot products with the same tied
embedding rows, just fewer of them, so the full matrix stays a plain Whisper.
With ``ctc_weight`` > 0 (joint CTC/attention, as in ESPnet's hybrid models) a
linear CTC head over the characters reads the final encoder states and its
loss is mixed in: the adapted encoder layers then get a gradient that must
align every character to the audio, not only what the decoder's attention finds.
"""

from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

from pipeline.config import ConfigError, TrainConfig
from pipeline.models.ctc_heads import CTCHead, HeadConfig
from pipeline.models.ctc_loss import ctc_loss
from pipeline.models.encoder import CrossAttentionMask, embed_features, padding_mask, run_layers
from pipeline.train.data import IGNORE_INDEX

log = logging.getLogger(__name__)


def split_layer(model, cfg: TrainConfig) -> int:
    """Index of the first encoder layer that trains (or, for ``full``/``lora``, 0)."""
    n = len(whisper_of(model).model.encoder.layers)
    if cfg.regime == "lora":
        return n if cfg.lora.scope == "decoder" else 0  # a LoRA-free encoder runs without gradients
    if cfg.regime == "full":
        return 0
    k = cfg.encoder_trainable_top_layers
    if k > n:
        raise ConfigError(f"train.encoder_trainable_top_layers must be in [0, {n}] (the encoder's layers), got {k}")
    return n - k


def lower_frozen(cfg: TrainConfig) -> bool:
    """Whether the encoder below :func:`split_layer` runs without gradients."""
    return cfg.regime in ("freeze-encoder", "cached-encoder") or (cfg.regime == "lora" and cfg.lora.scope == "decoder")


def configure_trainable(model, cfg: TrainConfig):
    """Set ``requires_grad`` for the regime; returns the model to train (a peft model for lora)."""
    enc = model.model.encoder
    if cfg.regime == "lora":
        return _apply_lora(model, cfg)
    model.requires_grad_(True)
    enc.embed_positions.requires_grad_(False)  # fixed sinusoids in Whisper
    if cfg.regime in ("freeze-encoder", "cached-encoder"):
        enc.requires_grad_(False)
        split = split_layer(model, cfg)
        for layer in enc.layers[split:]:
            layer.requires_grad_(True)
        if split < len(enc.layers):
            enc.layer_norm.requires_grad_(True)
    if cfg.freeze_token_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
        model.get_output_embeddings().weight.requires_grad_(False)
    return model


def _apply_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    lc = cfg.lora
    stacks = {"encoder": "encoder", "decoder": "decoder", "both": "(?:encoder|decoder)"}[lc.scope]
    attn = "(?:self_attn|encoder_attn)" if lc.scope != "encoder" else "self_attn"
    targets = "|".join(lc.targets)
    pattern = rf"model\.{stacks}\.layers\.\d+\.{attn}\.(?:{targets})"
    peft_cfg = LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=pattern, bias="none")
    peft_model = get_peft_model(model, peft_cfg)
    n = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if n == 0:
        raise ConfigError(f"train.lora.targets {lc.targets} matched no module (pattern {pattern})")
    return peft_model


def set_dropout(model: nn.Module, p: float) -> None:
    """Hidden and attention dropout ``p`` in every Whisper layer (pretrained checkpoints ship 0).

    The modules copied the config's rates when they were built, so each one's
    ``dropout`` attribute is set; the config follows so that a saved model says
    what it was trained with. Activation dropout stays as it was.
    """
    for m in model.modules():
        if isinstance(getattr(m, "dropout", None), float):
            m.dropout = p
    config = whisper_of(model).config
    config.dropout = config.attention_dropout = p


def joint_ctc_head_config() -> HeadConfig:
    """The joint CTC head: LayerNorm + linear over the final encoder states, no dropout, 50 frames/s."""
    return HeadConfig(kind="linear", dropout=0.0)


def whisper_of(model) -> nn.Module:
    """The WhisperForConditionalGeneration inside a (possibly peft-wrapped) model."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    return model


class Seq2SeqTrainModule(nn.Module):
    """Loss of a Whisper model on a batch of features or cached lower encoder states."""

    def __init__(
        self,
        model: nn.Module,
        *,
        split: int,
        lower_frozen: bool,
        allowed_ids: list[int] | None = None,
        label_smoothing: float = 0.0,
        ctc_vocab_size: int = 0,
        ctc_weight: float = 0.0,
    ):
        super().__init__()
        self.model = model  # registered: DDP and the optimizer see its parameters
        self.split = split
        self.lower_frozen = lower_frozen
        self.label_smoothing = label_smoothing
        self.ctc_weight = ctc_weight
        self.ctc_head = None
        if ctc_weight > 0:
            if ctc_vocab_size < 2:
                raise ValueError("joint CTC needs a character vocabulary (ctc_vocab_size >= 2: blank + 1)")
            # The same linear head a CTC system has (LayerNorm + projection), so best/ctc/ can be
            # written as a CTC checkpoint that the CTC decoder and the rescorer load unchanged.
            self.ctc_head = CTCHead(whisper_of(model).config.d_model, ctc_vocab_size, joint_ctc_head_config(), blank=0)
        if allowed_ids is not None:
            whisper = whisper_of(model)
            vocab = whisper.get_output_embeddings().weight.shape[0]
            allowed = torch.tensor(sorted(set(allowed_ids)), dtype=torch.long)
            remap = torch.full((vocab,), IGNORE_INDEX, dtype=torch.long)
            remap[allowed] = torch.arange(len(allowed))
            self.register_buffer("allowed", allowed, persistent=False)
            self.register_buffer("remap", remap, persistent=False)
        else:
            self.allowed = None
            self.remap = None

    @property
    def whisper(self) -> nn.Module:
        return whisper_of(self.model)

    def encode(
        self, features: torch.Tensor | None, states: torch.Tensor | None, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Final encoder states (B, S, d) and their frame counts (B,)."""
        enc = self.whisper.model.encoder
        if states is None:
            ctx = torch.no_grad() if self.lower_frozen else contextlib.nullcontext()
            with ctx:
                hidden, enc_lengths = embed_features(enc, features, lengths)
                hidden = run_layers(enc, hidden, enc_lengths, 0, self.split)
        else:
            hidden, enc_lengths = states.to(enc.conv1.weight.dtype), lengths
        hidden = run_layers(enc, hidden, enc_lengths, self.split, None)
        return enc.layer_norm(hidden), enc_lengths

    def forward(
        self,
        decoder_input_ids: torch.Tensor,
        targets: torch.Tensor,
        lengths: torch.Tensor,
        features: torch.Tensor | None = None,
        states: torch.Tensor | None = None,
        ctc_labels: torch.Tensor | None = None,
        ctc_lengths: torch.Tensor | None = None,
        padded: dict | None = None,
    ) -> torch.Tensor:
        """The batch's loss; with ``padded`` (a sub-batch of clips on the 30-s padded window, same keys),
        the mean of both sub-batches' losses: one forward, as DDP wants."""
        loss = self.batch_loss(decoder_input_ids, targets, lengths, features, states, ctc_labels, ctc_lengths)
        if padded is None:
            return loss
        return (loss + self.batch_loss(**padded)) / 2

    def batch_loss(
        self,
        decoder_input_ids: torch.Tensor,
        targets: torch.Tensor,
        lengths: torch.Tensor,
        features: torch.Tensor | None = None,
        states: torch.Tensor | None = None,
        ctc_labels: torch.Tensor | None = None,
        ctc_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden, enc_lengths = self.encode(features, states, lengths)
        loss = self.decoder_loss(hidden, enc_lengths, decoder_input_ids, targets)
        if self.ctc_head is None:
            return loss
        if ctc_labels is None:
            raise ValueError("ctc_weight > 0 but the batch has no ctc_labels")
        logits, out_lengths = self.ctc_head(hidden, enc_lengths)
        ctc = ctc_loss(logits, out_lengths, ctc_labels, ctc_lengths, blank=0)
        return (1.0 - self.ctc_weight) * loss + self.ctc_weight * ctc

    def decoder_loss(
        self, hidden: torch.Tensor, enc_lengths: torch.Tensor, decoder_input_ids: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of the decoder's next-token predictions, teacher-forced on ``hidden``."""
        whisper = self.whisper
        keep = padding_mask(enc_lengths.to(hidden.device), hidden.shape[1])
        with CrossAttentionMask(whisper, keep):
            dec = whisper.model.decoder(
                input_ids=decoder_input_ids, encoder_hidden_states=hidden, use_cache=False
            ).last_hidden_state
        weight = whisper.get_output_embeddings().weight
        if self.allowed is not None:
            logits = nn.functional.linear(dec, weight[self.allowed])
            safe = targets.clamp_min(0)
            targets = torch.where(targets == IGNORE_INDEX, targets, self.remap[safe])
        else:
            logits = nn.functional.linear(dec, weight)
        return nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX,
            label_smoothing=self.label_smoothing,
        )

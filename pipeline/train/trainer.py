"""Whisper fine-tuning: the training loop (:mod:`pipeline.train.loop`) specialized for a Whisper model.

What is Whisper's own, in the order :meth:`Trainer._build` does it (each step deterministic
given the config):

1. **model**: the base model, its language token, and with ``model.vocabulary: bpe`` a new
   decoder vocabulary learnt from the train text (:mod:`pipeline.train.new_vocab`);
2. **examples**: label sequences of the train clips (+ their character labels for joint
   CTC, ``train.ctc_weight``), and with ``restrict_vocab`` the tokens the softmax keeps;
3. **cache**: with ``regime: cached-encoder``, the frozen lower encoder's states of every
   train clip (:mod:`pipeline.train.cache`); with ``train.padded_share`` > 0, once the batches
   are planned, the 30-s padded window's states of the clips the plan puts there (:meth:`Trainer._planned`);
4. **module**: the trainable weights of the regime, dropout, the loss module
   (:class:`~pipeline.train.regimes.Seq2SeqTrainModule`: decoder cross-entropy, plus a
   joint CTC head), and the train dataset (cached states or log-mel features).

The loss of a batch is that module's; dev is decoded by the decode stage's Whisper search on
the model as ``best/`` would load (:mod:`pipeline.train.evaluate`); ``best/`` is a plain
transformers directory (:mod:`pipeline.train.export`, with ``ctc/`` under joint CTC); a
checkpoint also holds the joint CTC head. The loop runs on an ``accelerate.Accelerator``: under
``accelerate launch`` each process trains on its own share of the batches, DDP averages the
gradients, and only the main process evaluates and writes. The same code runs on one CPU.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path

import torch
from accelerate import Accelerator

from data_prep.manifest import read_manifest
from pipeline.config import ConfigError, RecipeConfig
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.models.language import LabelEncoder, language_token, setup_language
from pipeline.train import checkpoint as ckpt
from pipeline.train.cache import EncoderStateCache
from pipeline.train.data import FeatureDataset, StateDataset, collate, label_array, load_examples
from pipeline.train.evaluate import DevResult, evaluate_dev
from pipeline.train.export import CTC_DIR, as_exported, export_model
from pipeline.train.loop import DevScore, TrainingLoop, TrainingParts, mixed_precision, seed_everything
from pipeline.train.new_vocab import DEFAULT_SIZE as DEFAULT_VOCAB_SIZE
from pipeline.train.new_vocab import INFO_FILE as VOCAB_INFO_FILE
from pipeline.train.new_vocab import adopt_vocabulary, build_vocabulary, load_vocabulary
from pipeline.train.regimes import (
    Seq2SeqTrainModule,
    configure_trainable,
    lower_frozen,
    set_dropout,
    split_layer,
    whisper_of,
)

log = logging.getLogger(__name__)


def load_base(name: str):
    """(model, processor) of the base model: a registry name or a transformers directory."""
    from pipeline.models.whisper import load_whisper

    return load_whisper(name)


class Trainer(TrainingLoop):
    """Fine-tunes a Whisper model as a :class:`RecipeConfig` says (``model.type: whisper``)."""

    def __init__(self, cfg: RecipeConfig, *, accelerator: Accelerator | None = None, progress: bool = True,
                 force: bool = False):  # fmt: skip
        if cfg.model.type != "whisper":
            raise ValueError(f"this trainer trains seq2seq Whisper models, not model.type={cfg.model.type!r}")
        if cfg.model.vocabulary not in ("whisper", "bpe"):
            raise ValueError(f"model.vocabulary must be whisper or bpe, not {cfg.model.vocabulary!r}")
        accelerator = accelerator or Accelerator(mixed_precision=mixed_precision(cfg.train.dtype))
        super().__init__(cfg, accelerator, progress=progress, force=force)
        self.language = cfg.language

    # ------------------------------------------------------------------------------------- build

    def _build(self) -> TrainingParts:
        t = self.cfg.train
        model = self._load_model()
        self._load_examples(model)
        model.to(self.device)
        self.split = split_layer(model, t)
        cache = None
        if t.regime == "cached-encoder":
            cache = self._train_state_cache(model.model.encoder, self.split, self.processor.feature_extractor,
                                            self.train_ex, self._encoder_origin())  # fmt: skip
        module = self._train_module(model)
        skipped = sum(self.train_skipped.values())
        padded = f", {t.padded_share:g} of the batches with clips on the 30-s padded window too" if t.padded_share > 0 else ""
        return TrainingParts(
            module=module, param_groups=self._param_groups(module), train_set=self._train_set(cache),
            collate=functools.partial(collate, pad_id=self.labels.eot),
            durations=[ex.utt.duration for ex in self.train_ex],
            description=f"regime {t.regime}, split layer {self.split}: {len(self.train_ex)} train clips "
                        f"({skipped} skipped){padded}",
            curve_title=f"{t.regime} ({self.language})",
        )  # fmt: skip

    def _load_model(self):
        """The base model and processor on this run's language token and decoder vocabulary."""
        cfg = self.cfg
        model, self.processor = load_base(cfg.model.name)
        if cfg.model.init == "scratch":
            from pipeline.models.whisper import random_init

            model = random_init(model, cfg.train.seed)
        setup_language(model, self.processor, self.language, cfg.model.new_language_init_from)
        self.vocab_info = self._new_vocabulary(model) if cfg.model.vocabulary == "bpe" else None
        self.labels = LabelEncoder(self.processor, model, self.language)
        return model

    def _encoder_origin(self) -> str:
        """Where the cached encoder states come from, for the cache's meta.json. A scratch start's random
        encoder has its own cache (the cache is keyed by a hash of the weights), whatever the model's name."""
        m = self.cfg.model
        return m.name if m.init == "pretrained" else f"{m.name} architecture, random init (seed {self.cfg.train.seed})"

    def _new_vocabulary(self, model) -> dict:
        """Learn (main process) or reuse ``output_dir/vocab/``, then move model and processor onto it.

        With ``restrict_vocab`` the softmax is further limited to the new tokens the train
        labels use (it then mostly drops the timestamp and other language tokens).
        """
        cfg = self.cfg
        vocab_dir = self.out / "vocab"
        info = None
        if self.is_main:
            info = build_vocabulary(
                vocab_dir,
                read_manifest(cfg.data.manifest("train"), unique_ids=False),
                cfg.model.vocabulary_size or DEFAULT_VOCAB_SIZE,
                self.processor.tokenizer,
                may_replace=ckpt.latest_checkpoint(self.ckpt_root) is None,
            )
        self.processes.wait_for_everyone()
        adopt_vocabulary(model, self.processor, load_vocabulary(vocab_dir))
        info = info or json.loads((vocab_dir / VOCAB_INFO_FILE).read_text(encoding="utf-8"))
        if self.is_main:
            log.info(
                "decoder vocabulary %s: %d text tokens + %d added; %.2f tokens per train text (was %.2f)",
                vocab_dir, info["text_tokens"], info["added_tokens"], info["tokens_per_train_text"],
                info["old_tokens_per_train_text"],
            )  # fmt: skip
        return info

    def _load_examples(self, model) -> None:
        """Train examples (label sequences, + character labels for joint CTC) and the softmax's tokens."""
        cfg, t = self.cfg, self.cfg.train
        self.train_ex, self.train_skipped = load_examples(
            cfg.data.manifest("train"), self.labels, max_duration=cfg.data.max_duration,
            min_duration=cfg.data.min_duration, max_labels=model.config.max_target_positions,
        )  # fmt: skip
        if not self.train_ex:
            raise ConfigError(f"{cfg.data.manifest('train')}: no usable training clips (skipped: {self.train_skipped}; "
                              f"data.min_duration {cfg.data.min_duration:g}, data.max_duration {cfg.data.max_duration:g})")
        self.ctc_vocab = self._add_ctc_labels() if t.ctc_weight > 0 else None
        self.allowed_ids = None
        if t.restrict_vocab:
            ids = set(self.labels.special_ids())
            for ex in self.train_ex:
                ids.update(ex.labels)
            self.allowed_ids = sorted(ids)

    def _add_ctc_labels(self) -> CTCVocab:
        """Joint CTC: every train example gets its text's character ids (``data.vocab_path()``)."""
        vocab = CTCVocab.load(self.cfg.data.vocab_path())
        self.train_ex = [dataclasses.replace(ex, ctc_labels=label_array(vocab.encode(ex.utt.text))) for ex in self.train_ex]
        if self.is_main:
            log.info("joint CTC/attention, weight %.2f: %d characters from %s", self.cfg.train.ctc_weight,
                     len(vocab), vocab.source)  # fmt: skip
        return vocab

    def _train_module(self, model) -> Seq2SeqTrainModule:
        """The regime's trainable weights (+ dropout) in the loss module, with a joint CTC head if any."""
        t = self.cfg.train
        seed_everything(t.seed)  # LoRA and the joint CTC head draw their initial weights from it
        trainable = configure_trainable(model, t)
        if t.dropout > 0:
            set_dropout(trainable, t.dropout)
        module = Seq2SeqTrainModule(
            trainable, split=self.split, lower_frozen=lower_frozen(t), allowed_ids=self.allowed_ids,
            label_smoothing=t.label_smoothing, ctc_weight=t.ctc_weight,
            ctc_vocab_size=len(self.ctc_vocab) if self.ctc_vocab is not None else 0,
        ).to(self.device)  # fmt: skip
        if module.ctc_head is not None:
            self._init_ctc_head(module.ctc_head)
        return module

    def _init_ctc_head(self, head: torch.nn.Module) -> None:
        """Continue the joint CTC head of a base model that was itself trained with one (``<model>/ctc/``)."""
        from pipeline.models.ctc_checkpoint import is_own_ctc_checkpoint, load_ctc_model

        base = Path(self.cfg.model.name) / CTC_DIR
        if not is_own_ctc_checkpoint(base):
            return
        ctc_model, vocab = load_ctc_model(base)
        if vocab != self.ctc_vocab or ctc_model.head.cfg != head.cfg:
            raise ValueError(f"{base}: its CTC head ({vocab}, {ctc_model.head.cfg.kind}) is not this run's "
                             f"({self.ctc_vocab}): train from a base model without ctc/ or use its vocabulary")  # fmt: skip
        head.load_state_dict(ctc_model.head.state_dict())
        if self.is_main:
            log.info("joint CTC head initialised from %s", base)

    def _param_groups(self, module: torch.nn.Module) -> list[dict]:
        decay, no_decay = [], []
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            # Embeddings (incl. the tied output layer, whose untrained rows must stay as they were),
            # biases and norms are not decayed.
            if p.ndim < 2 or "embed" in name or "norm" in name:
                no_decay.append(p)
            else:
                decay.append(p)
        return [
            {"params": decay, "weight_decay": self.cfg.train.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def _train_set(self, cache: EncoderStateCache | None) -> torch.utils.data.Dataset:
        cfg, t = self.cfg, self.cfg.train
        if cache is not None:
            return StateDataset(self.train_ex, cache, cfg.augment, t.seed)
        return FeatureDataset(self.train_ex, self.processor.feature_extractor, cfg.augment, t.seed, t.trimmed_encoder)

    # ------------------------------------------------------------------------------ specializations

    def _planned(self) -> None:
        """With cached states and ``padded_share``: cache the padded-window states of the clips the plan
        puts there (only those: 1500 frames a clip whatever its length)."""
        t, train_set = self.cfg.train, self.parts.train_set
        if t.padded_share == 0 or not isinstance(train_set, StateDataset):
            return
        train_set.padded_cache = self._train_state_cache(
            self.parts.module.whisper.model.encoder, self.split, self.processor.feature_extractor, self.train_ex, self._encoder_origin(),
            trimmed=False, only=self.plan.padded_items(self.total_steps, t.grad_accum),
        )  # fmt: skip

    def _loss(self, batch: dict) -> torch.Tensor:
        return self.module(**self._inputs(batch))

    def _inputs(self, batch: dict) -> dict:
        """The module's inputs on this process's device (its 30-s padded sub-batch, if any, too)."""
        keys = ("decoder_input_ids", "targets", "lengths", "features", "states", "ctc_labels", "ctc_lengths")
        inputs = {k: batch[k].to(self.device) for k in keys if k in batch}
        if "padded" in batch:
            inputs["padded"] = self._inputs(batch["padded"])
        return inputs

    def _score_dev(self) -> DevResult:
        """The model decoded exactly as its export would be by the decode stage (see
        :mod:`pipeline.train.evaluate`); the hypotheses are kept in ``dev_hyps/step-N.jsonl``."""
        d, step = self.cfg.decode, self.progress.step
        with as_exported(self.unwrapped.model, self._adapt_info(None), self.allowed_ids) as plain:
            return evaluate_dev(
                plain, self.processor, self.dev.utts, self.dev.manifest.parent, self._dev_hyps_file(),
                language=self.language, lang=self.dev.lang, batch_size=d.batch_size, num_beams=d.beam,
                name=f"step {step}",
            )  # fmt: skip

    def _write_best(self, dev: DevScore | None) -> None:
        head = self.unwrapped.ctc_head
        export_model(
            self.unwrapped.model, self.processor, self.out / "best", self._adapt_info(dev), self.allowed_ids,
            ctc=None if head is None else (head, self.ctc_vocab),
        )  # fmt: skip

    def _checkpointed(self) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        return self.unwrapped.model, self.unwrapped.ctc_head

    def _adapt_info(self, dev: DevScore | None) -> dict:
        """``asr_adapt.json`` of the exported model: how to decode it (encoder input, language) and its origin."""
        cfg = self.cfg
        return {
            "encoder_input": "trimmed" if cfg.train.trimmed_encoder else "padded",
            "padded_share": cfg.train.padded_share,
            "language": self.language,
            "language_token": language_token(self.language),
            "regime": cfg.train.regime,
            "encoder_trainable_top_layers": cfg.train.encoder_trainable_top_layers,
            "base_model": cfg.model.name,
            "init": cfg.model.init,
            "step": self.progress.step,
            "dev_cer": None if dev is None else dev.cer,
            "dev_wer": None if dev is None else dev.wer,
            "restricted_vocab": self.allowed_ids is not None,
            "vocabulary": cfg.model.vocabulary,
            "vocabulary_text_tokens": None if self.vocab_info is None else self.vocab_info["text_tokens"],
            "ctc_weight": cfg.train.ctc_weight,
        }


def train(cfg: RecipeConfig, progress: bool = True, force: bool = False) -> dict:
    """Run a whole training as configured; returns a summary (steps, best dev CER)."""
    return Trainer(cfg, progress=progress, force=force).train()


__all__ = ["Trainer", "train", "whisper_of"]

"""The training loop: one recipe config in, ``output_dir/{best/,checkpoints/,log.jsonl}`` out.

Order of work in :meth:`Trainer.setup` (each step deterministic given the config):
check ``output_dir`` against this run's identity (:mod:`pipeline.train.identity`; a
different earlier run is refused, ``force`` starts afresh) -> load the base model ->
language token -> new decoder vocabulary (``model.vocabulary: bpe``,
see :mod:`pipeline.train.new_vocab`) -> label sequences (+ character labels for joint
CTC, ``train.ctc_weight``) -> trainable weights
(regime) -> encoder-state cache (cached-encoder) -> batch plan -> AdamW + LR
schedule -> ``accelerate`` -> resume from the newest checkpoint, if any.

The loop itself is plain PyTorch on an ``accelerate.Accelerator``: under
``accelerate launch`` each process trains on its own share of the batches,
DDP averages the gradients, and only the main process evaluates, writes
checkpoints, ``best/`` and the log. The same code runs on one CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from tqdm import tqdm

from data_prep.manifest import Utterance, read_manifest
from data_prep.outputs import atomic_write_text
from pipeline.config import ConfigError, RecipeConfig
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.models.language import LabelEncoder, language_token, setup_language
from pipeline.train import checkpoint as ckpt
from pipeline.train.cache import EncoderStateCache, build_train_state_cache, train_state_cache_id
from pipeline.train.curves import TrainLog, plot_curve
from pipeline.train.data import (
    BatchPlan,
    FeatureDataset,
    Item,
    StateDataset,
    collate,
    load_examples,
    step_sizes,
)
from pipeline.train.evaluate import evaluate_dev, scoring_language
from pipeline.train.export import CTC_DIR, as_exported, export_model
from pipeline.train.finite import all_ranks_finite, diverged, nonfinite_weights
from pipeline.train.identity import start_or_resume
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


def mixed_precision(dtype: str) -> str:
    """accelerate's mixed-precision mode for ``train.dtype`` (autocast only on a GPU)."""
    if dtype == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16"
        return "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[dtype]


def lr_lambda(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warmup, then linear/cosine decay to 0 (or constant) at ``total`` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def deterministic_kernels(device: torch.device) -> None:
    """On CPU, torch's deterministic kernels: the same command gives the same weights, bit for bit.

    With more than one thread some CPU kernels add in the order the threads finish: ``index_put_``
    with accumulation (the backward of Whisper's learnt position embeddings, for one) gives gradients
    that differ in the last bits from run to run, and after a few dozen steps the models differ in WER.
    The deterministic variants cost little on CPU. (GPU training keeps cuDNN's fast kernels.)
    """
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.utils.deterministic.fill_uninitialized_memory = False  # only determinism, not NaN-filled buffers


def load_base(name: str):
    """(model, processor) of the base model: a registry name or a transformers directory."""
    from pipeline.models.whisper import load_whisper

    return load_whisper(name)


class Trainer:
    """Fine-tunes a Whisper model as a :class:`RecipeConfig` says."""

    def __init__(self, cfg: RecipeConfig, *, accelerator: Accelerator | None = None, progress: bool = True,
                 force: bool = False):  # fmt: skip
        if not cfg.output_dir:
            raise ConfigError("output_dir is not set in the config")
        if cfg.model.type != "whisper":
            raise ValueError(f"this trainer trains seq2seq Whisper models, not model.type={cfg.model.type!r}")
        if cfg.model.vocabulary not in ("whisper", "bpe"):
            raise ValueError(f"model.vocabulary must be whisper or bpe, not {cfg.model.vocabulary!r}")
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.acc = accelerator or Accelerator(mixed_precision=mixed_precision(cfg.train.dtype))
        self.progress = progress
        self.force = force
        self.is_main = self.acc.is_main_process
        self.step = 0
        self.epoch = 0
        self.pos = 0  # micro-batches of the current epoch already consumed by this rank
        self.best_cer = math.inf
        self.best_step = -1
        self.bad_evals = 0
        self.stopped_early = False
        self.elapsed_before = 0.0
        self.last_batch_ids: list[str] = []
        self._setup_done = False

    # ------------------------------------------------------------------------------- setup

    def setup(self) -> Trainer:
        cfg, t = self.cfg, self.cfg.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self._check_identity()
        deterministic_kernels(self.acc.device)
        seed_everything(t.seed)
        model, processor = load_base(cfg.model.name)
        self.processor = processor
        self.language = cfg.language
        setup_language(model, processor, self.language, cfg.model.new_language_init_from)
        self.ckpt_root = self.out / "checkpoints"
        self.vocab_info = self._new_vocabulary(model) if cfg.model.vocabulary == "bpe" else None
        self.labels = LabelEncoder(processor, model, self.language)
        max_labels = model.config.max_target_positions
        self.train_ex, self.train_skipped = load_examples(
            cfg.data.manifest("train"), self.labels, max_duration=cfg.data.max_duration,
            min_duration=cfg.data.min_duration, max_labels=max_labels,
        )  # fmt: skip
        if not self.train_ex:
            raise ConfigError(f"{cfg.data.manifest('train')}: no usable training clips (skipped: {self.train_skipped}; "
                              f"data.min_duration {cfg.data.min_duration:g}, data.max_duration {cfg.data.max_duration:g})")
        self.ctc_vocab = self._add_ctc_labels() if t.ctc_weight > 0 else None
        # Dev is decoded from its audio as the decode stage decodes it (every utterance, any length),
        # so it needs no labels and no cached encoder states.
        self.dev_utts: list[Utterance] = []
        self.dev_lang = cfg.data.lang
        self.dev_path = Path(cfg.data.manifest("dev")) if (cfg.data.dev or cfg.data.manifests_dir) else None
        dev_path = self.dev_path
        if dev_path is not None and dev_path.is_file():
            dev = read_manifest(dev_path)
            self.dev_utts = dev[: t.dev_limit] if t.dev_limit > 0 else dev
            self.dev_lang = scoring_language(self.dev_utts, dev_path, cfg.data.lang)
        elif self.is_main:
            log.warning("no dev manifest (%s): no evaluation, best/ is the final model", dev_path)
        self.allowed_ids = None
        if t.restrict_vocab:
            ids = set(self.labels.special_ids())
            for ex in self.train_ex:
                ids.update(ex.labels)
            self.allowed_ids = sorted(ids)

        model.to(self.acc.device)
        self.split = split_layer(model, t)
        self.cache = self._build_cache(model) if t.regime == "cached-encoder" else None
        seed_everything(t.seed)  # LoRA initialisation draws from the global RNG
        trainable = configure_trainable(model, t)
        if t.dropout > 0:
            set_dropout(trainable, t.dropout)
        module = Seq2SeqTrainModule(
            trainable, split=self.split, lower_frozen=lower_frozen(t), allowed_ids=self.allowed_ids,
            label_smoothing=t.label_smoothing, ctc_weight=t.ctc_weight,
            ctc_vocab_size=len(self.ctc_vocab) if self.ctc_vocab is not None else 0,
        ).to(self.acc.device)
        if module.ctc_head is not None:
            self._init_ctc_head(module.ctc_head)
        module.train()

        self.plan = BatchPlan(
            [ex.utt.duration for ex in self.train_ex], batch_seconds=t.batch_seconds,
            max_batch_size=t.max_batch_size, seed=t.seed, speed_factors=cfg.augment.speed_perturb,
            world_size=self.acc.num_processes, rank=self.acc.process_index,
        )  # fmt: skip
        self.steps_per_epoch = self.plan.steps_per_epoch(t.grad_accum)
        self.total_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.epochs * self.steps_per_epoch))
        self.train_set = (
            StateDataset(self.train_ex, self.cache, cfg.augment, t.seed)
            if self.cache is not None
            else FeatureDataset(self.train_ex, processor.feature_extractor, cfg.augment, t.seed, t.trimmed_encoder)
        )

        optimizer = torch.optim.AdamW(self._param_groups(module), lr=t.lr, betas=(0.9, 0.98), eps=1e-6)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(lr_lambda, warmup=t.warmup_steps, total=self.total_steps, schedule=t.schedule)
        )
        self.module, self.optimizer = self.acc.prepare(module, optimizer)
        self.scheduler = scheduler
        self._resume()
        self.log = TrainLog(self.out / "log.jsonl", resume_step=self.step) if self.is_main else None
        if self.is_main:
            log.info(
                "%d train clips (%s skipped), %d dev clips; %d steps (%d per epoch), regime %s, split layer %d, "
                "%d trainable parameters",
                len(self.train_ex), sum(self.train_skipped.values()), len(self.dev_utts), self.total_steps,
                self.steps_per_epoch, t.regime, self.split, self.n_trainable,
            )  # fmt: skip
        self._setup_done = True
        return self

    def _check_identity(self) -> None:
        """Refuse an output_dir holding another run (before anything is written), record this run's config."""
        if self.is_main:
            resumed = start_or_resume(self.cfg, force=self.force)
            config = self.out / "train_config.json"
            if not resumed or not config.exists():  # a resume keeps the config the run started with
                atomic_write_text(config, self.cfg.to_json())
        self.acc.wait_for_everyone()

    @property
    def unwrapped(self) -> Seq2SeqTrainModule:
        return self.acc.unwrap_model(self.module)

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.unwrapped.parameters() if p.requires_grad)

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
        self.acc.wait_for_everyone()
        adopt_vocabulary(model, self.processor, load_vocabulary(vocab_dir))
        info = info or json.loads((vocab_dir / VOCAB_INFO_FILE).read_text(encoding="utf-8"))
        if self.is_main:
            log.info(
                "decoder vocabulary %s: %d text tokens + %d added; %.2f tokens per train text (was %.2f)",
                vocab_dir, info["text_tokens"], info["added_tokens"], info["tokens_per_train_text"],
                info["old_tokens_per_train_text"],
            )  # fmt: skip
        return info

    def _add_ctc_labels(self) -> CTCVocab:
        """Joint CTC: every train example gets its text's character ids (``data.vocab_path()``)."""
        vocab = CTCVocab.load(self.cfg.data.vocab_path())
        self.train_ex = [dataclasses.replace(ex, ctc_labels=tuple(vocab.encode(ex.utt.text))) for ex in self.train_ex]
        if self.is_main:
            log.info("joint CTC/attention, weight %.2f: %d characters from %s", self.cfg.train.ctc_weight,
                     len(vocab), vocab.source)  # fmt: skip
        return vocab

    def _init_ctc_head(self, head: torch.nn.Module) -> None:
        """Continue the joint CTC head of a base model that was itself trained with one (``<model>/ctc/``)."""
        from pipeline.models.ctc_checkpoint import is_ctc_checkpoint, load_ctc_model

        base = Path(self.cfg.model.name) / CTC_DIR
        if not is_ctc_checkpoint(base):
            return
        ctc_model, vocab = load_ctc_model(base)
        if vocab != self.ctc_vocab or ctc_model.head.cfg != head.cfg:
            raise ValueError(f"{base}: its CTC head ({vocab}, {ctc_model.head.cfg.kind}) is not this run's "
                             f"({self.ctc_vocab}): train from a base model without ctc/ or use its vocabulary")  # fmt: skip
        head.load_state_dict(ctc_model.head.state_dict())
        if self.is_main:
            log.info("joint CTC head initialised from %s", base)

    def _build_cache(self, model) -> EncoderStateCache:
        """Compute (main process) or wait for the lower encoder states of the train clips (all speeds)."""
        cfg, t = self.cfg, self.cfg.train
        encoder, fe = model.model.encoder, self.processor.feature_extractor
        root = Path(t.cache_dir) if t.cache_dir else self.out / "encoder_cache"
        if self.is_main and self.train_ex:
            build_train_state_cache(
                root, encoder, self.split, fe, self.train_ex, cfg.augment.speed_perturb, base_model=cfg.model.name,
                seed=t.seed, batch_size=cfg.decode.batch_size, shard_size=t.cache_shard_size,
                device=self.acc.device, progress=self.progress,
            )  # fmt: skip
        self.acc.wait_for_everyone()
        return EncoderStateCache(root, train_state_cache_id(encoder, self.split, fe)[0])

    def _resume(self) -> None:
        if self.is_main:
            ckpt.clean_temporaries(self.ckpt_root)
        self.acc.wait_for_everyone()
        path = ckpt.latest_checkpoint(self.ckpt_root)
        if path is None:
            return
        state = ckpt.load_checkpoint(
            path, model=self.unwrapped.model, optimizer=self.optimizer, scheduler=self.scheduler,
            rank=self.acc.process_index, heads=self.unwrapped.ctc_head,
        )  # fmt: skip
        self.step = state["step"]
        self.epoch = state["epoch"]
        self.pos = state["pos"]
        self.best_cer = state["best_cer"] if state["best_cer"] is not None else math.inf
        self.best_step = state["best_step"]
        self.bad_evals = state["bad_evals"]
        self.elapsed_before = state["elapsed_s"]
        self.stopped_early = state["stopped_early"]
        if self.is_main:
            log.info("resumed from %s (step %d, epoch %d)", path, self.step, self.epoch)

    # ------------------------------------------------------------------------------- loop

    def _loader(self, dataset, batches: list[list[Item]], seed: int):
        pad = self.labels.eot
        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=functools.partial(collate, pad_id=pad),
            num_workers=self.cfg.train.num_workers,
            # An explicit generator keeps the loader from drawing on the global RNG (dropout's),
            # which would make a resumed run diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(seed),
        )

    def _to_device(self, batch: dict) -> dict:
        keys = ("decoder_input_ids", "targets", "lengths", "features", "states", "ctc_labels", "ctc_lengths")
        return {k: batch[k].to(self.acc.device) for k in keys if k in batch}

    def _optimizer_step(self, micro: list[dict]) -> tuple[float, int]:
        """One update from the micro-batches ``micro``; a non-finite loss or gradient stops the run."""
        t = self.cfg.train
        losses = []
        n_utts = 0
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            ctx = contextlib.nullcontext() if last else self.acc.no_sync(self.module)
            with ctx:
                loss = self.module(**self._to_device(batch))
                value = float(loss.detach())
                if not all_ranks_finite(value, self.acc.device, self.acc.num_processes):
                    where = f"clips {', '.join(batch['ids'][:5])}" if not math.isfinite(value) else "another process"
                    raise self._diverged(f"the training loss is {value if not math.isfinite(value) else 'not finite'} "
                                         f"({where})")  # fmt: skip
                self.acc.backward(loss / len(micro))
            losses.append(value)
            n_utts += len(batch["ids"])
        params = [p for p in self.module.parameters() if p.requires_grad]
        # fp16's loss scaler expects (and skips) steps with infinite gradients; otherwise they are fatal.
        norm = self.acc.clip_grad_norm_(params, t.clip if t.clip > 0 else math.inf)
        if self.acc.scaler is None and norm is not None and not math.isfinite(float(norm)):
            raise self._diverged(f"the gradient norm is {float(norm)}")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sum(losses) / len(losses), n_utts

    def train(self, until_step: int | None = None) -> dict:
        """Train to the end (or early stop); ``until_step`` returns early as if interrupted (tests)."""
        if not self._setup_done:
            self.setup()
        t = self.cfg.train
        ga = t.grad_accum
        eval_every = t.eval_every if t.eval_every > 0 else self.total_steps
        ckpt_every = t.checkpoint_every if t.checkpoint_every > 0 else eval_every
        bar = tqdm(
            total=self.total_steps, initial=self.step, desc="train", unit="step",
            disable=not (self.progress and self.is_main), dynamic_ncols=True,
        )  # fmt: skip
        t0 = time.time()
        # Throughput counts training time only (data, forward, backward, update), not evaluation/saving.
        window_loss, window_utts, window_busy = [], 0, 0.0
        try:
            while self.step < self.total_steps and not self.stopped_early:
                batches = self.plan.epoch_batches(self.epoch)
                if self.pos >= len(batches):
                    self.epoch, self.pos = self.epoch + 1, 0
                    continue
                loader = self._loader(self.train_set, batches[self.pos :], t.seed + self.epoch)
                it = iter(loader)
                for size in step_sizes(len(batches), self.pos, ga):
                    tick = time.time()
                    micro = [next(it) for _ in range(size)]
                    self.last_batch_ids = [i for b in micro for i in b["ids"]]
                    loss, n = self._optimizer_step(micro)
                    self.step += 1
                    self.pos += size
                    if self.pos >= len(batches):
                        self.epoch, self.pos = self.epoch + 1, 0
                    window_busy += time.time() - tick
                    window_loss.append(loss)
                    window_utts += n * self.acc.num_processes
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                    is_eval = self.step % eval_every == 0 or self.step == self.total_steps
                    dev = self._evaluate() if is_eval else None
                    if self.step % t.log_every == 0 or dev is not None or self.step == self.total_steps:
                        now = time.time()
                        self._log(
                            train_loss=sum(window_loss) / len(window_loss) if window_loss else None,
                            dev=dev, samples_per_s=window_utts / max(window_busy, 1e-9),
                            elapsed=self.elapsed_before + now - t0,
                        )  # fmt: skip
                        window_loss, window_utts, window_busy = [], 0, 0.0
                    if self.step % ckpt_every == 0 or self.step == self.total_steps or self.stopped_early:
                        self._checkpoint(self.elapsed_before + time.time() - t0)
                    if until_step is not None and self.step >= until_step:
                        return self.summary(interrupted=True)
                    if self.stopped_early or self.step >= self.total_steps:
                        break
        finally:
            bar.close()
        if not self.dev_utts and self.is_main:
            self._export_best(None)
        self.acc.wait_for_everyone()
        return self.summary()

    def summary(self, interrupted: bool = False) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "best_cer": None if math.isinf(self.best_cer) else self.best_cer,
            "best_step": self.best_step,
            "stopped_early": self.stopped_early,
            "interrupted": interrupted,
        }

    # ------------------------------------------------------------------------------- eval / io

    def _adapt_info(self, dev: dict | None) -> dict:
        """``asr_adapt.json`` of the exported model: how to decode it (encoder input, language) and its origin."""
        cfg = self.cfg
        return {
            "encoder_input": "trimmed" if cfg.train.trimmed_encoder else "padded",
            "language": self.language,
            "language_token": language_token(self.language),
            "regime": cfg.train.regime,
            "encoder_trainable_top_layers": cfg.train.encoder_trainable_top_layers,
            "base_model": cfg.model.name,
            "step": self.step,
            "dev_cer": None if dev is None else dev["cer"],
            "dev_wer": None if dev is None else dev["wer"],
            "restricted_vocab": self.allowed_ids is not None,
            "vocabulary": cfg.model.vocabulary,
            "vocabulary_text_tokens": None if self.vocab_info is None else self.vocab_info["text_tokens"],
            "ctc_weight": cfg.train.ctc_weight,
        }

    def _evaluate(self) -> dict | None:
        """Dev CER/WER on the main process; best/ and early stopping follow. All ranks get the result.

        The model is decoded exactly as its export would be by the decode stage (see
        :mod:`pipeline.train.evaluate`); the hypotheses are kept in ``dev_hyps/step-N.jsonl``.
        """
        if not self.dev_utts:
            return None
        self._check_weights()  # on every process, so that all stop together
        result = [None]
        if self.is_main:
            d = self.cfg.decode
            with as_exported(self.unwrapped.model, self._adapt_info(None), self.allowed_ids) as plain:
                res = evaluate_dev(
                    plain, self.processor, self.dev_utts, self.dev_path.parent,
                    self.out / "dev_hyps" / f"step-{self.step:07d}.jsonl", language=self.language,
                    lang=self.dev_lang, batch_size=d.batch_size, num_beams=d.beam, name=f"step {self.step}",
                )  # fmt: skip
            result = [{"cer": res.cer, "wer": res.wer, "n": res.n}]
        if self.acc.num_processes > 1:
            torch.distributed.broadcast_object_list(result, src=0)
        dev = result[0]
        if dev["cer"] < self.best_cer:
            self.best_cer, self.best_step, self.bad_evals = dev["cer"], self.step, 0
            if self.is_main:
                self._export_best(dev)
        else:
            self.bad_evals += 1
            if self.cfg.train.patience and self.bad_evals >= self.cfg.train.patience:
                self.stopped_early = True
        if self.is_main:
            log.info("step %d: dev CER %.4f WER %.4f (best %.4f at step %d)", self.step, dev["cer"], dev["wer"],
                     self.best_cer, self.best_step)  # fmt: skip
        return dev

    def _diverged(self, what: str):
        return diverged(self.step + 1, what, ckpt.latest_checkpoint(self.ckpt_root))

    def _check_weights(self) -> None:
        """Refuse to save weights that are not finite (the update of step ``self.step`` broke them)."""
        bad = nonfinite_weights(self.unwrapped.named_parameters())
        if bad:
            raise diverged(self.step, f"{len(bad)} weight tensors are not finite (e.g. {bad[0]})",
                           ckpt.latest_checkpoint(self.ckpt_root))  # fmt: skip

    def _export_best(self, dev: dict | None) -> None:
        self._check_weights()
        head = self.unwrapped.ctc_head
        export_model(
            self.unwrapped.model, self.processor, self.out / "best", self._adapt_info(dev), self.allowed_ids,
            ctc=None if head is None else (head, self.ctc_vocab),
        )  # fmt: skip

    def _log(self, *, train_loss, dev, samples_per_s, elapsed) -> None:
        if not self.is_main:
            return
        self.log.add(
            step=self.step,
            epoch=round(self.step / self.steps_per_epoch, 3),
            train_loss=train_loss,
            lr=self.scheduler.get_last_lr()[0],
            dev_cer=None if dev is None else dev["cer"],
            dev_wer=None if dev is None else dev["wer"],
            samples_per_s=round(samples_per_s, 3),
            elapsed_s=round(elapsed, 2),
        )
        if dev is not None or self.step == self.total_steps:
            plot_curve(self.log.records, self.out / "curve.png", title=f"{self.cfg.train.regime} ({self.language})")

    def _checkpoint(self, elapsed: float) -> None:
        self._check_weights()
        ckpt.write_rank_rng(self.ckpt_root, self.step, self.acc.process_index)
        self.acc.wait_for_everyone()
        if self.is_main:
            state = {
                "epoch": self.epoch,
                "pos": self.pos,
                "best_cer": None if math.isinf(self.best_cer) else self.best_cer,
                "best_step": self.best_step,
                "bad_evals": self.bad_evals,
                "stopped_early": self.stopped_early,
                "elapsed_s": elapsed,
                "world_size": self.acc.num_processes,
                "config": json.loads(self.cfg.to_json()),
            }
            ckpt.save_checkpoint(
                self.ckpt_root, self.step, model=self.unwrapped.model, optimizer=self.optimizer,
                scheduler=self.scheduler, state=state, keep=self.cfg.train.keep_checkpoints,
                heads=self.unwrapped.ctc_head,
            )  # fmt: skip
        self.acc.wait_for_everyone()


def train(cfg: RecipeConfig, progress: bool = True, force: bool = False) -> dict:
    """Run a whole training as configured; returns a summary (steps, best dev CER)."""
    return Trainer(cfg, progress=progress, force=force).train()


__all__ = ["Trainer", "train", "lr_lambda", "mixed_precision", "whisper_of"]

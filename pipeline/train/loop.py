"""The training loop, one for every model type: ``output_dir/{best/,checkpoints/,log.jsonl}`` out.

:class:`TrainingLoop` does what a training does whatever it trains:

- **start**: refuse an ``output_dir`` holding another run, record this one
  (:mod:`pipeline.train.identity`); seeds; deterministic kernels on CPU;
- **plan**: every epoch's batches (:class:`~pipeline.train.data.BatchPlan`: durations,
  speed factors, channels, this process's share), cut into optimizer steps of ``train.grad_accum``
  micro-batches (:func:`~pipeline.train.data.step_sizes`);
- **update**: AdamW, gradient clipping (``train.clip``), the LR schedule (:func:`lr_lambda`),
  and a stop at the first non-finite loss, gradient norm or weight (:mod:`pipeline.train.finite`);
- **evaluate**: dev CER/WER every ``train.eval_every`` steps and at the end; a better CER
  writes ``best/``, ``train.patience`` evaluations without one stop the run;
- **record**: ``log.jsonl`` and ``curve.png`` (:mod:`pipeline.train.curves`), checkpoints
  every ``train.checkpoint_every`` steps (:mod:`pipeline.train.checkpoint`), exact resume
  from the newest one, and the summary the ``train`` command returns.

A trainer specializes it with what differs between model types, and nothing else:

- :meth:`~TrainingLoop._build`: the model, the train examples and their dataset, as
  :class:`TrainingParts`;
- :meth:`~TrainingLoop._loss`: the loss of one micro-batch;
- :meth:`~TrainingLoop._score_dev`: how dev is decoded and scored;
- :meth:`~TrainingLoop._write_best`: what ``best/`` holds;
- :meth:`~TrainingLoop._checkpointed`, :meth:`~TrainingLoop._extra_state`,
  :meth:`~TrainingLoop._restore_extra_state`: what a checkpoint holds besides the
  common :class:`Progress` (a training-only head, a monitor's history).

:class:`pipeline.train.trainer.Trainer` (Whisper decoder fine-tuning) and
:class:`pipeline.train.ctc_trainer.CTCTrainer` (CTC heads) are the two. The loop runs on
:class:`~pipeline.train.processes.Processes`: several under ``accelerate launch`` (each
trains on its own batches, only the main process evaluates and writes), or one.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data_prep.outputs import atomic_write_text
from pipeline.config import ConfigError, RecipeConfig
from pipeline.models.cpu_kernels import bound_kernel_cache
from pipeline.train import checkpoint as ckpt
from pipeline.train.cache import EncoderStateCache, build_train_state_cache, open_train_state_cache
from pipeline.train.channels import TrainChannels
from pipeline.train.curves import TrainLog, plot_curve
from pipeline.train.data import BatchPlan, Example, Item, step_sizes
from pipeline.train.evaluate import DevResult, DevSet, load_dev_set
from pipeline.train.finite import TrainingDiverged, all_ranks_finite, diverged, nonfinite_weights
from pipeline.train.identity import DEFAULT_CACHE, start_or_resume
from pipeline.train.processes import Processes, broadcast_from_main

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


@dataclass
class Progress:
    """Where a run stands: what a checkpoint's ``state.json`` records and a resume restores."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    pos: int = 0  # micro-batches of the current epoch this process has consumed
    best_cer: float = math.inf  # best dev CER so far (inf: no evaluation yet)
    best_step: int = -1
    bad_evals: int = 0  # evaluations since the best one (``train.patience`` of them stop the run)
    stopped_early: bool = False
    elapsed_s: float = 0.0  # wall-clock seconds trained before the current ``train()`` call

    def state(self) -> dict:
        """The checkpoint's copy (its step is the checkpoint's own; no CER yet is null)."""
        state = dataclasses.asdict(self)
        del state["step"]
        state["best_cer"] = None if math.isinf(self.best_cer) else self.best_cer
        return state

    @classmethod
    def from_state(cls, state: dict) -> Progress:
        """The progress a checkpoint's ``state.json`` recorded."""
        best = state["best_cer"]
        return cls(
            step=state["step"], epoch=state["epoch"], pos=state["pos"], best_cer=math.inf if best is None else best,
            best_step=state["best_step"], bad_evals=state["bad_evals"], stopped_early=state["stopped_early"],
            elapsed_s=state["elapsed_s"],
        )  # fmt: skip


@dataclass(frozen=True)
class DevScore:
    """One dev evaluation, as every process gets it."""

    cer: float
    wer: float
    n: int  # utterances scored


@dataclass
class StepWindow:
    """The steps since the last log line: their losses and throughput (training time only, no evaluation)."""

    losses: list[float] = field(default_factory=list)
    utts: int = 0  # clips trained on, by all processes
    busy_s: float = 0.0  # seconds of data loading, forward, backward and update

    def add(self, loss: float, utts: int, seconds: float) -> None:
        self.losses.append(loss)
        self.utts += utts
        self.busy_s += seconds

    def mean_loss(self) -> float | None:
        return sum(self.losses) / len(self.losses) if self.losses else None

    def samples_per_s(self) -> float:
        return self.utts / max(self.busy_s, 1e-9)


@dataclass
class TrainingParts:
    """What a trainer builds for the loop: the module that trains and the data it trains on."""

    module: torch.nn.Module  # the trainable model (before ``Processes.prepare``)
    param_groups: list[dict]  # AdamW's parameter groups; a group may carry its own ``lr``
    train_set: torch.utils.data.Dataset  # Item -> sample
    collate: Callable[[list[dict]], dict]  # samples -> micro-batch (with its clip ``ids``)
    durations: list[float]  # seconds of each train example, for the batch plan
    description: str  # what trains on what, for the log
    curve_title: str  # the title of curve.png


class TrainingLoop:
    """Trains, evaluates, saves and resumes as a :class:`RecipeConfig` says; subclasses say what model.

    ``progress`` shows progress bars; ``force`` starts afresh over an earlier run of other
    inputs or settings (:func:`pipeline.train.identity.start_or_resume`).
    """

    def __init__(self, cfg: RecipeConfig, processes: Processes, *, progress: bool = True, force: bool = False):
        if not cfg.output_dir:
            raise ConfigError("output_dir is not set in the config")
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.processes = processes
        self.device = processes.device
        self.is_main = processes.is_main_process
        self.show_progress = progress
        self.force = force
        self.progress = Progress()
        self.last_batch_ids: list[str] = []  # the clips of the last step on this process
        self._window = StepWindow()
        self._train_started: float | None = None
        self._setup_done = False

    # ------------------------------------------------------------------- what a trainer specializes

    def _build(self) -> TrainingParts:
        """Load the model and the train examples, build the module that trains and its dataset."""
        raise NotImplementedError

    def _loss(self, batch: dict) -> torch.Tensor:
        """The loss of one micro-batch (a scalar tensor; its gradient trains)."""
        raise NotImplementedError

    def _score_dev(self) -> DevResult:
        """Decode dev as the decode stage decodes this model (hyps in :meth:`_dev_hyps_file`) and score it."""
        raise NotImplementedError

    def _write_best(self, dev: DevScore | None) -> None:
        """Write ``best/`` from the current weights (``dev``: their score, None without dev)."""
        raise NotImplementedError

    def _checkpointed(self) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        """(model, training-only heads or None): the modules whose trainable weights a checkpoint holds."""
        raise NotImplementedError

    def _planned(self) -> None:
        """What needs the batch plan (``self.plan``, ``self.total_steps``), after :meth:`_build`."""

    def _extra_state(self) -> dict:
        """What ``state.json`` holds besides the progress (JSON), for :meth:`_restore_extra_state`."""
        return {}

    def _restore_extra_state(self, state: dict) -> None:
        """Take back what :meth:`_extra_state` saved (``state``: the whole ``state.json``)."""

    # ------------------------------------------------------------------------------------- setup

    def setup(self) -> TrainingLoop:
        """Everything before the first step; deterministic given the config (and the checkpoint resumed)."""
        t = self.cfg.train
        bound_kernel_cache()
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        self._start_or_resume_run()
        deterministic_kernels(self.device)
        seed_everything(t.seed)
        self.parts = self._build()
        self.dev = self._load_dev()
        self._plan_batches()
        self._planned()
        self._prepare_optimizer()
        self._resume()
        self.log = TrainLog(self.out / "log.jsonl", resume_step=self.progress.step) if self.is_main else None
        if self.is_main:
            log.info("%s; %d dev clips; %d steps (%d per epoch); %d trainable parameters", self.parts.description,
                     len(self.dev.utts), self.total_steps, self.steps_per_epoch, self.n_trainable)  # fmt: skip
        self._setup_done = True
        return self

    def _start_or_resume_run(self) -> None:
        """Refuse an output_dir holding another run (before anything is written), record this run's config."""
        if self.is_main:
            resumed = start_or_resume(self.cfg, force=self.force)
            config = self.out / "train_config.json"
            if not resumed or not config.exists():  # a resume keeps the config the run started with
                atomic_write_text(config, self.cfg.to_json())
        self.processes.wait_for_everyone()

    def _load_dev(self) -> DevSet:
        dev = load_dev_set(self.cfg)
        if not dev.utts and self.is_main:
            log.warning("no dev manifest (%s): no evaluation, best/ is the final model", dev.manifest)
        return dev

    def _plan_batches(self) -> None:
        """Every epoch's batches of this process; the steps an epoch and the run take."""
        cfg, t, p = self.cfg, self.cfg.train, self.processes
        self.plan = BatchPlan(
            self.parts.durations, batch_seconds=t.batch_seconds, max_batch_size=t.max_batch_size, seed=t.seed,
            speed_factors=cfg.augment.speed_perturb, channels=cfg.augment.channels, world_size=p.num_processes, rank=p.process_index,
            padded_share=t.padded_share,
        )  # fmt: skip
        self.steps_per_epoch = self.plan.steps_per_epoch(t.grad_accum)
        self.total_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.epochs * self.steps_per_epoch))
        self.eval_every = t.eval_every if t.eval_every > 0 else self.total_steps
        self.checkpoint_every = t.checkpoint_every if t.checkpoint_every > 0 else self.eval_every

    def _prepare_optimizer(self) -> None:
        """AdamW and the LR schedule over the trainable module, handed to the processes (DDP wraps it)."""
        t = self.cfg.train
        module = self.parts.module.train()
        optimizer = torch.optim.AdamW(self.parts.param_groups, lr=t.lr, betas=(0.9, 0.98), eps=1e-6)
        schedule = functools.partial(lr_lambda, warmup=t.warmup_steps, total=self.total_steps, schedule=t.schedule)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        self.module, self.optimizer = self.processes.prepare(module, optimizer)

    def _train_state_cache(self, encoder: torch.nn.Module, stop: int, feature_extractor, examples: list[Example],
                           base_model: str, trimmed: bool = True,
                           only: set[tuple[int, float, str]] | None = None) -> EncoderStateCache:  # fmt: skip
        """The states after encoder layer ``stop`` of every train clip at every speed factor and channel (both
        trainers' cache: one encoder and split point share it): the main process computes what is missing, all
        read it. ``trimmed=False``: the states of the 30-s padded window (``train.padded_share``) of the
        (example index, speed factor, channel) triples in ``only``."""
        cfg, t = self.cfg, self.cfg.train
        root = Path(t.cache_dir) if t.cache_dir else self.out / DEFAULT_CACHE
        cache = None
        if self.is_main:
            cache = build_train_state_cache(
                root, encoder, stop, feature_extractor, examples, cfg.augment.speed_perturb, base_model=base_model,
                seed=t.seed, batch_size=cfg.decode.batch_size, shard_size=t.cache_shard_size, device=self.device,
                progress=self.show_progress, trimmed=trimmed, only=only, channels=cfg.augment.channels,
            )  # fmt: skip
        self.processes.wait_for_everyone()
        if cache is not None:
            return cache
        channels_id = TrainChannels(examples).fingerprint(cfg.augment.channels)
        return open_train_state_cache(root, encoder, stop, feature_extractor, trimmed, channels_id)

    def _resume(self) -> None:
        """Continue from the newest complete checkpoint, if any (half-written ones are removed)."""
        if self.is_main:
            ckpt.clean_temporaries(self.ckpt_root)
        self.processes.wait_for_everyone()
        path = ckpt.latest_checkpoint(self.ckpt_root)
        if path is None:
            return
        model, heads = self._checkpointed()
        state = ckpt.load_checkpoint(path, model=model, optimizer=self.optimizer, scheduler=self.scheduler,
                                     rank=self.processes.process_index, heads=heads)  # fmt: skip
        self.progress = Progress.from_state(state)
        self._restore_extra_state(state)
        if self.is_main:
            log.info("resumed from %s (step %d, epoch %d)", path, self.progress.step, self.progress.epoch)

    @property
    def step(self) -> int:
        """Optimizer steps done (``progress.step``)."""
        return self.progress.step

    @property
    def unwrapped(self) -> torch.nn.Module:
        """The trainable module without its DDP wrapper."""
        return self.processes.unwrap_model(self.module)

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.unwrapped.parameters() if p.requires_grad)

    # -------------------------------------------------------------------------------------- loop

    def train(self, until_step: int | None = None) -> dict:
        """Train to the end (or early stop); ``until_step`` returns early as if interrupted (tests)."""
        if not self._setup_done:
            self.setup()
        p = self.progress
        steps = self._step_batches()
        bar = tqdm(total=self.total_steps, initial=p.step, desc="train", unit="step",
                   disable=not (self.show_progress and self.is_main), dynamic_ncols=True)  # fmt: skip
        self._train_started = time.time()
        try:
            while not self._finished():
                tick = time.time()
                micro = next(steps)
                self.last_batch_ids = [i for b in micro for i in b["ids"]]
                loss = self._optimizer_step(micro)
                p.step += 1
                n_utts = len(self.last_batch_ids) * self.processes.num_processes
                self._window.add(loss, n_utts, time.time() - tick)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                self._evaluate_log_checkpoint()
                if until_step is not None and p.step >= until_step:
                    return self.summary(interrupted=True)
        finally:
            bar.close()
            p.elapsed_s, self._train_started = self._elapsed(), None
        if not self.dev.utts and self.is_main:
            self._export_best(None)
        self.processes.wait_for_everyone()
        return self.summary()

    def _finished(self) -> bool:
        return self.progress.step >= self.total_steps or self.progress.stopped_early

    def _step_batches(self) -> Iterator[list[dict]]:
        """The micro-batches of each optimizer step from where the run stands on, epoch after epoch.

        ``progress.epoch``/``pos`` already point past a step's micro-batches when it is yielded, as
        a checkpoint written after that step must record. Each epoch's loader starts at ``pos``, so a
        resumed run sees the batches an uninterrupted one would.
        """
        p, t = self.progress, self.cfg.train
        while True:
            batches = self.plan.epoch_batches(p.epoch)
            if p.pos >= len(batches):
                p.epoch, p.pos = p.epoch + 1, 0
                continue
            loaded = iter(self._loader(batches[p.pos :], t.seed + p.epoch))
            for size in step_sizes(len(batches), p.pos, t.grad_accum):
                micro = [next(loaded) for _ in range(size)]
                p.pos += size
                if p.pos >= len(batches):
                    p.epoch, p.pos = p.epoch + 1, 0
                yield micro

    def _loader(self, batches: list[list[Item]], seed: int) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.parts.train_set, batch_sampler=batches, collate_fn=self.parts.collate,
            num_workers=self.cfg.train.num_workers,
            # An explicit generator keeps the loader from drawing on the global RNG (dropout's),
            # which would make a resumed run diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(seed),
        )  # fmt: skip

    def _optimizer_step(self, micro: list[dict]) -> float:
        """One update from the micro-batches of a step (their mean gradient); returns their mean loss.

        A non-finite loss or gradient norm stops the run before the update.
        """
        losses = []
        for i, batch in enumerate(micro):
            # DDP averages the gradients across processes in the backward pass of the last micro-batch only.
            last = i == len(micro) - 1
            with contextlib.nullcontext() if last else self.processes.no_sync(self.module):
                loss = self._loss(batch)
                value = float(loss.detach())
                self._check_loss(value, batch["ids"])
                self.processes.backward(loss / len(micro))
            losses.append(value)
        self._clip_gradients()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sum(losses) / len(losses)

    def _check_loss(self, value: float, ids: list[str]) -> None:
        """Stop every process when the loss of any is not finite (else the others would wait forever)."""
        if not all_ranks_finite(value, self.device, self.processes.num_processes):
            where = f"clips {', '.join(ids[:5])}" if not math.isfinite(value) else "another process"
            raise self._diverged(f"the training loss is {value if not math.isfinite(value) else 'not finite'} "
                                 f"({where})")  # fmt: skip

    def _clip_gradients(self) -> None:
        clip = self.cfg.train.clip
        params = [p for p in self.module.parameters() if p.requires_grad]
        norm = self.processes.clip_grad_norm_(params, clip if clip > 0 else math.inf)
        # fp16's loss scaler expects (and skips) steps with infinite gradients; otherwise they are fatal.
        if self.processes.scaler is None and norm is not None and not math.isfinite(float(norm)):
            raise self._diverged(f"the gradient norm is {float(norm)}")

    def _evaluate_log_checkpoint(self) -> None:
        """After a step: evaluate, log and checkpoint when the step number (or the run's end) says so."""
        p, t = self.progress, self.cfg.train
        last = p.step == self.total_steps
        dev = self._evaluate() if p.step % self.eval_every == 0 or last else None
        if p.step % t.log_every == 0 or dev is not None or last:
            self._log(dev)
            self._window = StepWindow()
        if p.step % self.checkpoint_every == 0 or last or p.stopped_early:
            self._checkpoint()

    def _elapsed(self) -> float:
        """Wall-clock seconds this run has trained, earlier processes included (evaluation and saving too)."""
        running = time.time() - self._train_started if self._train_started is not None else 0.0
        return self.progress.elapsed_s + running

    def summary(self, interrupted: bool = False) -> dict:
        p = self.progress
        return {
            "step": p.step,
            "epoch": p.epoch,
            "best_cer": None if math.isinf(p.best_cer) else p.best_cer,
            "best_step": p.best_step,
            "stopped_early": p.stopped_early,
            "interrupted": interrupted,
        }

    # ----------------------------------------------------------------------- evaluation and files

    def _evaluate(self) -> DevScore | None:
        """Dev CER/WER (decoded on the main process, shared with all); ``best/`` and early stopping follow."""
        if not self.dev.utts:
            return None
        self._check_weights()  # on every process, so that all stop together
        score = None
        if self.is_main:
            result = self._score_dev()
            score = DevScore(result.cer, result.wer, result.n)
        score = broadcast_from_main(score, self.processes)
        p = self.progress
        if score.cer < p.best_cer:
            p.best_cer, p.best_step, p.bad_evals = score.cer, p.step, 0
            if self.is_main:
                self._export_best(score)
        else:
            p.bad_evals += 1
            if self.cfg.train.patience and p.bad_evals >= self.cfg.train.patience:
                p.stopped_early = True
        if self.is_main:
            log.info("step %d: dev CER %.4f WER %.4f (best %.4f at step %d)", p.step, score.cer, score.wer,
                     p.best_cer, p.best_step)  # fmt: skip
        return score

    def _dev_hyps_file(self) -> Path:
        """Where this step's dev hypotheses go; a ``.partial`` of another step's weights is never resumed."""
        out = self.out / "dev_hyps" / f"step-{self.progress.step:07d}.jsonl"
        out.with_name(out.name + ".partial").unlink(missing_ok=True)
        return out

    def _diverged(self, what: str) -> TrainingDiverged:
        """The error for the step under way (``progress.step`` + 1), naming the last good checkpoint."""
        return diverged(self.progress.step + 1, what, ckpt.latest_checkpoint(self.ckpt_root))

    def _check_weights(self) -> None:
        """Refuse to save weights that are not finite (the update of step ``progress.step`` broke them)."""
        bad = nonfinite_weights(self.unwrapped.named_parameters())
        if bad:
            raise diverged(self.progress.step, f"{len(bad)} weight tensors are not finite (e.g. {bad[0]})",
                           ckpt.latest_checkpoint(self.ckpt_root))  # fmt: skip

    def _export_best(self, dev: DevScore | None) -> None:
        self._check_weights()
        self._write_best(dev)

    def _log(self, dev: DevScore | None) -> None:
        if not self.is_main:
            return
        step, window = self.progress.step, self._window
        self.log.add(
            step=step, epoch=round(step / self.steps_per_epoch, 3), train_loss=window.mean_loss(),
            lr=self.scheduler.get_last_lr()[0], dev_cer=None if dev is None else dev.cer,
            dev_wer=None if dev is None else dev.wer, samples_per_s=round(window.samples_per_s(), 3),
            elapsed_s=round(self._elapsed(), 2),
        )  # fmt: skip
        if dev is not None or step == self.total_steps:
            plot_curve(self.log.records, self.out / "curve.png", title=self.parts.curve_title)

    def _checkpoint(self) -> None:
        """Checkpoint ``checkpoints/step-N/`` (each process's RNG state, the rest by the main process)."""
        self._check_weights()
        ckpt.write_rank_rng(self.ckpt_root, self.progress.step, self.processes.process_index)
        self.processes.wait_for_everyone()
        if self.is_main:
            state = {
                **self.progress.state(), "elapsed_s": self._elapsed(), "world_size": self.processes.num_processes,
                "config": json.loads(self.cfg.to_json()), **self._extra_state(),
            }  # fmt: skip
            model, heads = self._checkpointed()
            ckpt.save_checkpoint(self.ckpt_root, self.progress.step, model=model, optimizer=self.optimizer,
                                 scheduler=self.scheduler, state=state, keep=self.cfg.train.keep_checkpoints,
                                 heads=heads)  # fmt: skip
        self.processes.wait_for_everyone()

"""Training CTC models (``model.type: ctc``): one recipe config in, ``output_dir/{best/,checkpoints/,log.jsonl}`` out.

The model is a pretrained encoder with a new character head over
``<manifests_dir>/vocab.json`` (written by ``prepare`` from the TRAIN split):
a Whisper encoder (``ctc.encoder`` empty = ``model.name``, via the registry) as
:class:`~pipeline.models.ctc.WhisperEncoderCTC`, or a local wav2vec2 / XLS-R /
MMS directory (:func:`~pipeline.models.ctc_wav2vec2.load_wav2vec2_ctc`). A Whisper-encoder
CTC checkpoint as ``model.name`` is continued, head and all (self-training on pseudo-labels).

Shared with the Whisper trainer (:mod:`pipeline.train.trainer`): duration
batches (:class:`~pipeline.train.data.BatchPlan`), feature and cached-state
datasets, the encoder-state cache, the LR schedule, checkpoints and resume, the
run identity of ``output_dir`` (:mod:`pipeline.train.identity`), the stop on a
non-finite loss (:mod:`pipeline.train.finite`), ``log.jsonl`` / ``curve.png``,
and dev scoring by the score stage's code. Dev is
decoded greedily by :mod:`pipeline.decode.ctc`, the decode stage's own path.

What differs: clips whose transcript needs more CTC frames than the model
gives are rejected up front (``label_too_long``, listed in the log and in
``ctc_rejects.jsonl``); AdamW has two learning rates (``ctc.head_lr`` for the
new head, ``ctc.encoder_lr`` for the trainable encoder part); each evaluation
also feeds :class:`~pipeline.models.ctc_monitor.BlankCollapseMonitor`;
``best/`` is written by :func:`~pipeline.models.ctc.save_ctc_model`. With a
Whisper encoder whose lower layers are frozen (``ctc.trainable_top_layers`` 0
or k), their output is computed once into the encoder-state cache. One process
(no ``accelerate`` DDP); bf16 autocast on a capable GPU when ``train.dtype`` is
auto or bf16.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
import types
from pathlib import Path

import torch
from tqdm import tqdm

from data_prep.manifest import Utterance, read_manifest, write_jsonl
from data_prep.outputs import atomic_write_text
from pipeline.config import ConfigError, RecipeConfig
from pipeline.decode.ctc import ctc_batch_decoder, whisper_feature_extractor
from pipeline.decode.manifest import decode_manifest
from pipeline.models.ctc import WhisperCTCConfig, WhisperEncoderCTC, ctc_param_groups
from pipeline.models.ctc_checkpoint import is_ctc_checkpoint, load_ctc_model, save_ctc_model
from pipeline.models.ctc_heads import HeadConfig
from pipeline.models.ctc_loss import filter_label_too_long, pad_labels
from pipeline.models.ctc_monitor import BlankCollapseMonitor
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.train import checkpoint as ckpt
from pipeline.train.cache import EncoderStateCache, build_train_state_cache
from pipeline.train.curves import TrainLog, plot_curve
from pipeline.train.data import (
    WINDOW_S,
    BatchPlan,
    Example,
    FeatureDataset,
    Item,
    StateDataset,
    collate,
    step_sizes,
)
from pipeline.train.evaluate import score_hyps, scoring_language
from pipeline.train.finite import diverged, nonfinite_weights
from pipeline.train.identity import start_or_resume
from pipeline.train.trainer import deterministic_kernels, lr_lambda, mixed_precision, seed_everything

log = logging.getLogger(__name__)


def is_wav2vec2_dir(path: str) -> bool:
    """Whether ``path`` is a local transformers wav2vec2-family directory (else: a Whisper name/dir)."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type", "")
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg}: not valid JSON: {e}") from e
    return "wav2vec2" in str(model_type)


class WaveDataset(FeatureDataset):
    """Augmented 16 kHz waveforms (wav2vec2 models take raw audio)."""

    def __getitem__(self, item: Item) -> dict:
        from pipeline.train.data import _item_rng

        np_rng, _ = _item_rng(self.seed, item)
        ex = self.examples[item.index]
        return {"wave": self.wave(item, np_rng if self.augment else None), "labels": ex.labels, "id": ex.utt.id}


def ctc_collate(samples: list[dict], feat_extract_norm: str = "group") -> dict:
    """Pad samples into a CTC batch: the model's inputs plus ``labels``/``label_lengths`` and ``ids``."""
    labels, label_lengths = pad_labels([s["labels"] for s in samples])
    ids = [s["id"] for s in samples]
    if "wave" in samples[0]:
        from pipeline.models.ctc_wav2vec2 import wav2vec2_batch

        stub = types.SimpleNamespace(config=types.SimpleNamespace(feat_extract_norm=feat_extract_norm))
        batch = wav2vec2_batch(stub, [s["wave"] for s in samples])
    else:
        padded = collate([{**s, "prefix_len": 0} for s in samples], pad_id=0)
        if "features" in padded:
            batch = {"features": padded["features"], "feature_lengths": padded["lengths"]}
        else:
            batch = {"hidden_states": padded["states"], "hidden_lengths": padded["lengths"]}
    return {**batch, "labels": labels, "label_lengths": label_lengths, "ids": ids}


class CTCTrainer:
    """Trains a CTC model as a :class:`RecipeConfig` (``model.type: ctc``, section ``ctc``) says."""

    def __init__(self, cfg: RecipeConfig, *, progress: bool = True, force: bool = False):
        if not cfg.output_dir:
            raise ConfigError("output_dir is not set in the config")
        if cfg.model.type != "ctc":
            raise ValueError(f"the CTC trainer needs model.type=ctc, not {cfg.model.type!r}")
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.progress = progress
        self.force = force
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.step = 0
        self.epoch = 0
        self.pos = 0
        self.best_cer = math.inf
        self.best_step = -1
        self.bad_evals = 0
        self.stopped_early = False
        self.elapsed_before = 0.0
        self._setup_done = False

    # ------------------------------------------------------------------------------- setup

    def _build_model(self) -> None:
        cfg, c = self.cfg, self.cfg.ctc
        source = c.encoder or cfg.model.name
        if is_wav2vec2_dir(source):
            from pipeline.models.ctc_wav2vec2 import load_wav2vec2_ctc, wav2vec2_output_frames

            self.model = load_wav2vec2_ctc(source, self.vocab)
            self.fe = None
            self.frames = functools.partial(wav2vec2_output_frames, self.model)
            self.max_duration = cfg.data.max_duration
        else:
            if is_ctc_checkpoint(source):  # a Whisper-encoder CTC system (a wav2vec2 one is a wav2vec2 dir)
                self.model, self.fe = self._continued_whisper_ctc(source)
            else:
                head = HeadConfig(kind=c.head, dim=c.head_dim, layers=c.head_layers, heads=c.head_heads,
                                  ffn=c.head_ffn, dropout=c.head_dropout, init_blank_prob=c.init_blank_prob)  # fmt: skip
                head.validate()
                wcfg = WhisperCTCConfig(head=head, trainable_top_layers=c.trainable_top_layers, base_model=source)
                try:
                    self.model, processor = WhisperEncoderCTC.from_pretrained_whisper(source, self.vocab, wcfg)
                except ValueError as e:
                    if "trainable_top_layers" not in str(e):
                        raise
                    raise ConfigError(f"ctc.{e}") from None  # more layers than the encoder has
                self.fe = processor.feature_extractor
            self.frames = self.model.output_frames
            self.max_duration = min(cfg.data.max_duration, WINDOW_S)
        self.model.to(self.device)
        self.is_whisper = isinstance(self.model, WhisperEncoderCTC)

    def _continued_whisper_ctc(self, source: str) -> tuple[WhisperEncoderCTC, object]:
        """(model, feature extractor) of a trained Whisper-encoder CTC checkpoint, to go on training it.

        Its head shape and trainable layers are the checkpoint's (the ``ctc`` section's are not used);
        the frozen lower layers are still the pretrained ones, so the encoder-state cache is shared.
        """
        model, vocab = load_ctc_model(source)
        if vocab != self.vocab:
            raise ValueError(f"{source}: its vocab.json differs from {self.cfg.data.vocab_path()}; a CTC system "
                             "continues only on the characters it was trained with")  # fmt: skip
        log.info("continuing the CTC checkpoint %s: its head and its %d trainable top encoder layers (the config's "
                 "head shape and ctc.trainable_top_layers are not used)", source,
                 model.config.trainable_top_layers)  # fmt: skip
        return model.train(), whisper_feature_extractor(source, model)

    def _load_train(self) -> list[Example]:
        """Train examples; empty/too long/too short clips skipped, ``label_too_long`` ones rejected and listed."""
        cfg = self.cfg
        path = Path(cfg.data.manifest("train"))
        utts = read_manifest(path, unique_ids=False)  # a repeated line weights its clip (oversampling)
        usable = [u for u in utts if u.text.strip() and cfg.data.min_duration <= u.duration <= self.max_duration]
        if len(usable) < len(utts):
            log.info("%s: skipped %d clips (empty text or duration outside [%g, %g] s)", path,
                     len(utts) - len(usable), cfg.data.min_duration, self.max_duration)  # fmt: skip
        fastest = max(cfg.augment.speed_perturb)  # speed perturbation > 1 shortens a clip: fewest frames
        kept, rejects = filter_label_too_long(
            usable, self.vocab, lambda n: self.frames(max(1, int(n / fastest))), margin=cfg.ctc.label_margin
        )
        self.rejects = rejects
        if rejects:
            log.warning("%s: %d clips rejected (label_too_long: transcript needs more CTC frames than the model "
                        "gives at speed %g): %s", path, len(rejects), fastest,
                        ", ".join(r.id for r in rejects))  # fmt: skip
            write_jsonl(self.out / "ctc_rejects.jsonl", rejects)
        if not kept:
            raise ConfigError(f"{path}: no usable training clips (data.min_duration {cfg.data.min_duration:g}, "
                              f"max duration {self.max_duration:g} s, {len(rejects)} label_too_long)")
        return [Example(i, u, path.parent, tuple(self.vocab.encode(u.text)), 0) for i, u in enumerate(kept)]

    def _load_dev(self) -> None:
        cfg, t = self.cfg, self.cfg.train
        self.dev_utts: list[Utterance] = []
        self.dev_lang = cfg.data.lang
        self.dev_path = Path(cfg.data.manifest("dev")) if (cfg.data.dev or cfg.data.manifests_dir) else None
        if self.dev_path is not None and self.dev_path.is_file():
            dev = read_manifest(self.dev_path)
            self.dev_utts = dev[: t.dev_limit] if t.dev_limit > 0 else dev
            self.dev_lang = scoring_language(self.dev_utts, self.dev_path, cfg.data.lang)
        else:
            log.warning("no dev manifest (%s): no evaluation, best/ is the final model", self.dev_path)

    def _build_cache(self) -> EncoderStateCache:
        """Lower encoder states (below the trainable top layers) of every train clip at every speed."""
        cfg, t = self.cfg, self.cfg.train
        return build_train_state_cache(
            Path(t.cache_dir) if t.cache_dir else self.out / "encoder_cache", self.model.encoder,
            self.model.split_layer, self.fe, self.train_ex, cfg.augment.speed_perturb,
            base_model=self.model.config.base_model, seed=t.seed, batch_size=cfg.decode.batch_size,
            shard_size=t.cache_shard_size, device=self.device, progress=self.progress,
        )  # fmt: skip

    def setup(self) -> CTCTrainer:
        cfg, t = self.cfg, self.cfg.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        resumed = start_or_resume(cfg, force=self.force)  # before anything is written in output_dir
        if not resumed or not (self.out / "train_config.json").exists():  # a resume keeps the run's first config
            atomic_write_text(self.out / "train_config.json", cfg.to_json())
        deterministic_kernels(self.device)
        seed_everything(t.seed)
        self.vocab = CTCVocab.load(cfg.data.vocab_path())
        self._build_model()
        self.train_ex = self._load_train()
        self._load_dev()
        use_cache = self.is_whisper and self.model.split_layer > 0
        if not self.is_whisper:
            self.train_set = WaveDataset(self.train_ex, None, cfg.augment, t.seed)
        elif use_cache:
            self.train_set = StateDataset(self.train_ex, self._build_cache(), cfg.augment, t.seed)
        else:
            self.train_set = FeatureDataset(self.train_ex, self.fe, cfg.augment, t.seed, trimmed=True)
        self.plan = BatchPlan(
            [ex.utt.duration for ex in self.train_ex], batch_seconds=t.batch_seconds,
            max_batch_size=t.max_batch_size, seed=t.seed, speed_factors=cfg.augment.speed_perturb,
        )  # fmt: skip
        self.steps_per_epoch = self.plan.steps_per_epoch(t.grad_accum)
        self.total_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.epochs * self.steps_per_epoch))
        c = cfg.ctc
        self.optimizer = torch.optim.AdamW(
            ctc_param_groups(self.model, c.head_lr, c.encoder_lr, t.weight_decay), betas=(0.9, 0.98), eps=1e-6
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            functools.partial(lr_lambda, warmup=t.warmup_steps, total=self.total_steps, schedule=t.schedule),
        )
        self.monitor = BlankCollapseMonitor(t.warmup_steps, threshold=c.collapse_threshold)
        self.autocast = torch.bfloat16 if mixed_precision(t.dtype) == "bf16" else None
        self.model.train()
        self.ckpt_root = self.out / "checkpoints"
        self._resume()
        self.log = TrainLog(self.out / "log.jsonl", resume_step=self.step)
        n_train = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log.info("CTC %s: %d train clips (%d label_too_long), %d dev clips, %d outputs; %d steps (%d per epoch), "
                 "%d trainable parameters", "whisper-encoder" if self.is_whisper else "wav2vec2",
                 len(self.train_ex), len(self.rejects), len(self.dev_utts), len(self.vocab), self.total_steps,
                 self.steps_per_epoch, n_train)  # fmt: skip
        self._setup_done = True
        return self

    def _resume(self) -> None:
        ckpt.clean_temporaries(self.ckpt_root)
        path = ckpt.latest_checkpoint(self.ckpt_root)
        if path is None:
            return
        state = ckpt.load_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler)
        self.step, self.epoch, self.pos = state["step"], state["epoch"], state["pos"]
        self.best_cer = state["best_cer"] if state["best_cer"] is not None else math.inf
        self.best_step = state["best_step"]
        self.bad_evals = state["bad_evals"]
        self.elapsed_before = state["elapsed_s"]
        self.stopped_early = state["stopped_early"]
        self.monitor.load_state_dict(state.get("collapse_monitor", {}))
        log.info("resumed from %s (step %d, epoch %d)", path, self.step, self.epoch)

    # ------------------------------------------------------------------------------- loop

    def _loader(self, batches: list[list[Item]], seed: int):
        norm = "group" if self.is_whisper else self.model.config.feat_extract_norm
        return torch.utils.data.DataLoader(
            self.train_set, batch_sampler=batches,
            collate_fn=functools.partial(ctc_collate, feat_extract_norm=norm),
            num_workers=self.cfg.train.num_workers,
            generator=torch.Generator().manual_seed(seed),  # keep the global RNG (dropout's) untouched
        )  # fmt: skip

    def _loss(self, batch: dict) -> torch.Tensor:
        inputs = {k: v.to(self.device) for k, v in batch.items() if k != "ids"}
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            if self.is_whisper:
                out = self.model(**inputs)
            else:
                from pipeline.models.ctc_wav2vec2 import wav2vec2_ctc_forward

                out = wav2vec2_ctc_forward(self.model, **inputs)
        value = float(out.loss.detach())
        if not math.isfinite(value):
            raise self._diverged(f"the CTC loss is {value} (clips {', '.join(batch['ids'][:5])})")
        return out.loss

    def _optimizer_step(self, micro: list[dict]) -> tuple[float, int]:
        """One update from the micro-batches ``micro``; a non-finite loss or gradient stops the run."""
        losses = []
        for batch in micro:
            loss = self._loss(batch)
            (loss / len(micro)).backward()
            losses.append(float(loss.detach()))
        clip = self.cfg.train.clip
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = float(torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf))
        if not math.isfinite(norm):
            raise self._diverged(f"the gradient norm is {norm}")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sum(losses) / len(losses), sum(len(b["ids"]) for b in micro)

    def train(self, until_step: int | None = None) -> dict:
        """Train to the end (or early stop); ``until_step`` returns early as if interrupted (tests)."""
        if not self._setup_done:
            self.setup()
        t = self.cfg.train
        ga = t.grad_accum
        eval_every = t.eval_every if t.eval_every > 0 else self.total_steps
        ckpt_every = t.checkpoint_every if t.checkpoint_every > 0 else eval_every
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train ctc", unit="step",
                   disable=not self.progress, dynamic_ncols=True)  # fmt: skip
        t0 = time.time()
        window_loss, window_utts, window_busy = [], 0, 0.0
        try:
            while self.step < self.total_steps and not self.stopped_early:
                batches = self.plan.epoch_batches(self.epoch)
                if self.pos >= len(batches):
                    self.epoch, self.pos = self.epoch + 1, 0
                    continue
                it = iter(self._loader(batches[self.pos :], t.seed + self.epoch))
                for size in step_sizes(len(batches), self.pos, ga):
                    tick = time.time()
                    loss, n = self._optimizer_step([next(it) for _ in range(size)])
                    self.step += 1
                    self.pos += size
                    if self.pos >= len(batches):
                        self.epoch, self.pos = self.epoch + 1, 0
                    window_busy += time.time() - tick
                    window_loss.append(loss)
                    window_utts += n
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}")
                    is_eval = self.step % eval_every == 0 or self.step == self.total_steps
                    dev = self._evaluate() if is_eval else None
                    if self.step % t.log_every == 0 or dev is not None or self.step == self.total_steps:
                        self._log(sum(window_loss) / len(window_loss) if window_loss else None, dev,
                                  window_utts / max(window_busy, 1e-9), self.elapsed_before + time.time() - t0)
                        window_loss, window_utts, window_busy = [], 0, 0.0
                    if self.step % ckpt_every == 0 or self.step == self.total_steps or self.stopped_early:
                        self._checkpoint(self.elapsed_before + time.time() - t0)
                    if until_step is not None and self.step >= until_step:
                        return self.summary(interrupted=True)
                    if self.stopped_early or self.step >= self.total_steps:
                        break
        finally:
            bar.close()
        if not self.dev_utts:
            self._export_best(None)
        return self.summary()

    def summary(self, interrupted: bool = False) -> dict:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "best_cer": None if math.isinf(self.best_cer) else self.best_cer,
            "best_step": self.best_step,
            "stopped_early": self.stopped_early,
            "interrupted": interrupted,
            "blank_collapse": self.monitor.collapsed,
            "label_too_long": len(self.rejects),
        }

    # ------------------------------------------------------------------------------- eval / io

    def _evaluate(self) -> dict | None:
        """Greedy dev CER/WER (decode stage's decoder, score stage's scorer); best/, early stopping, collapse check."""
        if not self.dev_utts:
            return None
        out = self.out / "dev_hyps" / f"step-{self.step:07d}.jsonl"
        out.with_name(out.name + ".partial").unlink(missing_ok=True)  # another step's weights: never resume it
        self.model.eval()
        try:
            decoder = ctc_batch_decoder(self.model, self.vocab, self.fe, None, self.device)
            hyps, errors = decode_manifest(self.dev_utts, self.dev_path.parent, decoder, out,
                                           self.cfg.decode.batch_size, f"step {self.step}")  # fmt: skip
        finally:
            self.model.train()
        for e in errors:
            log.warning("dev: %s", e)
        res = score_hyps(self.dev_utts, hyps, self.dev_lang)
        texts = {h.id: h.text for h in hyps}
        self.monitor.update(self.step, [texts.get(u.id, "") for u in self.dev_utts])
        dev = {"cer": res.cer, "wer": res.wer, "n": res.n}
        if dev["cer"] < self.best_cer:
            self.best_cer, self.best_step, self.bad_evals = dev["cer"], self.step, 0
            self._export_best(dev)
        else:
            self.bad_evals += 1
            if self.cfg.train.patience and self.bad_evals >= self.cfg.train.patience:
                self.stopped_early = True
        log.info("step %d: dev CER %.4f WER %.4f (best %.4f at step %d)", self.step, dev["cer"], dev["wer"],
                 self.best_cer, self.best_step)  # fmt: skip
        return dev

    def _diverged(self, what: str):
        return diverged(self.step + 1, what, ckpt.latest_checkpoint(self.ckpt_root))

    def _check_weights(self) -> None:
        """Refuse to save weights that are not finite (the update of step ``self.step`` broke them)."""
        bad = nonfinite_weights(self.model.named_parameters())
        if bad:
            raise diverged(self.step, f"{len(bad)} weight tensors are not finite (e.g. {bad[0]})",
                           ckpt.latest_checkpoint(self.ckpt_root))  # fmt: skip

    def _export_best(self, dev: dict | None) -> None:
        self._check_weights()
        save_ctc_model(
            self.model, self.out / "best", self.fe, step=self.step, language=self.cfg.language,
            dev_cer=None if dev is None else dev["cer"], dev_wer=None if dev is None else dev["wer"],
        )  # fmt: skip

    def _log(self, train_loss, dev, samples_per_s, elapsed) -> None:
        self.log.add(
            step=self.step, epoch=round(self.step / self.steps_per_epoch, 3), train_loss=train_loss,
            lr=self.scheduler.get_last_lr()[0], dev_cer=None if dev is None else dev["cer"],
            dev_wer=None if dev is None else dev["wer"], samples_per_s=round(samples_per_s, 3),
            elapsed_s=round(elapsed, 2),
        )  # fmt: skip
        if dev is not None or self.step == self.total_steps:
            plot_curve(self.log.records, self.out / "curve.png", title=f"ctc {self.cfg.ctc.head} ({self.cfg.language})")

    def _checkpoint(self, elapsed: float) -> None:
        self._check_weights()
        ckpt.write_rank_rng(self.ckpt_root, self.step, 0)
        state = {
            "epoch": self.epoch, "pos": self.pos, "best_cer": None if math.isinf(self.best_cer) else self.best_cer,
            "best_step": self.best_step, "bad_evals": self.bad_evals, "stopped_early": self.stopped_early,
            "elapsed_s": elapsed, "world_size": 1, "config": json.loads(self.cfg.to_json()),
            "collapse_monitor": self.monitor.state_dict(),
        }  # fmt: skip
        ckpt.save_checkpoint(self.ckpt_root, self.step, model=self.model, optimizer=self.optimizer,
                             scheduler=self.scheduler, state=state, keep=self.cfg.train.keep_checkpoints)  # fmt: skip


def train_ctc(cfg: RecipeConfig, progress: bool = True, force: bool = False) -> dict:
    """Run a whole CTC training as configured; returns a summary (steps, best dev CER, rejects)."""
    return CTCTrainer(cfg, progress=progress, force=force).train()


__all__ = ["CTCTrainer", "WaveDataset", "ctc_collate", "is_wav2vec2_dir", "train_ctc"]

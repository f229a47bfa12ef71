"""CTC training (``model.type: ctc``): the training loop (:mod:`pipeline.train.loop`) specialized for CTC.

The model is a pretrained encoder with a new character head over
``<manifests_dir>/vocab.json`` (written by ``prepare`` from the TRAIN split):
a Whisper encoder (``ctc.encoder`` empty = ``model.name``, via the registry) as
:class:`~pipeline.models.ctc.WhisperEncoderCTC`, or a local wav2vec2 / XLS-R /
MMS directory (:func:`~pipeline.models.ctc_wav2vec2.load_wav2vec2_ctc`). A Whisper-encoder
CTC checkpoint as ``model.name`` is continued, head and all (self-training on pseudo-labels).

What is CTC's own (everything else is the loop's):

- **examples**: clips whose transcript needs more CTC frames than the model gives are
  rejected up front (``label_too_long``, listed in the log and in ``ctc_rejects.jsonl``);
- **data**: raw audio for wav2vec2; for a Whisper encoder whose lower layers are frozen
  (``ctc.trainable_top_layers`` 0 or k) their states, computed once into the encoder-state
  cache the Whisper trainer uses too; else log-mel features;
- **optimizer**: two learning rates (``ctc.head_lr`` for the new head, ``ctc.encoder_lr``
  for the trainable encoder part);
- **loss**: the model's CTC loss, under bf16 autocast on a capable GPU when ``train.dtype``
  is auto or bf16;
- **dev**: decoded greedily by :mod:`pipeline.decode.ctc`, the decode stage's own path; each
  evaluation also feeds :class:`~pipeline.models.ctc_monitor.BlankCollapseMonitor`, whose
  history a checkpoint keeps;
- **best/**: written by :func:`~pipeline.models.ctc_checkpoint.save_ctc_model`.

It runs in one process (:class:`~pipeline.train.processes.SingleProcess`, no DDP).
"""

from __future__ import annotations

import functools
import json
import logging
import types
from pathlib import Path

import torch

from data_prep.manifest import read_manifest, write_jsonl
from pipeline.config import ConfigError, RecipeConfig
from pipeline.decode.ctc import ctc_batch_decoder, whisper_feature_extractor
from pipeline.decode.manifest import decode_manifest
from pipeline.models.ctc import WhisperCTCConfig, WhisperEncoderCTC, ctc_param_groups
from pipeline.models.ctc_checkpoint import is_own_ctc_checkpoint, load_ctc_model, save_ctc_model
from pipeline.models.ctc_heads import HeadConfig
from pipeline.models.ctc_loss import filter_label_too_long, pad_labels
from pipeline.models.ctc_monitor import BlankCollapseMonitor
from pipeline.models.ctc_vocab import CTCVocab
from pipeline.train.data import WINDOW_S, Example, FeatureDataset, Item, StateDataset, collate, label_array
from pipeline.train.evaluate import DevResult, score_hyps
from pipeline.train.loop import DevScore, TrainingLoop, TrainingParts, mixed_precision
from pipeline.train.processes import SingleProcess

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


class CTCTrainer(TrainingLoop):
    """Trains a CTC model as a :class:`RecipeConfig` (``model.type: ctc``, section ``ctc``) says."""

    def __init__(self, cfg: RecipeConfig, *, progress: bool = True, force: bool = False):
        if cfg.model.type != "ctc":
            raise ValueError(f"the CTC trainer needs model.type=ctc, not {cfg.model.type!r}")
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(cfg, SingleProcess(device), progress=progress, force=force)

    # ------------------------------------------------------------------------------------- build

    def _build(self) -> TrainingParts:
        cfg, t, c = self.cfg, self.cfg.train, self.cfg.ctc
        self.vocab = CTCVocab.load(cfg.data.vocab_path())
        self._build_model()
        self.train_ex = self._load_train()
        self.monitor = BlankCollapseMonitor(t.warmup_steps, threshold=c.collapse_threshold)
        self.autocast = torch.bfloat16 if mixed_precision(t.dtype) == "bf16" else None
        norm = "group" if self.is_whisper else self.model.config.feat_extract_norm
        kind = "whisper-encoder" if self.is_whisper else "wav2vec2"
        return TrainingParts(
            module=self.model, param_groups=ctc_param_groups(self.model, c.head_lr, c.encoder_lr, t.weight_decay),
            train_set=self._train_set(), collate=functools.partial(ctc_collate, feat_extract_norm=norm),
            durations=[ex.utt.duration for ex in self.train_ex],
            description=f"CTC {kind}, {len(self.vocab)} outputs: {len(self.train_ex)} train clips "
                        f"({len(self.rejects)} label_too_long)",
            curve_title=f"ctc {c.head} ({cfg.language})",
        )  # fmt: skip

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
            if is_own_ctc_checkpoint(source):  # a Whisper-encoder CTC system (a wav2vec2 one is a wav2vec2 dir)
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
        return [Example(i, u, path.parent, label_array(self.vocab.encode(u.text)), 0) for i, u in enumerate(kept)]

    def _train_set(self) -> torch.utils.data.Dataset:
        """Raw audio (wav2vec2), the frozen lower encoder's cached states, or log-mel features."""
        cfg, t = self.cfg, self.cfg.train
        if not self.is_whisper:
            return WaveDataset(self.train_ex, None, cfg.augment, t.seed)
        if self.model.split_layer > 0:
            cache = self._train_state_cache(self.model.encoder, self.model.split_layer, self.fe, self.train_ex,
                                            self.model.config.base_model)  # fmt: skip
            return StateDataset(self.train_ex, cache, cfg.augment, t.seed)
        return FeatureDataset(self.train_ex, self.fe, cfg.augment, t.seed, trimmed=True)

    # ------------------------------------------------------------------------------ specializations

    def _loss(self, batch: dict) -> torch.Tensor:
        inputs = {k: v.to(self.device) for k, v in batch.items() if k != "ids"}
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            if self.is_whisper:
                return self.model(**inputs).loss
            from pipeline.models.ctc_wav2vec2 import wav2vec2_ctc_forward

            return wav2vec2_ctc_forward(self.model, **inputs).loss

    def _score_dev(self) -> DevResult:
        """Greedy dev CER/WER (the decode stage's decoder, the score stage's scorer); feeds the collapse monitor."""
        out = self._dev_hyps_file()
        self.model.eval()
        try:
            decoder = ctc_batch_decoder(self.model, self.vocab, self.fe, None, self.device)
            hyps, errors = decode_manifest(self.dev.utts, self.dev.manifest.parent, decoder, out,
                                           self.cfg.decode.batch_size, f"step {self.progress.step}")  # fmt: skip
        finally:
            self.model.train()
        for e in errors:
            log.warning("dev: %s", e)
        result = score_hyps(self.dev.utts, hyps, self.dev.lang)
        self.monitor.update(self.progress.step, [result.hyps.get(u.id, "") for u in self.dev.utts])
        return result

    def _write_best(self, dev: DevScore | None) -> None:
        save_ctc_model(
            self.model, self.out / "best", self.fe, step=self.progress.step, language=self.cfg.language,
            dev_cer=None if dev is None else dev.cer, dev_wer=None if dev is None else dev.wer,
        )  # fmt: skip

    def _checkpointed(self) -> tuple[torch.nn.Module, None]:
        return self.model, None

    def _extra_state(self) -> dict:
        return {"collapse_monitor": self.monitor.state_dict()}

    def _restore_extra_state(self, state: dict) -> None:
        self.monitor.load_state_dict(state.get("collapse_monitor", {}))

    def summary(self, interrupted: bool = False) -> dict:
        return {**super().summary(interrupted), "blank_collapse": self.monitor.collapsed,
                "label_too_long": len(self.rejects)}  # fmt: skip


def train_ctc(cfg: RecipeConfig, progress: bool = True, force: bool = False) -> dict:
    """Run a whole CTC training as configured; returns a summary (steps, best dev CER, rejects)."""
    return CTCTrainer(cfg, progress=progress, force=force).train()


__all__ = ["CTCTrainer", "WaveDataset", "ctc_collate", "is_wav2vec2_dir", "train_ctc"]

"""Which run an ``output_dir`` holds, so that a rerun never passes off one run's model as another's.

A training's :class:`~data_prep.outputs.RunIdentity` is its recipe config minus
the settings that do not change the trained model (:data:`NEUTRAL_SETTINGS`:
logging, threads, where files go, the LM settings of the ``lm`` command; and
:data:`UNUSED_BY_TYPE`: what the other model type's trainer reads), plus
the fingerprints of what it reads: the train and dev manifests, the base model
(a directory's files, or a registry name), a CTC encoder and the character
vocabulary. It is recorded in ``<output_dir>/train_identity.json`` before
anything else is written. A rerun or resume with another identity is refused,
naming what differs (``setting train.lr (0.0001 -> 0.5)``, ``input train``);
``--force`` removes what an earlier training wrote (:data:`TRAIN_OUTPUTS`) and
starts afresh. The training loop (:mod:`pipeline.train.loop`) checks it with
:func:`start_or_resume` before anything else.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from data_prep.outputs import RunIdentity, resume_or_start
from pipeline.config import RecipeConfig

log = logging.getLogger(__name__)

IDENTITY_FILE = "train_identity.json"
#: Config keys that leave the trained weights as they are (or are inputs, fingerprinted instead).
NEUTRAL_SETTINGS = frozenset({
    "output_dir", "data.manifests_dir", "data.train", "data.dev", "data.test", "model.name", "ctc.encoder",
    "train.log_every", "train.threads", "train.num_workers", "train.checkpoint_every", "train.keep_checkpoints",
    "train.cache_dir", "ctc.lm_order", "ctc.lm_beam_width", "ctc.lm_alphas", "ctc.lm_betas",
})  # fmt: skip
#: Settings the trainer of each ``model.type`` never reads (a section, or one key).
UNUSED_BY_TYPE = {
    "whisper": frozenset({"ctc"}),
    "ctc": frozenset({
        "train.lr", "train.regime", "train.encoder_trainable_top_layers", "train.trimmed_encoder", "train.lora",
        "train.padded_share", "train.freeze_token_embeddings", "train.restrict_vocab", "train.label_smoothing",
        "train.dropout", "train.ctc_weight", "decode.beam", "model.vocabulary", "model.vocabulary_size", "model.new_language_init_from",
    }),
}  # fmt: skip
#: What a training writes in its output_dir; ``--force`` removes these (and nothing else).
TRAIN_OUTPUTS = (
    "checkpoints", "best", ".best.tmp", ".best.old", "log.jsonl", "curve.png", "dev_hyps", "vocab",
    "ctc_rejects.jsonl", "train_config.json", IDENTITY_FILE,
)  # fmt: skip
#: The encoder-state cache's default place (removed by ``--force`` only there, never a shared train.cache_dir).
DEFAULT_CACHE = "encoder_cache"


def _settings(tree: dict, skip: frozenset, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted in skip:
            continue
        out[key] = _settings(value, skip, dotted + ".") if isinstance(value, dict) else value
    return out


def train_identity(cfg: RecipeConfig) -> RunIdentity:
    """The identity of the training ``cfg`` describes (its inputs are fingerprinted now)."""
    d = cfg.data
    dev = Path(d.manifest("dev")) if (d.dev or d.manifests_dir) else None
    uses_chars = cfg.model.type == "ctc" or cfg.train.ctc_weight > 0
    inputs = {
        "train": d.manifest("train"),
        "dev": str(dev) if dev is not None and dev.is_file() else None,
        "base_model": cfg.model.name,
        "ctc_encoder": cfg.ctc.encoder if cfg.model.type == "ctc" and cfg.ctc.encoder else None,
        "vocab": str(d.vocab_path()) if uses_chars else None,
    }
    skip = NEUTRAL_SETTINGS | UNUSED_BY_TYPE.get(cfg.model.type, frozenset())
    return RunIdentity.of("train", inputs, _settings(cfg.to_dict(), skip))


def has_training_state(out: Path) -> bool:
    """Whether ``out`` holds anything a training wrote (checkpoints, a model, a log)."""
    return any((out / name).exists() for name in ("checkpoints", "best", "log.jsonl", "vocab"))


def clear_training_outputs(cfg: RecipeConfig) -> None:
    """Remove what a training wrote in ``cfg.output_dir`` (``--force``); other files stay."""
    out = Path(cfg.output_dir)
    names = [*TRAIN_OUTPUTS, *([] if cfg.train.cache_dir else [DEFAULT_CACHE])]
    for name in names:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def start_or_resume(cfg: RecipeConfig, *, force: bool = False) -> bool:
    """Check ``output_dir`` against this run's identity and record it; True when earlier work is continued.

    Raises :class:`~data_prep.outputs.ResumeError` when ``output_dir`` holds a training of another
    identity (or of an older version that recorded none) and ``force`` is not set.
    """
    out = Path(cfg.output_dir)
    identity = train_identity(cfg)
    if force and has_training_state(out):
        log.info("--force: removing the earlier training in %s", out)
        clear_training_outputs(cfg)
    out.mkdir(parents=True, exist_ok=True)
    return resume_or_start(out / IDENTITY_FILE, identity, has_state=has_training_state(out),
                           what=f"output_dir {out}")  # fmt: skip

"""Typed recipe configuration, loaded from YAML with ``key=value`` overrides.

A recipe's ``config.yaml`` has one section per concern (``data``, ``model``,
``train``, ``augment``, ``decode``) plus ``output_dir``. Every section is a
dataclass below, so a field's type and default are written once, here. Loading
is strict: an unknown key or a value of the wrong type is an error that names
the key and the file (and the YAML line when known), because a misspelt option
that is silently ignored costs a whole training run.

Overrides use dotted keys and YAML values::

    load_config("recipes/sa/config.yaml", ["train.lr=1e-4", "augment.speed_perturb=[0.9,1.0,1.1]"])

To extend the schema (e.g. CTC fields), add a field with a default to the
relevant dataclass, or a new nested dataclass section; the loader needs no change.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REGIMES = ("full", "freeze-encoder", "cached-encoder", "lora")


class ConfigError(ValueError):
    """A recipe config that cannot be used; the message names the file, key and line."""


#: The largest count any integer setting may hold (beyond it torch's C++ side overflows).
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class Bounds:
    """The range a number (or each number of a list) must lie in; None = unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself excluded
    high_open: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        low, high = _number_text(self.low), _number_text(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        return f"{'<' if self.high_open else '<='} {high}"


def _number_text(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def num(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
        le: float | None = None, lt: float | None = None, default_factory: Any = dataclasses.MISSING) -> Any:  # fmt: skip
    """A numeric field (or list of numbers) and its allowed range, declared together.

    The loader checks every value it reads against the range (floats must also be finite)
    and names the key, file and line of one that is out of it.
    """
    bounds = Bounds(ge if gt is None else gt, le if lt is None else lt, gt is not None, lt is not None)
    return field(default=default, default_factory=default_factory, metadata={"bounds": bounds})


@dataclass
class DataConfig:
    """Where the manifests are and which utterances to use."""

    lang: str = ""  # the transcripts' language: text normalizer rules name, e.g. "sa" or "pa-Latn"
    manifests_dir: str = ""  # holds train.jsonl / dev.jsonl / test.jsonl unless given below
    train: str = ""  # explicit manifest paths override manifests_dir/<split>.jsonl
    dev: str = ""
    test: str = ""
    max_duration: float = num(30.0, gt=0)  # seconds; longer training clips are skipped (Whisper's window)
    min_duration: float = num(0.0, ge=0)

    def manifest(self, split: str) -> str:
        """Path of the ``split`` manifest (explicit path, else ``manifests_dir/<split>.jsonl``)."""
        explicit = getattr(self, split)
        if explicit:
            return explicit
        if not self.manifests_dir:
            raise ConfigError(f"data.{split} and data.manifests_dir are both empty")
        return str(Path(self.manifests_dir) / f"{split}.jsonl")

    def vocab_path(self) -> Path:
        """The character ``vocab.json`` that ``prepare`` writes: in manifests_dir, else next to the train manifest."""
        root = Path(self.manifests_dir) if self.manifests_dir else Path(self.manifest("train")).parent
        return root / "vocab.json"


@dataclass
class ModelConfig:
    """The pretrained model and how its language/vocabulary are set up."""

    type: str = "whisper"  # whisper | ctc
    name: str = "whisper-base"  # registry name or a transformers directory
    # pretrained: start from name's weights; scratch: name's architecture with fresh random weights (seeded
    # by train.seed), the from-scratch system a transfer report checks negative transfer against
    init: str = "pretrained"
    language: str = ""  # language token code (<|xx|>); defaults to data.lang minus its script ("pa-Latn" -> "pa")
    # existing language whose token initialises a new one; an English-only model (no language tokens:
    # whisper-tiny.en) needs it for any language, a language token of its tokenizer (e.g. en)
    new_language_init_from: str = ""
    # whisper | bpe: a byte-level BPE learnt from the train text (pipeline.train.new_vocab)
    vocabulary: str = "whisper"
    # bpe: text tokens incl. the 256 byte pieces (0 = 1000); Whisper's special tokens come on top
    vocabulary_size: int = num(0, ge=0, le=MAX_COUNT)


@dataclass
class LoraConfig:
    """LoRA adapters on attention projections (regime ``lora``)."""

    r: int = num(16, ge=1, le=MAX_COUNT)
    alpha: int = num(32, ge=1, le=MAX_COUNT)
    dropout: float = num(0.05, ge=0, lt=1)
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    scope: str = "both"  # encoder | decoder | both


@dataclass
class TrainConfig:
    """Optimisation, batching, evaluation and checkpointing."""

    regime: str = "cached-encoder"  # one of REGIMES
    encoder_trainable_top_layers: int = num(0, ge=0, le=MAX_COUNT)  # k: the top k encoder layers train (freeze/cached regimes)
    trimmed_encoder: bool = True  # run the encoder on the clip's real length, not a 30 s window
    # Share of the train batches that also carry some of their clips (batch_seconds at 30 s a clip, at least
    # one) on the 30-s padded window every Whisper runtime feeds (transformers pipeline, CTranslate2,
    # faster-whisper): a decoder trained on trimmed states only mistranscribes padded ones. Such a step's
    # loss is the mean of both inputs' losses. cached-encoder caches both kinds of states.
    padded_share: float = num(0.0, ge=0, le=1)
    lora: LoraConfig = field(default_factory=LoraConfig)
    lr: float = num(1e-4, gt=0, le=1)  # AdamW moves each weight by about lr per step: above 1 it only diverges
    warmup_steps: int = num(50, ge=0, le=MAX_COUNT)
    schedule: str = "linear"  # linear | cosine | constant (after warmup)
    max_steps: int = num(0, ge=0, le=MAX_COUNT)  # optimizer steps; 0 = use epochs
    epochs: float = num(3.0, ge=0, le=1e6)
    batch_seconds: float = num(60.0, gt=0)  # padded audio seconds per micro-batch (dynamic batching)
    max_batch_size: int = num(64, ge=1, le=MAX_COUNT)
    grad_accum: int = num(1, ge=1, le=MAX_COUNT)  # micro-batches per optimizer step (an epoch's last step may have fewer)
    clip: float = num(1.0, ge=0)  # max gradient norm; 0 = no clipping
    weight_decay: float = num(0.01, ge=0, le=1)
    seed: int = num(0, ge=0, le=2**32 - 1)  # numpy's seed range
    eval_every: int = num(100, ge=0, le=MAX_COUNT)  # optimizer steps between dev evaluations (0 = only at the end)
    dev_limit: int = num(0, ge=0, le=MAX_COUNT)  # evaluate on the first N dev utterances (0 = whole split)
    patience: int = num(0, ge=0, le=MAX_COUNT)  # early stopping after N evaluations without dev CER gain (0 = off)
    checkpoint_every: int = num(0, ge=0, le=MAX_COUNT)  # steps between checkpoints (0 = at each evaluation)
    keep_checkpoints: int = num(2, ge=0, le=MAX_COUNT)  # 0 = keep all
    log_every: int = num(10, ge=1, le=MAX_COUNT)
    dtype: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast; auto = bf16 on a capable GPU, else fp32)
    num_workers: int = num(0, ge=0, le=256)  # DataLoader workers
    freeze_token_embeddings: bool = False  # the tied 51,865 x d embedding / output layer
    restrict_vocab: bool = False  # softmax only over tokens seen in train text + specials
    label_smoothing: float = num(0.0, ge=0, lt=1)  # cross-entropy label smoothing (over the allowed tokens with restrict_vocab)
    dropout: float = num(0.0, ge=0, lt=1)  # hidden and attention dropout of the Whisper layers while training (pretrained: 0)
    # Joint CTC/attention (Whisper): loss = (1 - w) * decoder CE + w * CTC of a linear head over the
    # characters of data.vocab_path() on the final encoder states. 0 = decoder loss only.
    ctc_weight: float = num(0.0, ge=0, lt=1)
    cache_dir: str = ""  # encoder-state cache (cached-encoder); default <output_dir>/encoder_cache
    cache_shard_size: int = num(200, ge=1, le=MAX_COUNT)  # utterances per cache shard (a shard also ends at 64 MiB)
    threads: int = num(0, ge=0, le=1024)  # torch intra-op threads on CPU (0 = torch default)


@dataclass
class AugmentConfig:
    """Data augmentation (see pipeline.models.augment)."""

    speed_perturb: list[float] = num(default_factory=lambda: [1.0], ge=0.5, le=2.0)  # one factor drawn per clip per epoch
    time_masks: int = num(0, ge=0, le=100)  # SpecAugment time masks per utterance
    time_mask_max_s: float = num(0.05, ge=0, le=30)  # maximum width of one time mask, seconds
    freq_masks: int = num(0, ge=0, le=100)  # SpecAugment frequency masks (log-mel input only)
    freq_mask_max_bins: int = num(10, ge=0, le=128)
    noise_prob: float = num(0.0, ge=0, le=1)  # probability of adding white noise to a clip
    noise_snr_db: list[float] = num(default_factory=lambda: [15.0, 30.0], ge=-30, le=100)  # SNR drawn uniformly in [lo, hi]
    # multi-condition training: one channel drawn per clip per epoch, applied before features (data_prep.degrade):
    # clean, telephone, babble<SNR dB> (other training speakers), noise<SNR dB>, reverb<RT60 s>
    channels: list[str] = field(default_factory=lambda: ["clean"])


@dataclass
class DecodeConfig:
    """Decoding settings (dev evaluation during training and the decode stage)."""

    beam: int = num(1, ge=1, le=100)
    batch_size: int = num(8, ge=1, le=4096)


@dataclass
class CTCConfig:
    """CTC models (``model.type: ctc``): the encoder, the new character head, learning rates, the word LM."""

    encoder: str = ""  # "" = model.name (a Whisper registry name or directory); else a wav2vec2/XLS-R/MMS directory
    head: str = "transformer"  # linear | transformer | bilstm
    head_dim: int = num(256, ge=1, le=65536)
    head_layers: int = num(2, ge=1, le=64)
    head_heads: int = num(4, ge=1, le=1024)
    head_ffn: int = num(1024, ge=1, le=2**20)
    head_dropout: float = num(0.1, ge=0, lt=1)
    init_blank_prob: float | None = num(None, gt=0, lt=1)  # blank-bias start of the output layer (None: neutral)
    trainable_top_layers: int = num(0, ge=-1, le=MAX_COUNT)  # Whisper encoder: 0 frozen (lower states cached), k top layers, -1 all
    head_lr: float = num(1e-3, gt=0, le=1)  # the new head (and MMS adapters)
    encoder_lr: float = num(3e-5, gt=0, le=1)  # the pretrained encoder's trainable part
    label_margin: int = num(0, ge=0, le=MAX_COUNT)  # reject clips whose labels need more than (output frames - margin) frames
    collapse_threshold: float = num(0.8, gt=0, le=1)  # fraction of empty dev outputs that counts as blank collapse
    lm_order: int = num(3, ge=2, le=10)  # word n-gram order of `python -m pipeline lm`
    lm_beam_width: int = num(32, ge=1, le=4096)
    lm_alphas: list[float] = num(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0, 1.5], ge=0, le=100)
    lm_betas: list[float] = num(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 3.0], ge=-100, le=100)


@dataclass
class RecipeConfig:
    """A whole recipe."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    ctc: CTCConfig = field(default_factory=CTCConfig)
    output_dir: str = ""

    @property
    def language(self) -> str:
        """The language token code: ``model.language``, else ``data.lang`` without a script subtag."""
        return self.model.language or self.data.lang.split("-")[0]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------------------------
# loading


def _line_map(text: str) -> dict[tuple[str, ...], int | str]:
    """Map each mapping key path in a YAML document to its 1-based line."""
    lines: dict[tuple[str, ...], int | str] = {}

    def walk(node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                path = (*prefix, str(k.value))
                lines[path] = k.start_mark.line + 1
                walk(v, path)

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def _where(source: str, lines: dict[tuple[str, ...], int | str], path: tuple[str, ...]) -> str:
    """``file:line`` of a key, or ``file (override k=v)`` when the value came from the command line."""
    line = lines.get(path)
    if isinstance(line, str):
        return f"{source} ({line})"
    return f"{source}:{line}" if line else source


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotated type ``tp`` (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # an optional value: the type's own message
            return _coerce(value, others[0], key, where)
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {key}: {value!r} does not match {tp}")
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {key}: expected an integer, got {value!r}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # PyYAML reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where}: {key}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{where}: {key}: {value!r} is not a finite number")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # e.g. a numeric language code or model name
        raise ConfigError(f"{where}: {key}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: {key}: unsupported field type {tp}")


def _build(cls: type, values: Any, source: str, lines: dict, prefix: tuple[str, ...]) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, strictly."""
    where = _where(source, lines, prefix) if prefix else source
    name = ".".join(prefix) or "<top level>"
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {name}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        path = (*prefix, str(key))
        dotted = ".".join(path)
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{_where(source, lines, path)}: unknown key {dotted!r} (known in this section: {known})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, source, lines, path)
        else:
            kwargs[key] = _coerce(value, tp, dotted, _where(source, lines, path))
            _check_bounds(kwargs[key], fields[key], dotted, _where(source, lines, path))
    return cls(**kwargs)


def _check_bounds(value: Any, f: dataclasses.Field, key: str, where: str) -> None:
    """Refuse a number (or a list's number) outside the range declared with :func:`num`."""
    bounds: Bounds | None = f.metadata.get("bounds")
    if bounds is None or value is None:
        return
    for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
        if not bounds.admits(v):
            name = key if i is None else f"{key}[{i}]"
            raise ConfigError(f"{where}: {name} must be {bounds}, got {v!r}")


def check_ranges(section: Any, source: str, prefix: str = "") -> None:
    """Every number of a config tree (defaults and values set in code included) within its declared range."""
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, source, key + ".")
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{source}: {key}: {v!r} is not a finite number")
        _check_bounds(value, f, key, source)


def _set_dotted(tree: dict, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: override {key!r}: {p!r} is not a section")
        node = child
    node[parts[-1]] = value


def validate(cfg: RecipeConfig, source: str = "<config>") -> None:
    """Cross-field checks that types alone cannot express."""
    def bad(msg: str) -> None:
        raise ConfigError(f"{source}: {msg}")

    if cfg.model.type not in ("whisper", "ctc"):
        bad(f"model.type must be whisper or ctc, got {cfg.model.type!r}")
    if cfg.model.vocabulary not in ("whisper", "bpe"):
        bad(f"model.vocabulary must be whisper or bpe, got {cfg.model.vocabulary!r}")
    if cfg.model.init not in ("pretrained", "scratch"):
        bad(f"model.init must be pretrained or scratch, got {cfg.model.init!r}")
    if cfg.model.init == "scratch" and cfg.model.type != "whisper":
        bad("model.init scratch starts a Whisper from random weights: it needs model.type whisper")
    if cfg.model.init == "scratch" and cfg.train.regime == "lora":
        bad("model.init scratch with train.regime lora would train adapters on frozen random weights")
    if cfg.model.vocabulary == "bpe" and cfg.model.type != "whisper":
        bad("model.vocabulary bpe is a decoder vocabulary: it needs model.type whisper")
    if cfg.model.vocabulary_size and cfg.model.vocabulary != "bpe":
        bad("model.vocabulary_size applies to model.vocabulary bpe only")
    if cfg.model.vocabulary_size and cfg.model.vocabulary_size < 300:  # pipeline.train.new_vocab.MIN_SIZE
        bad(
            "model.vocabulary_size must be 0 (default 1000) or >= 300 (256 byte pieces + merges), "
            f"got {cfg.model.vocabulary_size}"
        )
    if cfg.data.min_duration >= cfg.data.max_duration:
        bad(f"data.min_duration ({cfg.data.min_duration:g}) must be below data.max_duration ({cfg.data.max_duration:g})")
    t = cfg.train
    if t.regime not in REGIMES:
        bad(f"train.regime must be one of {', '.join(REGIMES)}, got {t.regime!r}")
    if t.ctc_weight > 0 and cfg.model.type != "whisper":
        bad("train.ctc_weight is the joint CTC/attention loss of a Whisper decoder: it needs model.type whisper")
    if t.schedule not in ("linear", "cosine", "constant"):
        bad(f"train.schedule must be linear, cosine or constant, got {t.schedule!r}")
    if t.dtype not in ("auto", "fp32", "bf16", "fp16"):
        bad(f"train.dtype must be auto, fp32, bf16 or fp16, got {t.dtype!r}")
    if t.dtype == "fp16" and cfg.model.type == "ctc":
        bad("train.dtype fp16 is not supported for CTC (no loss scaling): use bf16 or fp32")
    if t.lora.scope not in ("encoder", "decoder", "both"):
        bad(f"train.lora.scope must be encoder, decoder or both, got {t.lora.scope!r}")
    if t.max_steps <= 0 and t.epochs <= 0:
        bad("set train.max_steps or train.epochs > 0")
    if t.padded_share > 0 and (cfg.model.type != "whisper" or not t.trimmed_encoder):
        bad("train.padded_share mixes 30-s padded batches into trimmed ones: it needs model.type whisper "
            "and train.trimmed_encoder true (untrimmed training feeds the padded window already)")
    if t.regime == "cached-encoder" and not t.trimmed_encoder:
        bad("train.regime cached-encoder stores trimmed states: train.trimmed_encoder must be true")
    a = cfg.augment
    if not a.speed_perturb:
        bad("augment.speed_perturb must be a non-empty list of factors (e.g. [1.0])")
    if len(a.noise_snr_db) != 2 or a.noise_snr_db[0] > a.noise_snr_db[1]:
        bad("augment.noise_snr_db must be [low, high]")
    _check_channels(a.channels, bad)
    c = cfg.ctc
    if c.head not in ("linear", "transformer", "bilstm"):
        bad(f"ctc.head must be linear, transformer or bilstm, got {c.head!r}")
    if c.head == "transformer" and c.head_dim % c.head_heads:
        bad(f"ctc.head_dim ({c.head_dim}) must be a multiple of ctc.head_heads ({c.head_heads})")
    if not c.lm_alphas or not c.lm_betas:
        bad("ctc.lm_alphas and ctc.lm_betas must be non-empty")
    check_ranges(cfg, source)


def _check_channels(channels: list[str], bad: Callable[[str], None]) -> None:
    """``augment.channels``: a non-empty list of channel names ``degrade`` knows."""
    from data_prep.degrade import DegradeError, channel_condition

    if not channels:
        bad("augment.channels must be a non-empty list of channels (e.g. [clean])")
    for name in channels:
        try:
            channel_condition(name)
        except DegradeError as e:
            bad(f"augment.channels: {e}")


def config_from_dict(tree: dict, source: str = "<dict>", overrides: list[str] | None = None) -> RecipeConfig:
    """Build a :class:`RecipeConfig` from a plain mapping (plus overrides)."""
    tree = json.loads(json.dumps(tree or {}))  # deep copy, plain types
    lines: dict[tuple[str, ...], int | str] = (
        _line_map(Path(source).read_text(encoding="utf-8")) if Path(source).is_file() else {}
    )
    for ov in overrides or []:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected key=value (e.g. train.lr=1e-4)")
        key, raw = ov.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {ov!r}: cannot parse value: {e}") from e
        _set_dotted(tree, key, value, source)
        parts = tuple(key.split("."))
        lines[parts] = f"override {ov}"
        for i in range(1, len(parts)):  # sections the override made up: an error there is the override's
            lines.setdefault(parts[:i], f"override {ov}")
    cfg = _build(RecipeConfig, tree, source, lines, ())
    validate(cfg, source)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    """Load a recipe config from YAML and apply dotted ``key=value`` overrides."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from e
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return config_from_dict(tree, str(path), overrides)

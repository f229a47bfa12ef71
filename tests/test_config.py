"""Recipe config: YAML loading, dotted overrides, strict typing, errors that name key and file."""

from __future__ import annotations

import pytest

from pipeline.config import ConfigError, RecipeConfig, load_config

YAML = """\
# comment line
data:
  lang: sa
  manifests_dir: data/sa
model:
  name: whisper-base
train:
  regime: cached-encoder
  encoder_trainable_top_layers: 2
  lr: 1e-4
  lora:
    r: 8
augment:
  speed_perturb: [0.9, 1.0, 1.1]
output_dir: exp/sa/run1
"""


@pytest.fixture()
def cfg_path(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text(YAML, encoding="utf-8")
    return p


def test_load_and_defaults(cfg_path):
    cfg = load_config(cfg_path)
    assert isinstance(cfg, RecipeConfig)
    assert cfg.train.regime == "cached-encoder"
    assert cfg.train.encoder_trainable_top_layers == 2
    assert cfg.train.lora.r == 8 and cfg.train.lora.alpha == 32  # nested default kept
    assert cfg.augment.speed_perturb == [0.9, 1.0, 1.1]
    assert cfg.decode.beam == 1
    assert cfg.language == "sa"  # model.language falls back to data.lang
    assert cfg.data.manifest("dev").endswith("data/sa/dev.jsonl")


def test_overrides_are_typed(cfg_path):
    cfg = load_config(
        cfg_path,
        ["train.lr=3e-4", "train.max_steps=50", "train.lora.dropout=0", "augment.speed_perturb=[1.0]",
         "train.freeze_token_embeddings=true", "model.language=xx"],
    )  # fmt: skip
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.max_steps == 50
    assert cfg.train.lora.dropout == 0.0 and isinstance(cfg.train.lora.dropout, float)  # int accepted for float
    assert cfg.augment.speed_perturb == [1.0]
    assert cfg.train.freeze_token_embeddings is True
    assert cfg.language == "xx"


def test_unknown_key_in_file_names_key_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  lr: 1.0e-4\n  warmup_stpes: 10\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "train.warmup_stpes" in msg and f"{p}:3" in msg


def test_unknown_override_and_wrong_type(cfg_path):
    with pytest.raises(ConfigError, match=r"override train\.lrr=1.*unknown key 'train\.lrr'"):
        load_config(cfg_path, ["train.lrr=1"])
    with pytest.raises(ConfigError, match=r"train\.max_steps: expected an integer"):
        load_config(cfg_path, ["train.max_steps=1.5"])
    with pytest.raises(ConfigError, match=r"expected true/false"):
        load_config(cfg_path, ["train.restrict_vocab=maybe"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(cfg_path, ["train.lr"])


def test_cross_field_validation(cfg_path):
    with pytest.raises(ConfigError, match="train.regime"):
        load_config(cfg_path, ["train.regime=partial"])
    with pytest.raises(ConfigError, match="trimmed_encoder"):
        load_config(cfg_path, ["train.trimmed_encoder=false"])
    with pytest.raises(ConfigError, match="speed_perturb"):
        load_config(cfg_path, ["augment.speed_perturb=[]"])
    with pytest.raises(ConfigError, match=r"ctc_weight must be in \[0, 1\)"):
        load_config(cfg_path, ["train.ctc_weight=1.0"])
    with pytest.raises(ConfigError, match="needs model.type whisper"):
        load_config(cfg_path, ["train.ctc_weight=0.3", "model.type=ctc"])
    assert load_config(cfg_path, ["train.ctc_weight=0.3"]).train.ctc_weight == 0.3
    with pytest.raises(ConfigError, match="padded_share .*needs model.type whisper"):
        load_config(cfg_path, ["train.padded_share=0.2", "model.type=ctc"])
    with pytest.raises(ConfigError, match="padded_share .*trimmed_encoder true"):
        load_config(cfg_path, ["train.padded_share=0.2", "train.regime=freeze-encoder", "train.trimmed_encoder=false"])
    assert load_config(cfg_path, ["train.padded_share=1"]).train.padded_share == 1.0


def _numeric_fields(cls, prefix=""):
    """(dotted key, field) of every number or list of numbers in the config schema."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _numeric_fields(tp, f"{prefix}{f.name}.")
        elif {int, float} & {tp, *typing.get_args(tp)}:
            yield f"{prefix}{f.name}", f


def test_every_number_declares_its_range():
    numeric = dict(_numeric_fields(RecipeConfig))
    assert len(numeric) > 50 and "train.lora.r" in numeric and "ctc.lm_alphas" in numeric
    unbounded = [k for k, f in numeric.items() if "bounds" not in f.metadata]
    assert not unbounded


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lr=.inf", r"train\.lr: inf is not a finite number"),
        ("train.lr=.nan", r"train\.lr: nan is not a finite number"),
        ("train.lr=0", r"train\.lr must be in \(0, 1\], got 0"),
        ("train.lr=1e38", r"train\.lr must be in \(0, 1\], got 1e\+38"),
        ("train.log_every=0", r"train\.log_every must be in \[1, "),
        ("train.seed=-1", r"train\.seed must be in \[0, 4294967295\], got -1"),
        ("train.seed=4294967296", r"train\.seed must be in"),
        ("data.max_duration=-1", r"data\.max_duration must be > 0"),
        ("train.dropout=2", r"train\.dropout must be in \[0, 1\)"),
        ("train.num_workers=-1", r"train\.num_workers must be in \[0, 256\]"),
        ("train.warmup_steps=-1", r"train\.warmup_steps must be in \[0, "),
        ("augment.noise_prob=1.01", r"augment\.noise_prob must be in \[0, 1\]"),
        ("train.weight_decay=-0.1", r"train\.weight_decay must be in \[0, 1\]"),
        ("train.clip=-1", r"train\.clip must be >= 0"),
        ("train.cache_shard_size=0", r"train\.cache_shard_size must be in \[1, "),
        ("train.lora.r=0", r"train\.lora\.r must be in \[1, "),
        ("augment.speed_perturb=[1.0,1000]", r"augment\.speed_perturb\[1\] must be in \[0\.5, 2\]"),
        ("augment.time_masks=100000", r"augment\.time_masks must be in \[0, 100\]"),
        ("augment.noise_snr_db=[10,.inf]", r"augment\.noise_snr_db\[1\]: inf is not a finite number"),
        ("ctc.init_blank_prob=.nan", r"ctc\.init_blank_prob: nan is not a finite number"),
        ("ctc.init_blank_prob=1", r"ctc\.init_blank_prob must be in \(0, 1\)"),
        ("ctc.lm_betas=[0,-.inf]", r"ctc\.lm_betas\[1\]: -inf is not a finite number"),
        ("decode.beam=0", r"decode\.beam must be in \[1, 100\]"),
        ("data.min_duration=40", r"data\.min_duration \(40\) must be below data\.max_duration"),
        ("ctc.head_dim=30", r"ctc\.head_dim \(30\) must be a multiple of ctc\.head_heads"),
        ("train.padded_share=1.5", r"train\.padded_share must be in \[0, 1\], got 1\.5"),
        ("train.padded_share=-0.1", r"train\.padded_share must be in \[0, 1\]"),
    ],
)
def test_numbers_out_of_range_name_the_key_and_where(cfg_path, override, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config(cfg_path, [override])
    assert str(cfg_path) in str(e.value) and "\n" not in str(e.value)


def test_out_of_range_value_in_the_file_names_its_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  lr: 1.0e-4\n  grad_accum: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{p}:3: train\.grad_accum must be in \[1, "):
        load_config(p)


def test_values_set_in_code_are_checked_too():
    from pipeline.config import validate

    cfg = RecipeConfig()
    validate(cfg)  # the defaults are in range
    cfg.train.lr = float("nan")
    with pytest.raises(ConfigError, match=r"train\.lr: nan is not a finite number"):
        validate(cfg, "code")

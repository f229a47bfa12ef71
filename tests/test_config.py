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

"""Configs: YAML + key=value onto dataclasses; unknown keys and bad values name the field and the allowed values."""

import pytest

from rankwise.cli.bench import BenchConfig
from rankwise.cli.config import describe, load_config, parse_overrides, write_config
from rankwise.cli.finetune import FinetuneConfig
from rankwise.cli.pretrain import PretrainConfig
from rankwise.errors import ConfigError


def test_defaults_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.01\nrank: 4\ntargets: [q_proj, v_proj]\nmethod_args: {init: pissa}\n")
    cfg = load_config(FinetuneConfig, path, parse_overrides(["lr=3e-4", "progress=false", "alpha=none", "data=a.tsv"]))
    assert cfg.lr == 3e-4 and cfg.rank == 4 and cfg.targets == ["q_proj", "v_proj"] and cfg.progress is False
    assert cfg.method_args == {"init": "pissa"} and cfg.alpha is None and cfg.batch_size == 32  # untouched default
    cfg = load_config(BenchConfig, None, [("methods", "adamw, lora"), ("lr_grid", "[0.5, 2]")])
    assert cfg.methods == ["adamw", "lora"] and cfg.lr_grid == [0.5, 2.0]


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(PretrainConfig, None, [("rank", "8"), ("steps", "50")])
    write_config(cfg, tmp_path / "config.yaml")
    assert load_config(PretrainConfig, tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("override, message", [
    (("lr_shedule", "cosine"), r"unknown setting 'lr_shedule'.*Did you mean \['lr_schedule'\]"),
    (("lr", "fast"), r"lr='fast' is not a valid float"),
    (("steps", "2.5"), r"steps='2.5' is not a valid int"),
    (("lr_schedule", "step"), r"lr_schedule='step' is not allowed; choose one of \['cosine', 'linear', 'constant'\]"),
    (("steps", "0"), r"steps=0 must be ≥ 1"),
    (("warmup", "1.5"), r"warmup=1.5 must be < 1"),
    (("progress", "maybe"), r"progress='maybe' is not a boolean"),
    (("method_args", "[1, 2]"), r"method_args=.* must be a mapping"),
])
def test_bad_settings_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(FinetuneConfig, None, [("data", "a.tsv"), override])
    with pytest.raises(ConfigError, match="data is empty"):
        load_config(FinetuneConfig, None, [])


def test_bad_files_and_pairs(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(FinetuneConfig, tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(FinetuneConfig, tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["lr"])


def test_bench_rejects_unknown_methods_and_grid():
    with pytest.raises(ConfigError, match="unknown method 'lorra'.*Did you mean"):
        load_config(BenchConfig, None, [("methods", "adamw,lorra")])
    with pytest.raises(ConfigError, match="lr_grid must hold positive"):
        load_config(BenchConfig, None, [("lr_grid", "0,1")])


def test_every_field_is_described_with_its_default():
    names = [row[0] for row in describe(FinetuneConfig)]
    assert {"lr", "steps", "rank", "method", "model", "data", "epochs", "out"} <= set(names)
    assert all(text for _, _, _, text in describe(FinetuneConfig))

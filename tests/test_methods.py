"""The method catalogue: listing, presets, errors."""

import pytest

import rankwise
from rankwise.errors import ConfigError


def test_every_method_builds_its_default_config():
    names = [m.name for m in rankwise.methods()]
    assert len(names) == len(set(names))
    for m in rankwise.methods():
        assert m.paper and "arXiv" in m.paper, m.name
        assert rankwise.method_config(m.name) is not None


def test_presets_set_their_axes_and_take_overrides():
    cfg = rankwise.method_config("dora", rank=4)
    assert cfg.dora and cfg.rank == 4
    assert rankwise.method_config("pissa").init == "pissa"


def test_unknown_method_and_field_are_named():
    with pytest.raises(ConfigError, match="Did you mean"):
        rankwise.method_config("lorra")
    with pytest.raises(ConfigError, match="rnk"):
        rankwise.method_config("lora", rnk=3)
    with pytest.raises(ConfigError, match="family"):
        rankwise.methods("nope")


def test_unknown_options_are_rejected():
    with pytest.raises(ConfigError, match="seed"):
        rankwise.LoRAConfig(options={"seed": 1})

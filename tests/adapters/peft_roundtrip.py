"""Round trips of a structured adapter through Hugging Face PEFT's format, in both directions."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import rankwise
from tests.helpers import perturb

peft = pytest.importorskip("peft")


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(24, 40), nn.Tanh(), nn.Linear(40, 16))


def check_both_directions(tmp_path, rankwise_config, peft_config, atol=1e-5):
    """rankwise → PEFT file → PEFT → PEFT file → rankwise, and PEFT-made → rankwise; logits within ``atol``."""
    x = torch.randn(5, 24, generator=torch.Generator().manual_seed(4))
    model = rankwise.adapt(make_model(), rankwise_config)
    perturb(model, std=0.2)
    y = model(x)
    rankwise.save_adapter(model, tmp_path / "rw", format="peft")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = peft.PeftModel.from_pretrained(make_model(), tmp_path / "rw")
    torch.testing.assert_close(pm(x), y, atol=atol, rtol=0)
    pm.save_pretrained(tmp_path / "back")
    again = rankwise.load_adapter(make_model(), tmp_path / "back")
    torch.testing.assert_close(again(x), y, atol=atol, rtol=0)
    # an adapter PEFT created and trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft.get_peft_model(make_model(), peft_config)
    perturb(theirs, std=0.2)
    y_peft = theirs(x)
    theirs.save_pretrained(tmp_path / "theirs")
    mine = rankwise.load_adapter(make_model(), tmp_path / "theirs")
    torch.testing.assert_close(mine(x), y_peft, atol=atol, rtol=0)
    return model, mine

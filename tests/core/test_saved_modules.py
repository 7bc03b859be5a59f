"""Checking saved modules_to_save tensors against a model before anything is copied."""

import pytest
import torch
from torch import nn

from rankwise.core.saved_modules import check_saved_tensors
from rankwise.errors import AdapterFileError


def _net():
    return nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))


def test_pairs_each_tensor_with_its_parameter():
    net = _net()
    t = torch.ones(2, 3)
    (pair,) = check_saved_tensors(net, {"1.weight": t}, "f")
    assert pair[0] is net[1].weight and pair[1] is t


@pytest.mark.parametrize("tensors,match", [
    ({"2.weight": torch.ones(2, 3)}, "'2.weight' .*does not exist in Sequential"),
    ({"1.weight": torch.ones(3, 3)}, r"'1.weight' has shape \(3, 3\), the model's is \(2, 3\)"),
    ({"1.bias": torch.tensor([0.0, float("nan")])}, "'1.bias' contains NaN or inf"),
])
def test_bad_tensors_are_named_with_the_file(tensors, match):
    with pytest.raises(AdapterFileError, match="folder/x: saved module parameter " + match):
        check_saved_tensors(_net(), tensors, "folder/x")

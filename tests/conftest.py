import pytest
import torch

from tests.helpers import ToyNet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return ToyNet().eval()

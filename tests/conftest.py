import os

import pytest
import torch

from tests.helpers import ToyNet

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per xdist worker: the workers already fill the cores, and oversubscribed torch
    # threads slow small kernels (SVDs especially) by orders of magnitude.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    # The test models are tiny: one intra-op thread is faster, and far faster on a loaded machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return ToyNet().eval()

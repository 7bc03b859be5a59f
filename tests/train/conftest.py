import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: one intra-op thread is faster, and far faster on a shared, loaded machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""DDP on CPU (gloo, 2 processes): ranks stay identical and equal a single process with the global batch."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rankwise.optim import GaLoreAdamW
from tests.optim.util import batch, groups, mlp

STEPS, GLOBAL_BATCH, WORLD = 5, 8, 2  # refreshes at steps 0 and 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(model, opt, shard: slice) -> None:
    for step in range(STEPS):
        x, y = batch(step, GLOBAL_BATCH)
        opt.zero_grad()
        ((model(x[shard]) - y[shard]) ** 2).mean().backward()
        opt.step()


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        shard = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
        results = {}
        # standard mode: DDP averages gradients during backward, the optimizer projects afterwards
        model = mlp()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        _train(ddp, GaLoreAdamW(groups(model, rank=3, update_gap=3), lr=1e-2), shard)
        results["ddp"] = [p.detach().clone() for p in model.parameters()]
        # layer-wise mode: no DDP wrapper; each hook averages its gradient before projecting it
        model = mlp()
        _train(model, GaLoreAdamW(groups(model, rank=3, update_gap=3), lr=1e-2, layerwise=True), shard)
        results["layerwise"] = [p.detach().clone() for p in model.parameters()]
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned interpreters (each imports torch): ~10 s idle, more on a loaded machine
@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")
def test_ddp_ranks_agree_with_each_other_and_with_one_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    single = mlp()
    _train(single, GaLoreAdamW(groups(single, rank=3, update_gap=3), lr=1e-2), slice(0, GLOBAL_BATCH))
    start = mlp()
    for mode in ("ddp", "layerwise"):
        for a, b in zip(ranks[0][mode], ranks[1][mode], strict=True):
            assert torch.equal(a, b), mode  # identical across ranks
        for a, ref, p0 in zip(ranks[0][mode], single.parameters(), start.parameters(), strict=True):
            assert not torch.equal(a, p0)  # training moved it
            torch.testing.assert_close(a, ref.detach(), rtol=0, atol=1e-5)

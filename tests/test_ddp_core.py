"""DistributedDataParallel over converted layers: gradients are all-reduced (its hooks fire)."""
import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

import dropit


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))


def _data(rank):
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(4, 3, 8, 8, generator=g)


def _grads(model, x):
    model.zero_grad()
    model(x).square().sum().backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _worker(rank, world, port, out, strategy):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    dropit.seed_draws(5, 0)  # the unbiased strategy's draws: keyed as the single process below keys them
    model = dropit.to_dropit(_model(), strategy=strategy, gamma=0.9)
    ddp = nn.parallel.DistributedDataParallel(model)
    grads = _grads(ddp, _data(rank))
    torch.save(grads, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["mink", "unbiased"])  # unbiased: each rank's hashed draws, as one process draws
def test_ddp_all_reduces_the_dropit_gradients(tmp_path, strategy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path), strategy), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    dropit.seed_draws(5, 0)  # whatever an earlier test left keyed
    single = dropit.to_dropit(_model(), strategy=strategy, gamma=0.9)
    expected = [(a + b) / 2 for a, b in zip(_grads(copy.deepcopy(single), _data(0)), _grads(single, _data(1)))]
    for g0, g1, e in zip(got[0], got[1], expected):
        torch.testing.assert_close(g0, g1)
        torch.testing.assert_close(g0, e)

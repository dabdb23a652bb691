"""Distributed helpers: single-process no-ops, and a real 2-process gloo group."""

import os

import torch
import torch.multiprocessing as mp

from slimssl import dist as D
from tinyrun import start_method


def test_single_process_noops(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    info = D.init_distributed(device="cpu")
    assert (info.rank, info.world_size, info.local_rank) == (0, 1, 0)
    assert info.device == torch.device("cpu") and not info.distributed
    assert D.is_main() and D.get_world_size() == 1
    x = torch.arange(4.0, requires_grad=True)
    assert D.all_gather_tensor(x) is x
    assert torch.equal(D.concat_all_gather(x), x)
    y = torch.tensor([2.0])
    D.all_reduce_mean_tensors_([y])
    assert y.item() == 2.0
    D.barrier()


def _worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    # torchrun's env vars; the group itself is joined through a file (no port to pick)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        info = D.init_distributed(device="cpu")  # reads the env, reuses the existing group
        assert (info.rank, info.world_size) == (rank, world_size)
        assert D.is_main() == (rank == 0)

        x = torch.full((2, 3), float(rank + 1), requires_grad=True)
        g = D.all_gather_tensor(x)
        assert g.shape == (4, 3)
        assert torch.equal(g[:2], torch.ones(2, 3)) and torch.equal(g[2:], torch.full((2, 3), 2.0))
        # each rank's loss weights the gathered rows differently; the local chunk must receive
        # the sum over ranks of the gradients w.r.t. its rows
        w = torch.arange(12.0).reshape(4, 3) * (rank + 1)
        (g * w).sum().backward()
        base = torch.arange(12.0).reshape(4, 3)[rank * 2:(rank + 1) * 2]
        assert torch.allclose(x.grad, base * (1 + 2)), x.grad

        k = D.concat_all_gather(torch.tensor([[rank * 10.0]]))
        assert k.tolist() == [[0.0], [10.0]] and not k.requires_grad
        # two dtypes, a view: ranks hold 0 and 1 (float) and 2 and 4 (double) -> means 0.5, 3
        base = torch.tensor([float(rank), 0.0])
        m, d = base[:1], torch.tensor([2.0 * (rank + 1)], dtype=torch.float64)
        D.all_reduce_mean_tensors_([m, d])
        assert base[0].item() == 0.5 and d.item() == 3.0
        s = D.all_reduce_sum_(torch.tensor([rank + 1]))
        assert s.item() == 3
        open(os.path.join(out_dir, f"ok{rank}"), "w").close()
    finally:
        D.cleanup_distributed()


def test_two_process_gloo(tmp_path):
    # torch.multiprocessing.spawn's machinery, started as every multi-rank test starts its ranks
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       join=True, start_method=start_method())
    assert (tmp_path / "ok0").exists() and (tmp_path / "ok1").exists()

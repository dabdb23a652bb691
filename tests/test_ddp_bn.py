"""Under DDP, BatchNorm running statistics are averaged over ranks (two gloo processes fed
different data; every expected number worked by hand below)."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import torch
import torch.multiprocessing as mp

from slimssl.dist import all_reduce_mean_tensors_
from slimssl.nn import (SlimBatchNorm2d, SlimmableModel, SubnetSpec, average_running_stats_,
                        recalibrate_bn)
from tinyrun import start_method

WIDTHS = (1.0, 0.5)


class TwoNorms(SlimmableModel):
    """A switchable and a universal BatchNorm of 4 channels (2 at width 0.5), side by side."""

    def __init__(self) -> None:
        super().__init__(WIDTHS, "switchable")
        self.switchable = SlimBatchNorm2d(4, "switchable", WIDTHS)
        self.universal = SlimBatchNorm2d(4, "universal", WIDTHS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.switchable(x) + self.universal(x)


def _batch(values: list[float], channels: int) -> torch.Tensor:
    """Two samples of one pixel; every channel holds the sample's value."""
    return torch.tensor(values).view(2, 1, 1, 1).expand(2, channels, 1, 1).contiguous()


# Rank r's data. BatchNorm (momentum 0.1, from mean 0 / var 1) after one batch of two samples
# {a, b}: running_mean = 0.1 (a+b)/2, running_var = 0.9 + 0.1 (a-b)^2/2 (unbiased variance).
#   width 1.0, rank 0: {0, 2}   -> mean 1,  var 2   -> running 0.1, 1.1
#              rank 1: {1, 5}   -> mean 3,  var 8   -> running 0.3, 1.7   average 0.2, 1.4
#   width 0.5, rank 0: {0, 20}  -> mean 10, var 200 -> running 1.0, 20.9
#              rank 1: {10, 50} -> mean 30, var 800 -> running 3.0, 80.9  average 2.0, 50.9
# Recalibration at width 0.5 (one batch, cumulative average = the batch's own statistics):
#   rank 0: 10, 200; rank 1: 30, 800; averaged 20, 500.
FULL = {0: [0.0, 2.0], 1: [1.0, 5.0]}
HALF = {0: [0.0, 20.0], 1: [10.0, 50.0]}


def _stats(model: TwoNorms) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def _worker(rank: int, init_file: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=2)
    result: dict = {}
    try:
        model = TwoNorms().train()
        with model.subnet(SubnetSpec(1.0)):
            model(_batch(FULL[rank], 4))
        with model.subnet(SubnetSpec(0.5)):
            model(_batch(HALF[rank], 2))
        result["before"] = _stats(model)
        result["averaged"] = average_running_stats_(model)
        result["after"] = _stats(model)
        recalibrate_bn(model, SubnetSpec(0.5), [_batch(HALF[rank], 2)], num_images=2)
        result["recalibrated"] = _stats(model)

        halves = torch.full((2, 3), float(rank)).double()
        view = halves[0]  # a view, reduced in place
        ints_as_float = torch.tensor([4.0 * rank], dtype=torch.float32)
        all_reduce_mean_tensors_([view, ints_as_float])
        result["mixed"] = (halves.clone(), ints_as_float.clone())
    except Exception:  # noqa: BLE001 - the parent shows it
        result["error"] = traceback.format_exc()
    finally:
        torch.distributed.destroy_process_group()
    torch.save(result, Path(out) / f"rank{rank}.pt")


def test_bn_running_statistics_are_averaged_over_ranks(tmp_path):
    mp.start_processes(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       join=True, start_method=start_method())
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert "error" not in r0 and "error" not in r1, (r0.get("error"), r1.get("error"))

    def full(v: float) -> torch.Tensor:
        return torch.full((4,), v)

    sw, uni = "switchable.bn", "universal"
    # before: each rank its own statistics (different data)
    assert torch.allclose(r0["before"][f"{sw}.0.running_mean"], full(0.1))
    assert torch.allclose(r1["before"][f"{sw}.0.running_var"], full(1.7))
    assert torch.allclose(r1["before"][f"{sw}.1.running_mean"], torch.full((2,), 3.0))
    # every width's private BN and the universal BN's shared statistics: 3 x (mean, var)
    assert r0["averaged"] == r1["averaged"] == 6
    expected = {
        f"{sw}.0.running_mean": full(0.2), f"{sw}.0.running_var": full(1.4),
        f"{sw}.1.running_mean": torch.full((2,), 2.0),
        f"{sw}.1.running_var": torch.full((2,), 50.9),
        f"{uni}.running_mean": full(0.2), f"{uni}.running_var": full(1.4),
    }
    for result in (r0, r1):
        assert result["after"].keys() == expected.keys()
        for key, value in expected.items():
            assert torch.allclose(result["after"][key], value), (key, result["after"][key])
    # recalibrated width 0.5: the universal BN's first 2 channels, and the switchable private
    # BN of that width, hold the ranks' mean; the universal BN's other channels keep 0.2 / 1.4
    for result in (r0, r1):
        cal = result["recalibrated"]
        assert torch.allclose(cal[f"{uni}.running_mean"], torch.tensor([20.0, 20.0, 0.2, 0.2]))
        assert torch.allclose(cal[f"{uni}.running_var"], torch.tensor([500.0, 500.0, 1.4, 1.4]))
        assert torch.allclose(cal[f"{sw}.1.running_mean"], torch.full((2,), 20.0))
        assert torch.allclose(cal[f"{sw}.1.running_var"], torch.full((2,), 500.0))
        assert torch.allclose(cal[f"{sw}.0.running_mean"], full(0.2))  # width 1.0 untouched
    # the flat all-reduce: one row of a float64 matrix (a view) and a float32 tensor
    halves, single = r1["mixed"]
    assert torch.equal(halves[0], torch.full((3,), 0.5, dtype=torch.float64))
    assert torch.equal(halves[1], torch.full((3,), 1.0, dtype=torch.float64))  # not in the list
    assert torch.equal(single, torch.tensor([2.0]))

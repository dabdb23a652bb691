"""Two-process gloo training through the real Trainer: same sub-networks on every rank, MoCo v2
keys of both ranks in the queue, identical weights; a rank that dies stops the run clearly."""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import torch

from slimssl.engine.checkpoint import list_checkpoints, load_checkpoint
from slimssl.engine.trainer import Callback, Trainer
from tinyrun import run_ranks, tiny_config, write_image_folder


class Record(Callback):
    """The members sampled at every step."""

    def __init__(self) -> None:
        self.specs: list[list[str]] = []

    def after_backward(self, trainer: Trainer, specs: list) -> None:
        self.specs.append([s.label for s in specs])


def _worker(rank: int, data: str, out: str, init_file: str, die_at: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=2)
    result: dict = {"rank": rank}
    try:
        record = Record()
        trainer = Trainer(tiny_config(data, out, "data.batch_size=8"), out, progress="off",
                          callbacks=[record])
        keys: list[torch.Tensor] = []
        target_forward = trainer.method.target_forward

        def spy(views):
            k = target_forward(views)
            keys.append(k.detach().clone())
            if rank == 1 and len(keys) == die_at:
                os._exit(3)  # a rank that dies without a word (like an OOM kill)
            return k

        trainer.method.target_forward = spy
        queue = trainer.method.queue
        trainer.fit()
        result.update(specs=record.specs, state=trainer.method.state_dict(), keys=keys,
                      queue=queue.queue.detach().clone())
    except Exception as err:  # noqa: BLE001 - the parent checks the message
        result["error"] = f"{type(err).__name__}: {err}"
        result["trace"] = traceback.format_exc()
    torch.save(result, Path(out) / f"rank{rank}.pt")


def launch(tmp_path: Path, die_at: int = 0) -> tuple[dict | None, dict | None]:
    """Run both ranks as plain processes (a failing rank does not take the other down, so
    rank 0 lives to report what it saw); each saves its result to ``rank{R}.pt``."""
    data = write_image_folder(tmp_path / "images")
    run_ranks(_worker, lambda r: (str(data), str(tmp_path / "run"), str(tmp_path / "init"),
                                  die_at))
    files = [tmp_path / "run" / f"rank{r}.pt" for r in (0, 1)]
    return tuple(torch.load(f, weights_only=True) if f.exists() else None
                 for f in files)


def test_two_ranks_train_in_lockstep(tmp_path):
    r0, r1 = launch(tmp_path)
    assert "error" not in r0 and "error" not in r1, (r0.get("trace"), r1.get("trace"))
    # same sub-networks at every step, through slow start (full only) and after it
    assert r0["specs"] == r1["specs"] and len(r0["specs"]) == 8
    assert r0["specs"][0] == ["w1.00"] and r0["specs"][-1] == ["w1.00", "w0.50"]
    # identical weights, EMA target and queue on both ranks, and identical BN running statistics:
    # each rank tracks its own during training (no SyncBN), the checkpoint after the last epoch
    # replaced them by the ranks' mean on both (tests/test_ddp_bn.py checks the mean by hand)
    assert r0["state"].keys() == r1["state"].keys()
    for key, value in r0["state"].items():
        assert torch.equal(value, r1["state"][key]), key
    saved = load_checkpoint(list_checkpoints(tmp_path / "run" / "checkpoints")[-1])["method"]
    assert all(torch.equal(saved[key], value) for key, value in r0["state"].items())
    # the last step enqueued 2 x 8 keys at rows 48..63 (8 steps x 16 keys wrap a 64-row queue):
    # rank 0's keys, then rank 1's, each rank's own (different) keys
    queue = r0["queue"]
    assert torch.equal(queue[48:56], r0["keys"][-1]) and torch.equal(queue[56:64], r1["keys"][-1])
    assert not torch.equal(r0["keys"][-1], r1["keys"][-1])


def test_a_dying_rank_stops_the_run_with_a_clear_message(tmp_path):
    r0, r1 = launch(tmp_path, die_at=6)
    assert r1 is None  # it died in its 6th step without a word, after the epoch-1 checkpoint
    assert r0 is not None and r0["error"].startswith("PeerFailureError: rank 0: exchanging data")
    for part in ("failed at step 6", "another rank stopped", "the last good checkpoint is",
                 "ckpt_epoch0001_step00000004.pt", "--resume auto"):
        assert part in r0["error"], r0["error"]

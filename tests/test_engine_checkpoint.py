"""Checkpoint save/load/rotation/fallback and safety (slimssl.engine.checkpoint)."""

import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import slimssl.engine.checkpoint as ck
from slimssl.engine.checkpoint import (
    CheckpointError,
    atomic_save,
    capture_rng_state,
    check_state_dict_compatible,
    checkpoint_name,
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    resolve_resume,
    restore_rng_state,
    save_checkpoint,
)


def _state(v: float) -> dict:
    return {"model": {"w": torch.full((3,), v)}, "epoch": int(v), "note": "x", "lst": [1, 2.5, None]}


def test_name_and_roundtrip(tmp_path):
    assert checkpoint_name(3, 120) == "ckpt_epoch0003_step00000120.pt"
    p = save_checkpoint(tmp_path, _state(1.0), epoch=1, step=10)
    s = load_checkpoint(p)
    assert torch.equal(s["model"]["w"], torch.ones(3)) and s["lst"] == [1, 2.5, None]
    assert [q.name for q in tmp_path.iterdir()] == [p.name]  # no temp files left


def test_keep_last_k(tmp_path):
    for e in range(1, 6):
        save_checkpoint(tmp_path, _state(e), epoch=e, step=e * 100, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        checkpoint_name(4, 400), checkpoint_name(5, 500)]


def test_interrupted_save_leaves_previous_intact(tmp_path, monkeypatch):
    p = save_checkpoint(tmp_path, _state(1.0), epoch=1, step=10, keep=1)
    before = p.read_bytes()

    def broken(obj, f):
        f.write(b"PK\x03\x04partial")
        raise OSError("disk full")

    monkeypatch.setattr(ck, "_write_payload", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, _state(2.0), epoch=2, step=20, keep=1)
    assert list(tmp_path.iterdir()) == [p]  # no partial file, old one not pruned
    assert p.read_bytes() == before
    with pytest.raises(OSError):  # same for overwriting the same name
        atomic_save(_state(3.0), p)
    assert p.read_bytes() == before


@pytest.mark.parametrize("corruption", ["empty", "truncated", "garbage"])
def test_fallback_to_previous_valid(tmp_path, corruption):
    good = save_checkpoint(tmp_path, _state(1.0), epoch=1, step=10)
    bad = tmp_path / checkpoint_name(2, 20)
    if corruption == "empty":
        bad.write_bytes(b"")
    elif corruption == "truncated":
        full = save_checkpoint(tmp_path, _state(2.0), epoch=2, step=20).read_bytes()
        bad.write_bytes(full[: len(full) // 2])
    else:
        bad.write_bytes(b"\x00garbage" * 50)
    with pytest.warns(RuntimeWarning, match=bad.name):
        assert load_latest_checkpoint(tmp_path)[0] == good
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path, state = resolve_resume(tmp_path)
    assert path == good and state["epoch"] == 1


def test_resume_errors(tmp_path):
    assert load_latest_checkpoint(tmp_path) is None
    with pytest.raises(CheckpointError, match="no valid checkpoint in"):
        resolve_resume(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_resume(tmp_path / "nope")
    sub = tmp_path / "checkpoints"
    p = save_checkpoint(sub, _state(4.0), epoch=4, step=4)
    assert resolve_resume(tmp_path)[0] == p
    assert resolve_resume(p)[0] == p
    assert load_latest_checkpoint(sub)[0] == p


class _Evil:
    """Unpickling this would create a marker file (a stand-in for arbitrary code execution)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / checkpoint_name(1, 1)
    torch.save({"model": {}, "payload": _Evil(str(marker))}, bad)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(bad)
    with pytest.warns(RuntimeWarning):
        assert load_latest_checkpoint(tmp_path) is None
    assert not marker.exists()


def test_state_dict_compatibility():
    a = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).state_dict()
    check_state_dict_compatible(a, dict(a))
    b = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2), nn.Linear(2, 2)).state_dict()
    with pytest.raises(CheckpointError) as e:
        check_state_dict_compatible(a, b)
    msg = str(e.value)
    assert "unexpected keys (2): 2.bias, 2.weight" in msg
    assert "0.weight: model (4, 3) vs checkpoint (5, 3)" in msg
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): 1.bias"):
        check_state_dict_compatible(a, {k: v for k, v in a.items() if k != "1.bias"})


def test_rng_state_roundtrip_through_weights_only(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # populate python's cached gaussian
    p = atomic_save({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    restore_rng_state(load_checkpoint(p)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected

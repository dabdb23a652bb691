"""Tests for slimssl.methods.losses: every expected value is computed by hand below."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from slimssl.methods.losses import (
    MemoryQueue,
    byol_loss,
    in_batch_logits,
    info_nce_from_logits,
    moco_logits,
    mocov3_loss,
    simsiam_loss,
)
from slimssl.methods.simclr import nt_xent_global


def ce(logits: list[float], target: int) -> float:
    """-log softmax(logits)[target], by hand."""
    return -logits[target] + math.log(sum(math.exp(x) for x in logits))


# ------------------------------------------------------------------------------ MoCo v2


def test_moco_logits_and_info_nce_by_hand() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    queue = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # (K=3, D=2)
    tau = 0.5
    logits = moco_logits(q, k, queue, tau)
    # row 0: q.k = 0.6, q.queue = [1, 0, -1]   -> / 0.5
    # row 1: q.k = 1.0, q.queue = [0, 1, 0]    -> / 0.5
    row0 = [1.2, 2.0, 0.0, -2.0]
    row1 = [2.0, 0.0, 2.0, 0.0]
    assert logits.shape == (2, 4)
    torch.testing.assert_close(logits, torch.tensor([row0, row1]))
    expected = (ce(row0, 0) + ce(row1, 0)) / 2
    assert info_nce_from_logits(logits).item() == pytest.approx(expected, rel=1e-6)


def test_moco_logits_raw_temperature_one_and_detached_keys() -> None:
    q = torch.tensor([[0.6, 0.8]], requires_grad=True)
    k = torch.tensor([[1.0, 0.0]], requires_grad=True)
    queue = torch.tensor([[0.0, 1.0]], requires_grad=True)
    logits = moco_logits(q, k, queue, 1.0)
    torch.testing.assert_close(logits, torch.tensor([[0.6, 0.8]]))
    info_nce_from_logits(logits).backward()
    assert q.grad is not None
    assert k.grad is None and queue.grad is None
    # d/dq of CE([q.k, q.n], 0) = (p0 - 1) k + p1 n with p = softmax([0.6, 0.8])
    p1 = math.exp(0.8) / (math.exp(0.6) + math.exp(0.8))
    p0 = 1.0 - p1
    torch.testing.assert_close(q.grad, torch.tensor([[p0 - 1.0, p1]]))


def test_moco_logits_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        moco_logits(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(4, 2), 0.2)
    with pytest.raises(ValueError):
        moco_logits(torch.zeros(2, 3), torch.zeros(3, 3), torch.zeros(4, 3), 0.2)
    with pytest.raises(ValueError):
        moco_logits(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(4, 3), 0.0)


# ------------------------------------------------------------------------------ MoCo v3


def test_in_batch_logits_positives_offset_by_rank() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # world of 2 ranks x B = 2 keys, rank-major
    k_all = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    logits, labels = in_batch_logits(q, k_all, rank=1, temperature=0.5)
    assert labels.tolist() == [2, 3]
    expected = torch.tensor([[0.0, 1.0, 0.6, 0.8], [1.0, 0.0, 0.8, 0.6]]) / 0.5
    torch.testing.assert_close(logits, expected)
    _, labels0 = in_batch_logits(q, k_all, rank=0, temperature=0.5)
    assert labels0.tolist() == [0, 1]
    with pytest.raises(ValueError):
        in_batch_logits(q, k_all, rank=2, temperature=0.5)


def test_mocov3_loss_by_hand() -> None:
    tau = 0.5
    q1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    k1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    k2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s12, labels = in_batch_logits(q1, k2, rank=0, temperature=1.0)
    s21, _ = in_batch_logits(q2, k1, rank=0, temperature=1.0)
    # ctr(q1, k2): logits [[1, 0], [0, 1]] / 0.5 -> both rows CE([2, 0], 0) = log(1 + e^-2)
    # ctr(q2, k1): logits [[0, 1], [1, 0]] / 0.5 -> both rows CE([0, 2], 0) = log(1 + e^2)
    ce12 = math.log(1 + math.exp(-2))
    ce21 = math.log(1 + math.exp(2))
    expected = 2 * tau * ce12 + 2 * tau * ce21
    assert mocov3_loss(s12, s21, labels, tau).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        mocov3_loss(s12, s21, labels, 0.0)


def test_mocov3_loss_with_rank_uses_its_block() -> None:
    tau = 1.0
    q = torch.tensor([[1.0, 0.0]])
    k_all = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # world 2, B 1; rank 1's positive is row 1
    s, labels = in_batch_logits(q, k_all, rank=1, temperature=1.0)
    # logits [0, 1], target 1 -> CE = log(1 + e^-1); ctr = 2 * 1 * CE; both directions equal
    expected = 2 * (2 * math.log(1 + math.exp(-1)))
    assert mocov3_loss(s, s, labels, tau).item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------ BYOL / SimSiam


def test_byol_loss_by_hand_and_stop_gradient() -> None:
    p = torch.tensor([[1.0, 0.0], [3.0, 4.0]], requires_grad=True)
    z = torch.tensor([[1.0, 1.0], [4.0, 3.0]], requires_grad=True)
    # cos = 1/sqrt(2) and (12 + 12) / 25
    expected = ((2 - 2 / math.sqrt(2)) + (2 - 2 * 24 / 25)) / 2
    loss = byol_loss(p, z)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert p.grad is not None and z.grad is None


def test_byol_equals_normalised_mse() -> None:
    p = torch.tensor([[3.0, 4.0]])
    z = torch.tensor([[0.0, 2.0]])
    # ||(0.6, 0.8) - (0, 1)||^2 = 0.36 + 0.04 = 0.4 = 2 - 2 * 0.8
    assert byol_loss(p, z).item() == pytest.approx(0.4, rel=1e-6)


def test_simsiam_loss_by_hand() -> None:
    p = torch.tensor([[1.0, 0.0], [3.0, 4.0]], requires_grad=True)
    z = torch.tensor([[1.0, 1.0], [4.0, 3.0]], requires_grad=True)
    expected = -(1 / math.sqrt(2) + 24 / 25) / 2
    loss = simsiam_loss(p, z)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert z.grad is None


# ------------------------------------------------------------------------------ SimCLR


def test_nt_xent_by_hand() -> None:
    tau = 0.5
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # a, b
    z2 = torch.tensor([[0.6, 0.8], [0.8, 0.6]])  # c, d ; positives a<->c, b<->d
    # dot products: ab 0, ac .6, ad .8, bc .8, bd .6, cd .96 ; anchor itself excluded
    t = 1 / tau
    anchors = [
        ([0.0 * t, 0.6 * t, 0.8 * t], 1),  # a: b, c(+), d
        ([0.0 * t, 0.8 * t, 0.6 * t], 2),  # b: a, c, d(+)
        ([0.6 * t, 0.8 * t, 0.96 * t], 0),  # c: a(+), b, d
        ([0.8 * t, 0.6 * t, 0.96 * t], 1),  # d: a, b(+), c
    ]
    expected = sum(ce(lg, i) for lg, i in anchors) / 4
    assert nt_xent_global(z1, z2, tau).item() == pytest.approx(expected, rel=1e-6)
    # scale invariance: cosine similarities
    assert nt_xent_global(3 * z1, 2 * z2, tau).item() == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------ MemoryQueue


def test_memory_queue_init_is_seeded_and_normalised() -> None:
    a = MemoryQueue(5, 3, generator=torch.Generator().manual_seed(7))
    b = MemoryQueue(5, 3, generator=torch.Generator().manual_seed(7))
    assert a.queue.shape == (5, 3)
    torch.testing.assert_close(a.queue, b.queue)
    torch.testing.assert_close(a.queue.norm(dim=1), torch.ones(5))
    assert int(a.ptr) == 0
    assert set(a.state_dict()) == {"queue", "ptr"}


def test_memory_queue_fifo_wraps_in_two_parts() -> None:
    mq = MemoryQueue(5, 2, generator=torch.Generator().manual_seed(0))
    init = mq.queue.clone()
    b1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    mq.enqueue(b1)
    assert int(mq.ptr) == 3
    torch.testing.assert_close(mq.queue[:3], b1)
    torch.testing.assert_close(mq.queue[3:], init[3:])
    b2 = torch.tensor([[0.0, -1.0], [0.6, 0.8], [0.8, 0.6]])
    mq.enqueue(b2)  # rows 3, 4 then wrap to row 0
    assert int(mq.ptr) == 1
    expected = torch.stack([b2[2], b1[1], b1[2], b2[0], b2[1]])
    torch.testing.assert_close(mq.queue, expected)
    mq.enqueue(torch.tensor([[1.0, 0.0]] * 4))  # rows 1..4, pointer back to 0
    assert int(mq.ptr) == 0
    torch.testing.assert_close(mq.queue[0], b2[2])
    with pytest.raises(ValueError):
        mq.enqueue(torch.zeros(6, 2))
    with pytest.raises(ValueError):
        mq.enqueue(torch.zeros(2, 3))


def test_memory_queue_snapshot_allows_enqueue_before_backward() -> None:
    mq = MemoryQueue(4, 2, generator=torch.Generator().manual_seed(1))
    q = F.normalize(torch.tensor([[1.0, 2.0]]), dim=1).requires_grad_(True)
    k = torch.tensor([[1.0, 0.0]])
    loss = info_nce_from_logits(moco_logits(q, k, mq.snapshot(), 0.2))
    mq.enqueue(k)
    loss.backward()  # must not complain about an in-place modified saved tensor
    assert q.grad is not None

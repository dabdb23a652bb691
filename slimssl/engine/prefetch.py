"""The next batch's views drawn on a background thread while the current step computes
(``data.prefetch_views``).

:class:`ViewBatches` iterates ``(images, labels, views)`` over one epoch of a loader. With
``background=True`` one worker thread takes batch k+1 from the loader and draws its two views
while the caller trains on batch k; without, each batch's views are drawn when it is asked for.
The augmentation generator is used in the same order either way (one batch after the other, on
one thread at a time), so the views, and everything trained on them, are bit-identical.

Exact resume: when a step ends, the generator has already drawn the next batch's views. Every
prepared batch therefore carries the generator state right after its own views were drawn, and
:attr:`ViewBatches.trained_state` is that state for the batch handed out last, the one being
trained: the state a checkpoint stores (:meth:`Trainer.state_dict`). :meth:`ViewBatches.close`
waits for the thread, drops the batch prepared ahead and puts the generator back to
:attr:`~ViewBatches.trained_state`, so after it the generator reads as if there had been no
thread.

``data.prefetch_views: null`` (auto) is :func:`prefetch_by_default`: off, with the figures.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Iterable

import torch

__all__ = ["ViewBatches", "prefetch_by_default"]


def prefetch_by_default(device: torch.device) -> bool:
    """``data.prefetch_views: null`` (auto): off, on every device, for now.

    Measured on the CPU (benchmarks/bench_prefetch.py, results/prefetch.json, BENCHMARKS.md
    "6. GPU ..."): taking the batch and drawing its views is 0.6-1.0% of a step of the built-in
    default job and 3.0-3.5% of a CIFAR-10 step streamed from JPEGs, so even with an idle core
    the thread could save at most that; on the 2-core machine measured (load 3.2-3.9: no idle
    core) the speed-up (median step time off / on, 1 and 2 torch threads) was 0.94-1.06x, within
    the samples' +-10% spread, and 0.92-0.97x with views made heavy (64 px BYOL views, one
    member at width 0.25: 15-16% of a step, ceiling 1.17-1.20x). On CUDA the views are drawn
    on the device, queued behind the step without waiting for it (the loop reads nothing back
    between log steps): a thread would queue the same kernels on the same stream and compete
    for the GIL with the main thread's launches; that side is reasoning, no GPU was available
    to measure it. Turn it on (``data.prefetch_views: true``) where views
    are expensive on the CPU and a core is idle."""
    del device  # one answer for every device until a measurement says otherwise
    return False


Batch = tuple[Any, Any, Any]  # (images, labels, views)


class ViewBatches:
    """``(images, labels, views)`` of every batch of ``batches``, ``views =
    make_views(images)``, which draws from ``generator`` (and nothing else does while this
    iterates); ``background``: prepare the next batch on one worker thread.

    An exception raised while preparing a batch (loading or augmenting) is raised by the
    ``next()`` that asks for that batch, in the caller's thread. Use it in a ``with`` block or
    call :meth:`close` (idempotent) when done or failed; running out closes it too.
    """

    def __init__(self, batches: Iterable, make_views: Callable[[torch.Tensor], Any],
                 generator: torch.Generator, background: bool = True) -> None:
        self._batches = iter(batches)
        self._make_views, self._generator = make_views, generator
        #: the generator's state right after the views of the batch handed out last were drawn
        self.trained_state: torch.Tensor = generator.get_state()
        self._pool = (ThreadPoolExecutor(1, thread_name_prefix="slimssl-views") if background
                      else None)
        self._ahead: Future | None = self._pool.submit(self._prepare) if self._pool else None
        self._done = False

    def _prepare(self) -> tuple[Batch, torch.Tensor] | None:
        try:
            images, labels = next(self._batches)
        except StopIteration:
            return None
        views = self._make_views(images)
        return (images, labels, views), self._generator.get_state()

    def __iter__(self) -> "ViewBatches":
        return self

    def __next__(self) -> Batch:
        if self._done:
            raise StopIteration
        if self._ahead is None:
            item = self._prepare()
        else:
            future, self._ahead = self._ahead, None
            item = future.result()  # re-raises the thread's exception here
            if item is not None:
                self._ahead = self._pool.submit(self._prepare)
        if item is None:
            self.close()
            raise StopIteration
        batch, self.trained_state = item
        return batch

    def close(self) -> None:
        """Wait for the thread (the batch it prepares is dropped, and so is its exception: the
        caller is stopping anyway), end it, close the loader's iterator and put the generator
        back to :attr:`trained_state`."""
        if self._done:
            return
        self._done = True
        if self._ahead is not None:
            wait([self._ahead])
            self._ahead = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        close = getattr(self._batches, "close", None)
        if close is not None:
            close()  # a streamed loader's workers stop now, not when collected
        self._generator.set_state(self.trained_state)

    def __enter__(self) -> "ViewBatches":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Training progress display: a tqdm bar with loss, lr, img/s and ETA.

Why two modes: a live bar is useful in a terminal but fills log files (SLURM, nohup, CI) with
carriage-return garbage. When the stream is not a TTY the main rank prints one plain line every
``print_every`` steps instead; other ranks print nothing (their numbers are the same run).
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Optional

from slimssl.dist import is_main

__all__ = ["Progress", "format_eta"]


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` (or ``?`` when unknown)."""
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Progress over ``total`` steps (e.g. one epoch, or the whole run).

    ``update(n=1, images=batch, loss=..., lr=...)``: ``images`` feeds the img/s rate (a moving
    average with factor ``smoothing``); every other keyword is shown as a postfix.
    ``mode``: ``'auto'`` (bar on a TTY, lines otherwise), ``'bar'``, ``'lines'`` or ``'off'``;
    ranks other than 0 are always ``'off'``.
    """

    def __init__(
        self,
        total: int,
        desc: str = "",
        initial: int = 0,
        print_every: int = 50,
        mode: str = "auto",
        stream: Optional[IO[str]] = None,
        smoothing: float = 0.1,
    ) -> None:
        self.total = int(total)
        self.desc = desc
        self.n = int(initial)
        self.print_every = max(int(print_every), 1)
        self.stream = stream if stream is not None else sys.stderr
        self.smoothing = smoothing
        if not is_main():
            mode = "off"
        elif mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if callable(isatty) and isatty() else "lines"
        if mode not in ("bar", "lines", "off"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self._start = self._last = time.perf_counter()
        self._start_n = self.n
        self._rate: Optional[float] = None  # images / s
        self._step_rate: Optional[float] = None  # steps / s
        self.postfix: dict[str, Any] = {}
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.n, desc=desc, file=self.stream,
                             dynamic_ncols=True, smoothing=smoothing)

    @property
    def images_per_s(self) -> Optional[float]:
        return self._rate

    def eta_seconds(self) -> float:
        left = max(self.total - self.n, 0)
        if self._step_rate:
            return left / self._step_rate
        done = self.n - self._start_n
        elapsed = time.perf_counter() - self._start
        return left * elapsed / done if done > 0 else float("nan")

    def update(self, n: int = 1, images: Optional[int] = None, **postfix: Any) -> None:
        now = time.perf_counter()
        dt = max(now - self._last, 1e-9)
        self._last = now
        self.n += n
        a = self.smoothing
        sr = n / dt
        self._step_rate = sr if self._step_rate is None else (1 - a) * self._step_rate + a * sr
        if images is not None:
            r = images / dt
            self._rate = r if self._rate is None else (1 - a) * self._rate + a * r
        for k, v in postfix.items():
            self.postfix[k] = v.item() if hasattr(v, "item") else v
        if self.mode == "bar":
            assert self._bar is not None
            self._bar.set_postfix_str(self._postfix_str(with_eta=False), refresh=False)
            self._bar.update(n)
        elif self.mode == "lines" and (self.n % self.print_every == 0 or self.n >= self.total):
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        """The status line printed in ``'lines'`` mode."""
        head = f"{self.desc} " if self.desc else ""
        return f"{head}{self.n}/{self.total} {self._postfix_str(with_eta=True)}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _postfix_str(self, with_eta: bool) -> str:
        parts = []
        for k, v in self.postfix.items():
            if isinstance(v, float):
                parts.append(f"{k}={v:.4g}")
            else:
                parts.append(f"{k}={v}")
        if self._rate is not None:
            parts.append(f"img/s={self._rate:.1f}")
        if with_eta:
            parts.append(f"eta={format_eta(self.eta_seconds())}")
        return " ".join(parts)

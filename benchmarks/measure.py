"""Timing blocks and peak memory for the benchmark: what a row costs, separated from what it runs."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import threading
from collections.abc import Callable, Sequence


def _rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        return _status_kib("VmRSS") * 1024


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"{key}:\s+(\d+)", status.read()).group(1))


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _release_freed_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc keeps freed arenas; give them back
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory (MiB) added by the code inside ``with``, above what was held on entry."""

    def __init__(self, device) -> None:
        self.device = device
        self.mib: float | None = None

    def __enter__(self):
        import torch

        _release_freed_memory()
        self._sampled, self._stop = 0, None
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = _rss_bytes()
            if not _reset_peak_rss():  # no VmHWM reset (not Linux): sample RSS instead
                self._stop = threading.Event()
                threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._sampled = max(self._sampled, _rss_bytes())

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self._stop is not None:
            self._stop.set()
            peak = max(self._sampled, _rss_bytes())
        else:
            peak = _status_kib("VmHWM") * 1024
        self.mib = max(peak - self._base, 0) / 2**20


def blocks(steps: Sequence[tuple[float, int, int | None]], warmup: int, size: int):
    """Drop the warm-up steps, then sum (seconds, examples, tokens) over consecutive blocks of ``size``."""
    timed = steps[warmup:]
    out = []
    for start in range(0, len(timed) - size + 1, size):
        chunk = timed[start:start + size]
        tokens = None if any(t is None for _, _, t in chunk) else sum(t for _, _, t in chunk)
        out.append((sum(s for s, _, _ in chunk), sum(n for _, n, _ in chunk), tokens))
    return out


def eval_repeats(run: Callable, rows: list, opts) -> list[tuple[float, int, int]]:
    """One untimed warm-up batch (unless --warmup 0), then ``run`` over every row once per repetition."""
    if opts.warmup:
        run(rows[:opts.batch_size])
    return [run(rows) for _ in range(opts.repeats)]

"""Where a long loop is, for its job's log: ``iteration 7/20 (35%), ~9 min left``.

The time left is extrapolated from this process's own pace (a job resumed from a checkpoint counts from
where it resumed), so it is shown once a first unit has finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    """``total`` units of work named ``unit``; :meth:`line` says how far ``done`` of them is."""

    def __init__(self, total: int, unit: str = "iteration", clock: Callable[[], float] = time.monotonic):
        if total < 1:
            raise ValueError(f"Progress: total must be at least 1 {unit}, got {total}")
        self.total, self.unit, self.clock = int(total), unit, clock
        self.start: tuple[int, float] | None = None  # (done, time) at the first line: the pace's origin

    def line(self, done: int) -> str:
        now = self.clock()
        if self.start is None:
            self.start = (done, now)
        text = f"{self.unit} {done}/{self.total} ({100 * done / self.total:.0f}%)"
        first, since = self.start
        if done > first and done < self.total:
            left = (now - since) / (done - first) * (self.total - done)
            text += f", ~{_duration(left)} left"
        return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

"""Schedules for exploration rates and learning rates: ``value = schedule(step)``, held at ``end`` afterwards.

    linear:       v(t) = start + (end - start) * min(t / duration, 1)
    exponential:  v(t) = start * (end / start) ** min(t / duration, 1)    (geometric, start and end > 0)
"""

from __future__ import annotations

from collections.abc import Callable


def linear_schedule(start: float, end: float, duration: int) -> Callable[[int], float]:
    """Straight line from ``start`` at step 0 to ``end`` at step ``duration``."""
    if duration < 1:
        raise ValueError(f"duration must be >= 1, got {duration}")

    def schedule(step: int) -> float:
        return start + (end - start) * min(max(step, 0) / duration, 1.0)

    return schedule


def exponential_schedule(start: float, end: float, duration: int) -> Callable[[int], float]:
    """Constant-ratio decay from ``start`` at step 0 to ``end`` at step ``duration``."""
    if duration < 1:
        raise ValueError(f"duration must be >= 1, got {duration}")
    if start <= 0 or end <= 0:
        raise ValueError(f"exponential_schedule needs start and end > 0, got start={start}, end={end}")

    def schedule(step: int) -> float:
        return start * (end / start) ** min(max(step, 0) / duration, 1.0)

    return schedule

"""Waits that a remote service asks for: ``Retry-After`` and its relatives, made safe.

A header is data from the network: it may be ``nan``, ``inf``, ``1e12``, negative,
an HTTP date or garbage. Whatever it says, the wait used is finite, at least
``minimum`` and at most ``maximum``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

LONGEST_WAIT = 3600.0
SHORTEST_WAIT = 1.0


def parse_retry_after(
    value: str | None,
    *,
    default: float,
    scale: float = 1.0,
    minimum: float = SHORTEST_WAIT,
    maximum: float = LONGEST_WAIT,
    now: Callable[[], float] = time.time,
) -> float:
    """Seconds to wait: a number of ``scale`` units or an HTTP date, else ``default``; clamped."""
    seconds = _seconds(value, scale, now)
    if seconds is None:
        seconds = default
    return clamp_wait(seconds, minimum=minimum, maximum=maximum)


def clamp_wait(
    seconds: float, *, minimum: float = SHORTEST_WAIT, maximum: float = LONGEST_WAIT
) -> float:
    """``seconds`` within [minimum, maximum]; NaN counts as the minimum."""
    if math.isnan(seconds):
        return minimum
    return min(max(seconds, minimum), maximum)


def _seconds(value: str | None, scale: float, now: Callable[[], float]) -> float | None:
    text = (value or "").strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return number / scale if math.isfinite(number) else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp() - now()

"""Wall-clock timing for the benchmark scripts: one untimed warm-up call, then a median."""

from __future__ import annotations

import statistics
import time


def timed_median(fn, repeats: int) -> tuple[float, object]:
  """(median wall time of `fn()` over `repeats` runs after one untimed warm-up, last result)."""
  out = fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), out


def median_time(fn, repeats: int) -> float:
  """Median wall time of `fn()` over `repeats` runs after one untimed warm-up run."""
  return timed_median(fn, repeats)[0]

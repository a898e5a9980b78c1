"""What the benchmark scripts share: wall-clock timing (one untimed warm-up call, then a median)
and batches of random tokens shaped like the pipeline's."""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np


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


def random_batches(config, count: int, seed: int = 0):
  """Host batches of uniform random tokens, like the pipeline's: [B, T] int32 inputs/targets."""
  rng = np.random.default_rng(seed)
  shape = (config.train.batch_size // jax.process_count(), config.data.seq_len)
  make = lambda: rng.integers(0, config.model.vocab_size, shape, dtype=np.int32)
  return [{'inputs': make(), 'targets': make()} for _ in range(count)]

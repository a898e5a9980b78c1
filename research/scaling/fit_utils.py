"""Shared pieces of the scaling-law fits: argument checks, log-log regression and the bootstrap.

Every fit resamples its runs, refits, and reports percentile intervals. By default a replicate
draws n runs with replacement; `subsample=0.8` instead draws 80% of the runs without
replacement, the scheme of Hoffmann et al. (2022), Table 2 (100 replicates, 10th-90th
percentiles: `n_bootstrap=100, confidence=0.8`).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Sequence

import numpy as np

try:
  from threadpoolctl import threadpool_limits
except ImportError:  # without it, BLAS may use many threads on the optimisers' tiny matrices
  threadpool_limits = None


def single_threaded():
  """A context keeping BLAS to one thread: the optimisers' tiny matrices only lose to threads."""
  if threadpool_limits is None:
    return contextlib.nullcontext()
  return threadpool_limits(limits=1)


def as_array(name: str, values, *, positive: bool = False) -> np.ndarray:
  """A finite float64 1-D array, or a ValueError naming `name` and the first offending entry."""
  try:
    array = np.asarray(values, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{name}: expected numbers, got {values!r:.80}') from e
  if array.ndim == 0:
    raise ValueError(f'{name}: expected a 1-D array, got the scalar {array.item()!r}')
  if array.ndim != 1:
    raise ValueError(f'{name}: expected a 1-D array, got shape {array.shape}')
  bad = ~np.isfinite(array) | ((array <= 0) if positive else False)
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    need = 'finite and > 0' if positive else 'finite'
    raise ValueError(f'{name}[{i}] = {float(array[i])!r}: every entry must be {need}')
  return array


def positive_columns(**columns) -> tuple[np.ndarray, ...]:
  """Each named column as a finite, positive float64 1-D array, all of one length (in the order
  given); a ValueError names the first offending column or lists the lengths."""
  arrays = tuple(as_array(name, values, positive=True) for name, values in columns.items())
  same_length(**dict(zip(columns, arrays)))
  return arrays


def same_length(**arrays: np.ndarray) -> int:
  """The common length of the named arrays, or a ValueError listing each one's length."""
  lengths = {name: len(a) for name, a in arrays.items()}
  if len(set(lengths.values())) > 1:
    detail = ', '.join(f'{name} has {n}' for name, n in lengths.items())
    raise ValueError(f'arrays must have the same length: {detail}')
  return next(iter(lengths.values()))


def check_bootstrap(n_bootstrap: int, confidence: float, subsample: float | None) -> None:
  """Rejects a negative replicate count, a confidence outside (0, 1) or a subsample outside (0, 1]."""
  if not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
    raise ValueError(f'n_bootstrap={n_bootstrap!r}: must be an integer >= 0')
  if not 0 < confidence < 1:
    raise ValueError(f'confidence={confidence!r}: must lie strictly between 0 and 1')
  if subsample is not None and not 0 < subsample <= 1:
    raise ValueError(f'subsample={subsample!r}: must be a fraction in (0, 1], or None')


def power_law(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
  """(exponent, log coefficient) of y = k x^p by least squares of log y on log x."""
  slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
  return float(slope), float(intercept)


def resample(rng: np.random.Generator, n: int, subsample: float | None,
             groups: np.ndarray | None) -> np.ndarray:
  """Indices of one replicate, drawn within each group when `groups` labels the runs."""
  if groups is None:
    strata = [np.arange(n)]
  else:
    strata = [np.flatnonzero(groups == g) for g in np.unique(groups)]
  picks = []
  for members in strata:
    if subsample is None:
      picks.append(rng.choice(members, size=len(members), replace=True))
    else:
      size = max(1, int(round(subsample * len(members))))
      picks.append(rng.choice(members, size=size, replace=False))
  return np.concatenate(picks)


def bootstrap(refit: Callable[[np.ndarray], Sequence[float]], n: int, *, n_bootstrap: int,
              seed: int, subsample: float | None = None,
              groups: np.ndarray | None = None) -> np.ndarray:
  """Statistics of `refit(indices)` over replicates, shape (replicates, statistics).

  A replicate whose refit raises ValueError (a degenerate resample, e.g. a budget left with
  fewer than three model sizes) or returns a non-finite value is dropped; a warning says how
  many were.
  """
  rng = np.random.default_rng(seed)
  rows, failed = [], 0
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    for _ in range(n_bootstrap):
      try:
        row = np.asarray(refit(resample(rng, n, subsample, groups)), dtype=np.float64)
      except ValueError:
        row = None
      if row is None or not np.all(np.isfinite(row)):
        failed += 1
      else:
        rows.append(row)
  if failed:
    warnings.warn(f'{failed} of {n_bootstrap} bootstrap replicates could not be fitted and '
                  'were dropped', stacklevel=3)
  if not rows:
    return np.empty((0, 0))
  return np.stack(rows)


def intervals(names: Sequence[str], samples: np.ndarray,
              confidence: float) -> tuple[dict, dict]:
  """({name: (low, high)} percentile intervals, {name: samples}); NaN without replicates."""
  tail = 50 * (1 - confidence)
  ci, by_name = {}, {}
  for j, name in enumerate(names):
    column = samples[:, j] if samples.size else np.empty(0)
    by_name[name] = column
    if column.size:
      low, high = np.percentile(column, [tail, 100 - tail])
      ci[name] = (float(low), float(high))
    else:
      ci[name] = (float('nan'), float('nan'))
  return ci, by_name


def band(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
  """Pointwise percentile band of `values` (replicates x points); NaN without replicates."""
  if values.size == 0:
    nan = np.full(values.shape[1:], np.nan)
    return nan, nan
  tail = 50 * (1 - confidence)
  low, high = np.percentile(values, [tail, 100 - tail], axis=0)
  return low, high


def scalar_or_array(value: np.ndarray, like):
  """A float when the caller passed a scalar, else the array."""
  return float(value) if np.ndim(like) == 0 else value

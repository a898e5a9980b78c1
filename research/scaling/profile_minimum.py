"""The minimum of one profile (loss against log N, or log of a hyperparameter, at a fixed
budget), and whether the values trained bracket it.

Two estimates: a parabola in log N through every run (Hoffmann et al. 2022, Approach 2), whose
vertex may lie outside the sizes trained, and an Akima interpolation of loss against log N
searched for its minimum within the sizes trained (Porian et al. 2024), which never leaves them.
A minimum is bracketed when the sizes trained lie on both sides of it: the lowest loss is not at
the smallest or largest size, and (for the parabola) the vertex lies within the sizes. An
unbracketed minimum is an extrapolation (parabola) or a bound (Akima), not a measurement.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import interpolate

METHODS = ('parabola', 'akima')
MAX_SUGGESTED_SIZES = 4


@dataclasses.dataclass(frozen=True)
class ProfileMinimum:
  """One budget's minimum: `log_n_opt` and `loss_opt`, `bracketed`, `side` ('below' or 'above'
  the sizes trained when not bracketed, else ''), the parabola's `coefficients` (c2, c1, c0;
  NaN for Akima) and the profile's distinct sizes and mean losses (`log_n`, `loss`)."""
  method: str
  log_n_opt: float
  loss_opt: float
  bracketed: bool
  side: str
  coefficients: np.ndarray
  log_n: np.ndarray
  loss: np.ndarray

  def predict(self, log_n):
    """The fitted profile at `log_n` (the Akima curve is only defined within the sizes)."""
    log_n = np.asarray(log_n, dtype=np.float64)
    if self.method == 'parabola':
      return np.polyval(self.coefficients, log_n)
    return _akima(self.log_n, self.loss)(log_n)


def _mean_by_size(log_n: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Distinct sizes in increasing order and the mean loss of the runs at each."""
  sizes, inverse = np.unique(log_n, return_inverse=True)
  return sizes, np.bincount(inverse, weights=loss) / np.bincount(inverse)


def _akima(log_n: np.ndarray, loss: np.ndarray):
  return interpolate.Akima1DInterpolator(log_n, loss, extrapolate=False)


def _side(sizes: np.ndarray, means: np.ndarray, log_n_opt: float) -> str:
  """'' if bracketed, else on which side of the sizes trained the minimum lies."""
  lowest = int(np.argmin(means))
  if lowest == 0 or log_n_opt < sizes[0]:
    return 'below'
  if lowest == len(sizes) - 1 or log_n_opt > sizes[-1]:
    return 'above'
  return ''


def profile_minimum(log_n, loss, budget: float, method: str = 'parabola') -> ProfileMinimum:
  """The minimum of the profile with runs at `log_n` (natural log of N) and final `loss`.

  Raises ValueError naming the budget if it has fewer than 3 distinct sizes, or (parabola) if
  loss is not convex in log N.
  """
  if method not in METHODS:
    raise ValueError(f'method={method!r}: expected one of {METHODS}')
  log_n, loss = np.asarray(log_n, dtype=np.float64), np.asarray(loss, dtype=np.float64)
  sizes, means = _mean_by_size(log_n, loss)
  if len(sizes) < 3:
    raise ValueError(f'budget C={budget:.4g}: a minimum needs at least 3 distinct model sizes, '
                     f'got {len(sizes)}')
  if method == 'parabola':
    coefficients = np.polyfit(log_n, loss, 2)
    c2, c1, c0 = coefficients
    if not c2 > 0:
      raise ValueError(f'budget C={budget:.4g}: loss against log N is not convex '
                       f'(c2 = {c2:.3g}): no minimum; train model sizes on both sides of the '
                       'optimum')
    log_n_opt = -c1 / (2 * c2)
    loss_opt = c0 - c1 ** 2 / (4 * c2)
  else:
    coefficients = np.full(3, np.nan)
    curve = _akima(sizes, means)
    candidates = np.concatenate([sizes, curve.derivative().roots(extrapolate=False)])
    candidates = candidates[np.isfinite(candidates)]
    values = curve(candidates)
    best = int(np.nanargmin(values))
    log_n_opt, loss_opt = float(candidates[best]), float(values[best])
  side = _side(sizes, means, log_n_opt)
  return ProfileMinimum(method, float(log_n_opt), float(loss_opt), not side, side,
                        coefficients, sizes, means)


def _short(n: float) -> str:
  """1234567 -> '1.23M'; 0.003 -> '0.003'."""
  for scale, suffix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if n >= scale:
      return f'{n / scale:.3g}{suffix}'
  return f'{n:.3g}'


def suggested_sizes(minimum: ProfileMinimum) -> list[float]:
  """Values (model sizes N, or of a hyperparameter) to train so the profile brackets its
  minimum: continuing the profile's own spacing past its smallest (or largest) value, far enough
  to pass the parabola's vertex when that lies outside; empty when already bracketed."""
  if minimum.bracketed:
    return []
  sizes = minimum.log_n
  step = max(float(np.median(np.diff(sizes))), math.log(1.3))
  edge = sizes[0] if minimum.side == 'below' else sizes[-1]
  beyond = abs(minimum.log_n_opt - edge) if minimum.method == 'parabola' else 0.0
  count = min(MAX_SUGGESTED_SIZES, max(2, math.ceil(beyond / step) + 1))
  sign = -1 if minimum.side == 'below' else 1
  return [float(math.exp(edge + sign * step * k)) for k in range(1, count + 1)]


def advice(minimum: ProfileMinimum, budget: float, name: str = 'N', noun: str = 'size',
           group: str = 'budget C') -> str:
  """One line: why the budget's minimum is not a measurement and which values of `name` (the
  profile's x, a model size by default) would bracket it; `group` names what the profile is at
  (a budget C, or e.g. a width)."""
  sizes = suggested_sizes(minimum)
  if not sizes:
    return ''
  edge = minimum.log_n[0] if minimum.side == 'below' else minimum.log_n[-1]
  where = 'smallest' if minimum.side == 'below' else 'largest'
  outside = (minimum.log_n_opt < edge) if minimum.side == 'below' else (minimum.log_n_opt > edge)
  if minimum.method == 'parabola' and outside:
    why = (f"the parabola's minimum {name}={_short(math.exp(minimum.log_n_opt))} lies "
           f'{minimum.side} the {noun}s trained')
  else:
    why = f'the lowest loss is at the {where} {noun} trained'
  runs = 'models' if name == 'N' else 'runs'
  return (f'{group}={budget:.4g}: {why} ({name}={_short(math.exp(edge))}); to bracket it add '
          f'{runs} of about {name}=' + ', '.join(_short(n) for n in sizes))

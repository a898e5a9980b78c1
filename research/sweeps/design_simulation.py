"""How wide will a's interval be? IsoFLOP designs simulated against the profiles a sweep measured.

The truth at each budget is a cubic in log N through the measured runs, which keeps the
asymmetry a parabola misses (at small budgets the loss climbs faster on the large-model side);
beyond the sizes trained it continues with the end's slope and curvature. A design places
`num_sizes` targets log-spaced over `span` around a centre per budget, snapped to the sizes a
shape family offers. Each replicate adds Gaussian noise to the truth at the design's points and
refits Approach 2 (and optionally 3) with the bootstrap the fits use; the result is the spread of
a's 95% half-width (the larger side) over replicates. `run_costs` predicts a design's wall time
from the same sweep's measured run times.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Sequence

import numpy as np

from research.scaling import chinchilla
from research.sweeps import generators


def profile_truths(N, loss, C) -> dict[float, Callable[[float], float]]:
  """{budget: loss(N)}: per budget (4 or more sizes), a cubic in log N through its runs."""
  N, loss, C = (np.asarray(x, dtype=np.float64) for x in (N, loss, C))
  truths = {}
  for budget in np.unique(C):
    at = C == budget
    if np.unique(N[at]).size < 4:
      raise ValueError(f'budget C={budget:.3g}: a cubic truth needs runs of 4 or more sizes, got '
                       f'{np.unique(N[at]).size}')
    x = np.log(N[at])
    truths[float(budget)] = _cubic_truth(np.polyfit(x, loss[at], 3), x.min(), x.max())
  return truths


def _cubic_truth(coefficients, low: float, high: float) -> Callable[[float], float]:
  slope, curvature = np.polyder(coefficients), np.polyder(coefficients, 2)

  def loss_at(n: float) -> float:
    x = float(np.log(n))
    if low <= x <= high:
      return float(np.polyval(coefficients, x))
    end = low if x < low else high  # continue as a parabola, never bending back down
    bend = max(float(np.polyval(curvature, end)), 0.0)
    dx = x - end
    return float(np.polyval(coefficients, end) + np.polyval(slope, end) * dx + 0.5 * bend * dx**2)
  return loss_at


def design_points(centres: dict[float, float], num_sizes: int, spans: dict[float, float],
                  sizes: Sequence[float]) -> list[tuple[float, float]]:
  """[(C, N)]: per budget, `num_sizes` targets from centre/sqrt(span) to centre*sqrt(span),
  each the nearest of `sizes` in log N; a size two targets share is trained once."""
  sizes = np.sort(np.asarray(sizes, dtype=np.float64))
  points = []
  for budget, centre in centres.items():
    chosen = []
    for target in generators.log_spaced_targets(centre, num_sizes, spans[budget]):
      n = float(sizes[np.argmin(np.abs(np.log(sizes / target)))])
      if n not in chosen:
        chosen.append(n)
    points += [(float(budget), n) for n in chosen]
  return points


def equal_rise_spans(truths: dict, centres: dict[float, float], rise: float) -> dict[float, float]:
  """Per budget, the span whose ends sit `rise` nats above the profile's minimum, read from the
  truth's curvature at the centre: span = exp(2 sqrt(rise / k)), loss ~ k (ln N - ln N_opt)^2."""
  spans = {}
  for budget, centre in centres.items():
    h = 0.05  # second difference in ln N
    f = truths[budget]
    k = (f(centre * np.exp(h)) - 2 * f(centre) + f(centre * np.exp(-h))) / (2 * h * h)
    if k <= 0:
      raise ValueError(f'budget C={budget:.3g}: the profile is not convex at N={centre:.3g}')
    spans[budget] = float(np.exp(2 * np.sqrt(rise / k)))
  return spans


@dataclasses.dataclass(frozen=True)
class Simulated:
  """Approach 2's (and 3's, if simulated) 95% half-width of a per replicate (NaN: no fit)."""
  points: list
  approach2: np.ndarray
  approach3: np.ndarray | None
  a2: np.ndarray  # the fitted exponent per replicate


def simulate(points, truths, *, noise: float, replicates: int, n_bootstrap: int = 200,
             approach3: bool = False, seed: int = 0) -> Simulated:
  """Fits of `replicates` noisy draws of the truth at `points` ([(C, N)] with D = C / (6 N))."""
  C = np.array([c for c, _ in points])
  N = np.array([n for _, n in points])
  D = C / (6 * N)
  exact = np.array([truths[c](n) for c, n in points])
  half2, half3, a2 = [], [], []
  for rep in range(replicates):
    loss = exact + noise * np.random.default_rng(seed + rep).standard_normal(len(points))
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      try:
        fit = chinchilla.fit_isoflop(N, D, loss, C, n_bootstrap=n_bootstrap,
                                     skip_bad_budgets=True, seed=seed + rep)
        half2.append(_half_width(fit))
        a2.append(fit.a)
      except ValueError:  # too few budgets bracketed in this draw
        half2.append(np.nan)
        a2.append(np.nan)
      if approach3:
        fit = chinchilla.fit_parametric(N, D, loss, n_bootstrap=min(n_bootstrap, 100),
                                        seed=seed + rep)
        half3.append(_half_width(fit))
  return Simulated(points, np.array(half2), np.array(half3) if approach3 else None, np.array(a2))


def _half_width(fit) -> float:
  low, high = fit.ci['a']
  return float(max(fit.a - low, high - fit.a))


def run_costs(N, steps, loop_s, process_s) -> tuple[float, float, float]:
  """(fixed s, s per step, s per step per parameter) from measured runs: loop time = steps x
  (a + b N) by least squares; fixed = the mean of process time minus loop time."""
  N, steps, loop_s, process_s = (np.asarray(x, dtype=np.float64)
                                 for x in (N, steps, loop_s, process_s))
  (a, b), *_ = np.linalg.lstsq(np.c_[steps, steps * N], loop_s, rcond=None)
  return float(np.mean(process_s - loop_s)), float(a), float(b)


def predicted_seconds(points, costs, tokens_per_step: int, lanes: int = 2) -> float:
  """Wall time of the design's runs on `lanes` lanes, from `run_costs`' (fixed, a, b)."""
  fixed, a, b = costs
  total = sum(fixed + c / (6 * n) / tokens_per_step * (a + b * n) for c, n in points)
  return total / lanes

"""Kaplan et al. (2020) scaling laws: L(N), L(D), L(C_min) and the joint L(N, D).

  L(N) = (N_c / N)^alpha_N          (eq. 1.1; N = non-embedding parameters in the paper)
  L(D) = (D_c / D)^alpha_D          (eq. 1.2; D = tokens)
  L(C) = (C_c / C)^alpha_C          (eq. 1.3, fitted to the lower envelope of loss vs compute)
  L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D      (eq. 1.5)

each optionally with an irreducible term, L = E + ... (Henighan et al. 2020's form).

Choices the paper leaves open, made here: the fit minimises squared error of log L (so every
point weighs the same in relative error); constants are in the units given (the paper quotes C in
PF-days: 1 PF-day = 8.64e19 FLOPs); L(C) is fitted to the compute the runs used, without the
paper's C_min adjustment for the critical batch size. Which runs to fit is the caller's choice:
the paper fits L(N) to models trained near convergence and L(D) to the largest model stopped
early; `lowest_loss_per` picks, for each distinct N (or D), the run with the lowest loss.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from scipy import optimize

from research.scaling import fit_utils

# Published values (Kaplan et al. 2020, section 1.2 and table 2), for comparisons and tests.
KAPLAN_N = {'alpha': 0.076, 'x_c': 8.8e13}
KAPLAN_D = {'alpha': 0.095, 'x_c': 5.4e13}
KAPLAN_C = {'alpha': 0.050, 'x_c': 3.1e8}  # C_c in PF-days
KAPLAN_ND = {'alpha_N': 0.076, 'alpha_D': 0.103, 'N_c': 6.4e13, 'D_c': 1.8e13}


@dataclasses.dataclass(frozen=True, eq=False)
class PowerLawFit:
  """L(x) = E + (x_c / x)^alpha fitted to loss against one scale variable x ('N', 'D' or 'C').

  `ci` maps each parameter to its bootstrap percentile interval and `samples` to its replicates;
  `x` and `loss` are the points fitted (for L(C), those on the lower envelope).
  """
  variable: str
  x_c: float
  alpha: float
  E: float
  irreducible: bool
  ci: dict
  samples: dict
  confidence: float
  x: np.ndarray
  loss: np.ndarray

  def predict(self, x):
    """The fitted loss at scale x (scalar or array)."""
    x = np.asarray(x, dtype=np.float64)
    return fit_utils.scalar_or_array(self.E + (self.x_c / x) ** self.alpha, x)

  def as_dict(self) -> dict:
    """Parameters and intervals as plain floats (for JSON)."""
    v = self.variable
    out = {'law': f'L({v}) = {"E + " if self.irreducible else ""}({v}_c / {v})^alpha',
           'alpha': self.alpha, f'{v}_c': self.x_c, 'irreducible': self.irreducible,
           'confidence': self.confidence, 'ci': _renamed_ci(self.ci, {'x_c': f'{v}_c'}),
           'points': len(self.x)}
    if self.irreducible:
      out['E'] = self.E
    else:
      out['ci'].pop('E', None)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class JointFit:
  """L(N, D) = E + [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D (Kaplan et al. eq. 1.5)."""
  N_c: float
  D_c: float
  alpha_N: float
  alpha_D: float
  E: float
  irreducible: bool
  ci: dict
  samples: dict
  confidence: float
  N: np.ndarray
  D: np.ndarray
  loss: np.ndarray

  def predict(self, N, D):
    """The fitted loss of N parameters trained on D tokens."""
    N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
    inner = (self.N_c / N) ** (self.alpha_N / self.alpha_D) + self.D_c / D
    return fit_utils.scalar_or_array(self.E + inner ** self.alpha_D, N + D)

  def as_dict(self) -> dict:
    """Parameters and intervals as plain floats (for JSON)."""
    out = {'law': f'L(N, D) = {"E + " if self.irreducible else ""}'
                  '[(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D',
           'alpha_N': self.alpha_N, 'alpha_D': self.alpha_D, 'N_c': self.N_c, 'D_c': self.D_c,
           'irreducible': self.irreducible, 'confidence': self.confidence, 'ci': dict(self.ci),
           'points': len(self.N)}
    if self.irreducible:
      out['E'] = self.E
    else:
      out['ci'].pop('E', None)
    return out


def _renamed_ci(ci: dict, names: dict) -> dict:
  """`ci` with keys renamed by `names` (x_c becomes N_c, D_c or C_c)."""
  return {names.get(k, k): v for k, v in ci.items()}


def lowest_loss_per(values, loss) -> np.ndarray:
  """Indices of the lowest-loss run for each distinct value (e.g. each model size N)."""
  values, loss = np.asarray(values, dtype=np.float64), np.asarray(loss, dtype=np.float64)
  picks = []
  for v in np.unique(values):
    members = np.flatnonzero(values == v)
    picks.append(members[np.argmin(loss[members])])
  return np.array(picks, dtype=int)


def lower_envelope(C, loss) -> np.ndarray:
  """Indices of the points lower than every point of smaller compute, in order of compute."""
  C, loss = np.asarray(C, dtype=np.float64), np.asarray(loss, dtype=np.float64)
  order = np.lexsort((loss, C))
  keep, best = [], np.inf
  for i in order:
    if loss[i] < best:
      keep.append(i)
      best = loss[i]
  return np.array(keep, dtype=int)


def _fit_power(log_x: np.ndarray, log_loss: np.ndarray, irreducible: bool) -> np.ndarray:
  """(log x_c, alpha, E) minimising the squared error of log L."""
  centre = log_x.mean()
  u = log_x - centre
  if np.ptp(log_x) == 0:
    raise ValueError('the scale variable takes a single value: nothing to fit a power law to')
  if not irreducible:
    slope, intercept = np.polyfit(u, log_loss, 1)
    alpha = -slope
    if alpha <= 0:
      raise ValueError(f'loss does not fall with scale (fitted alpha = {alpha:.3g})')
    return np.array([centre + intercept / alpha, alpha, 0.0])

  loss = np.exp(log_loss)

  def residuals(p):  # p = (c, alpha, E): power term exp(c - alpha u)
    return np.log(p[2] + np.exp(p[0] - p[1] * u)) - log_loss

  best = None
  for fraction in (0.0, 0.3, 0.6, 0.9):
    e0 = fraction * loss.min()
    slope, intercept = np.polyfit(u, np.log(loss - e0), 1)
    start = np.array([intercept, max(-slope, 1e-3), e0])
    result = optimize.least_squares(residuals, start, bounds=([-np.inf, 0, 0], np.inf),
                                    x_scale='jac', method='trf')
    if best is None or result.cost < best.cost:
      best = result
  c, alpha, e = best.x
  if alpha <= 0:
    raise ValueError(f'loss does not fall with scale (fitted alpha = {alpha:.3g})')
  return np.array([centre + c / alpha, alpha, e])


def _fit_points(variable: str, x: np.ndarray, loss: np.ndarray, irreducible: bool,
                n_bootstrap: int, seed: int, confidence: float,
                subsample: float | None) -> PowerLawFit:
  """Fits the power law to all points and bootstraps over them."""
  fit_utils.check_bootstrap(n_bootstrap, confidence, subsample)
  minimum = 4 if irreducible else 3

  def fit(idx):
    if len(np.unique(x[idx])) < minimum:
      raise ValueError(f'{variable}: need at least {minimum} distinct values to fit '
                       f'{"E + " if irreducible else ""}({variable}_c/{variable})^alpha, got '
                       f'{len(np.unique(x[idx]))}')
    return _fit_power(np.log(x[idx]), np.log(loss[idx]), irreducible)

  with fit_utils.single_threaded():
    log_xc, alpha, e = fit(np.arange(len(x)))
    samples = fit_utils.bootstrap(fit, len(x), n_bootstrap=n_bootstrap, seed=seed,
                                  subsample=subsample)
  if samples.size:
    samples = np.column_stack([np.exp(samples[:, 0]), samples[:, 1], samples[:, 2]])
  ci, by_name = fit_utils.intervals(['x_c', 'alpha', 'E'], samples, confidence)
  return PowerLawFit(variable, float(np.exp(log_xc)), float(alpha), float(e), irreducible, ci,
                     by_name, confidence, x, loss)


def fit_kaplan_n(N, loss, *, irreducible: bool = False, n_bootstrap: int = 200, seed: int = 0,
                 confidence: float = 0.95, subsample: float | None = None) -> PowerLawFit:
  """L(N) = [E +] (N_c / N)^alpha_N through the given (N, loss) points (eq. 1.1)."""
  N, loss = fit_utils.positive_columns(N=N, loss=loss)
  return _fit_points('N', N, loss, irreducible, n_bootstrap, seed, confidence, subsample)


def fit_kaplan_d(D, loss, *, irreducible: bool = False, n_bootstrap: int = 200, seed: int = 0,
                 confidence: float = 0.95, subsample: float | None = None) -> PowerLawFit:
  """L(D) = [E +] (D_c / D)^alpha_D through the given (D, loss) points (eq. 1.2)."""
  D, loss = fit_utils.positive_columns(D=D, loss=loss)
  return _fit_points('D', D, loss, irreducible, n_bootstrap, seed, confidence, subsample)


def fit_kaplan_c(C, loss, *, irreducible: bool = False, n_bootstrap: int = 200, seed: int = 0,
                 confidence: float = 0.95, subsample: float | None = None) -> PowerLawFit:
  """L(C) = [E +] (C_c / C)^alpha_C through the lower envelope of (C, loss) (eq. 1.3).

  Points may be final losses or whole training curves (compute and loss at each logged step).
  The envelope keeps each point whose loss is below that of every point of smaller compute; it
  is taken once, from all points, and the bootstrap resamples its points (resampling runs before
  taking a minimum over them would lift the envelope and bias alpha_C upward).
  """
  C, loss = fit_utils.positive_columns(C=C, loss=loss)
  keep = lower_envelope(C, loss)
  return _fit_points('C', C[keep], loss[keep], irreducible, n_bootstrap, seed, confidence,
                     subsample)


def _joint_log_loss(p: np.ndarray, log_n: np.ndarray, log_d: np.ndarray,
                    irreducible: bool) -> np.ndarray:
  """log L(N, D) for p = (alpha_N, alpha_D, log N_c, log D_c[, E])."""
  alpha_n, alpha_d, log_nc, log_dc = p[:4]
  inner = np.logaddexp(alpha_n / alpha_d * (log_nc - log_n), log_dc - log_d)
  if not irreducible:
    return alpha_d * inner
  return np.log(p[4] + np.exp(alpha_d * inner))


def _joint_starts(N, D, loss, irreducible):
  """Starting points: for a grid of exponents, N_c and D_c by non-negative least squares on
  L^(1/alpha_D) = N_c^p N^-p + D_c / D (p = alpha_N / alpha_D), which is linear in both."""
  grid = (0.03, 0.05, 0.08, 0.12, 0.2, 0.35, 0.5)
  starts = []
  for e0 in ((0.0, 0.5 * loss.min()) if irreducible else (0.0,)):
    for alpha_n, alpha_d in itertools.product(grid, grid):
      p = alpha_n / alpha_d
      target = (loss - e0) ** (1 / alpha_d)
      columns = np.column_stack([N ** -p, 1 / D])
      scale = np.linalg.norm(columns, axis=0)
      if not np.all(np.isfinite(target)) or not np.all(np.isfinite(scale)) or np.any(scale == 0):
        continue
      weights, _ = optimize.nnls(columns / scale / target[:, None], np.ones_like(target))
      u, v = weights / scale
      if u <= 0 or v <= 0:
        continue
      start = [alpha_n, alpha_d, np.log(u) / p, np.log(v)] + ([e0] if irreducible else [])
      start = np.array(start)
      cost = np.sum((_joint_log_loss(start, np.log(N), np.log(D), irreducible)
                     - np.log(loss)) ** 2)
      if np.isfinite(cost):
        starts.append((cost, start))
  starts.sort(key=lambda s: s[0])
  return [s for _, s in starts[:4]]


def _fit_joint(N, D, loss, irreducible, start=None) -> np.ndarray:
  """(alpha_N, alpha_D, log N_c, log D_c[, E]) from `start`, else from the best grid starts."""
  log_n, log_d, log_loss = np.log(N), np.log(D), np.log(loss)
  lower = [1e-6, 1e-6, -np.inf, -np.inf] + ([0.0] if irreducible else [])
  best = None
  starts = [start] if start is not None else _joint_starts(N, D, loss, irreducible)
  if not starts:
    raise ValueError('L(N, D): no starting point fits the data (does loss fall with N and D?)')
  for start in starts:
    result = optimize.least_squares(
        lambda p: _joint_log_loss(p, log_n, log_d, irreducible) - log_loss, start,
        bounds=(lower, np.inf), x_scale='jac', method='trf')
    if best is None or result.cost < best.cost:
      best = result
  return best.x


def fit_kaplan_nd(N, D, loss, *, irreducible: bool = False, n_bootstrap: int = 200,
                  seed: int = 0, confidence: float = 0.95,
                  subsample: float | None = None) -> JointFit:
  """L(N, D) = [E +] [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (eq. 1.5) through all runs.

  Least squares on log L (scipy's trust-region solver, exponents kept positive) from the best
  few starting points of a grid over (alpha_N, alpha_D) where N_c and D_c are solved linearly;
  bootstrap replicates start from the full-data fit.
  """
  N, D, loss = fit_utils.positive_columns(N=N, D=D, loss=loss)
  n = len(N)
  fit_utils.check_bootstrap(n_bootstrap, confidence, subsample)
  minimum = 6 if irreducible else 5

  def fit(idx, start=None):
    if len(np.unique(N[idx])) < 2 or len(np.unique(D[idx])) < 2 or len(idx) < minimum:
      raise ValueError(f'L(N, D): need at least {minimum} runs spanning at least 2 values of N '
                       f'and 2 of D, got {len(idx)} runs, {len(np.unique(N[idx]))} N and '
                       f'{len(np.unique(D[idx]))} D')
    return _fit_joint(N[idx], D[idx], loss[idx], irreducible, start)

  def natural(p):
    return [p[0], p[1], np.exp(p[2]), np.exp(p[3]), p[4] if irreducible else 0.0]

  with fit_utils.single_threaded():
    full = fit(np.arange(n))
    alpha_n, alpha_d, n_c, d_c, e = natural(full)
    samples = fit_utils.bootstrap(lambda idx: natural(fit(idx, full)), n,
                                  n_bootstrap=n_bootstrap, seed=seed, subsample=subsample)
  ci, by_name = fit_utils.intervals(['alpha_N', 'alpha_D', 'N_c', 'D_c', 'E'], samples,
                                    confidence)
  return JointFit(float(n_c), float(d_c), float(alpha_n), float(alpha_d), float(e), irreducible,
                  ci, by_name, confidence, N, D, loss)

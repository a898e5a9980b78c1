"""Data-constrained scaling (Muennighoff et al. 2023): the loss of runs that repeat U unique tokens.

Repeated tokens are worth less than fresh ones. With R = D / U - 1 repetitions after the first
epoch, the effective data is D' = U + U R* (1 - exp(-R / R*)): the first few repetitions count
almost fully, and past R* they stop helping. The loss is Chinchilla's form with D' for D,
L = E + A / N^alpha + B / D'^beta. As in the paper, the fit has two stages: E, A, B, alpha, beta
from runs of at most one epoch (`chinchilla.fit_parametric`), then R* from the repeated runs with
those fixed, by the same Huber loss on log L. The Chinchilla form itself (D' = D: repeated tokens
counted as fresh) is kept beside it for comparison.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import optimize

from research.scaling import chinchilla
from research.scaling import fit_utils

R_STAR_BOUNDS = (1e-2, 1e4)  # where R* is searched; at the top, repeats look as good as fresh data
_GRID = 241  # log-spaced R* values tried before the bounded refinement


def repetitions(D, U) -> np.ndarray:
  """R = D / U - 1: repetitions after the first epoch (0 for a run of at most one epoch, and
  where U is NaN or infinite: fresh data)."""
  D, U = np.asarray(D, dtype=np.float64), np.asarray(U, dtype=np.float64)
  with np.errstate(invalid='ignore', divide='ignore'):
    r = D / U - 1
  return np.where(np.isfinite(r) & (r > 0), r, 0.0)


def effective_data(D, U, r_star: float) -> np.ndarray:
  """D' = U + U R* (1 - exp(-R / R*)) for repeated runs; D itself for the others."""
  D, U = np.asarray(D, dtype=np.float64), np.asarray(U, dtype=np.float64)
  r = repetitions(D, U)
  repeated = r > 0
  safe_u = np.where(repeated, U, 1.0)
  return np.where(repeated, safe_u + safe_u * r_star * -np.expm1(-r / r_star), D)


@dataclasses.dataclass(frozen=True, eq=False)
class DataConstrainedFit:
  """L(N, D, U) = E + A / N^alpha + B / D'^beta; `base` holds the Chinchilla fit (E..beta),
  `R_star` the repetition constant; `N`, `D`, `U`, `loss` are the repeated runs fitted, and
  `objective` / `chinchilla_objective` the summed Huber loss on them with D' and with D."""
  base: chinchilla.ParametricFit
  R_star: float
  objective: float
  chinchilla_objective: float
  ci: dict
  samples: dict
  confidence: float
  N: np.ndarray
  D: np.ndarray
  U: np.ndarray
  loss: np.ndarray

  def effective_data(self, D, U):
    """D' of runs of D tokens over U unique ones."""
    return effective_data(D, U, self.R_star)

  def predict(self, N, D, U):
    """The fitted loss of N parameters trained on D tokens repeating U unique ones."""
    return self.base.predict(N, self.effective_data(D, U))

  def predict_chinchilla(self, N, D):
    """The Chinchilla form's loss, every token counted as fresh."""
    return self.base.predict(N, D)

  def residuals(self, chinchilla_form: bool = False) -> np.ndarray:
    """log L - log L_hat on the repeated runs (the Chinchilla form's with `chinchilla_form`)."""
    fitted = (self.predict_chinchilla(self.N, self.D) if chinchilla_form
              else self.predict(self.N, self.D, self.U))
    return np.log(self.loss) - np.log(fitted)

  def as_dict(self) -> dict:
    """R*, the base law and both objectives as plain floats (for JSON)."""
    rms = lambda r: float(np.sqrt(np.mean(r ** 2)))
    return {'law': "L = E + A/N^alpha + B/D'^beta, D' = U + U R* (1 - exp(-R/R*))",
            'R_star': self.R_star, 'E': self.base.E, 'A': self.base.A, 'B': self.base.B,
            'alpha': self.base.alpha, 'beta': self.base.beta, 'huber_objective': self.objective,
            'chinchilla_huber_objective': self.chinchilla_objective,
            'rms_log_residual': rms(self.residuals()),
            'chinchilla_rms_log_residual': rms(self.residuals(chinchilla_form=True)),
            'repeated_runs': len(self.N), 'confidence': self.confidence, 'ci': dict(self.ci)}


def _huber(r: np.ndarray, delta: float) -> float:
  a = np.abs(r)
  return float(np.where(a <= delta, 0.5 * r ** 2, delta * (a - 0.5 * delta)).sum())


def _objective(params, N, D, U, loss, delta):
  """Summed Huber loss on log L as a function of log R*, the base law's parameters fixed."""
  E, A, B, alpha, beta = params
  log_loss = np.log(loss)

  def value(log_r_star):
    d_eff = effective_data(D, U, float(np.exp(log_r_star)))
    return _huber(np.log(E + A / N ** alpha + B / d_eff ** beta) - log_loss, delta)
  return value


def _fit_r_star(objective) -> tuple[float, float]:
  """(R*, objective) by a log-spaced grid over R_STAR_BOUNDS, then a bounded refinement."""
  low, high = np.log(R_STAR_BOUNDS)
  grid = np.linspace(low, high, _GRID)
  values = np.array([objective(x) for x in grid])
  best = int(np.argmin(values))
  lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, _GRID - 1)]
  result = optimize.minimize_scalar(objective, bounds=(lo, hi), method='bounded',
                                    options={'xatol': 1e-6})
  x, fun = (result.x, result.fun) if result.fun <= values[best] else (grid[best], values[best])
  return float(np.exp(x)), float(fun)


def fit_data_constrained(N, D, U, loss, *, base: chinchilla.ParametricFit | None = None,
                         delta: float = chinchilla.HUBER_DELTA, grid: dict | None = None,
                         n_bootstrap: int = 100, seed: int = 0, confidence: float = 0.95,
                         ) -> DataConstrainedFit:
  """Muennighoff et al.'s effective-data law from runs of N parameters, D tokens trained and U
  unique tokens (NaN or inf: fresh data).

  Runs with R = D / U - 1 > 0 are the repeated ones; the others (at most one epoch) give the
  Chinchilla law unless `base` is passed (a `ParametricFit`, e.g. Approach 3 of the same sweep;
  `grid` is then unused). R* minimises the summed Huber loss (`delta`) between log L and the law
  with D' over the repeated runs. The bootstrap resamples the repeated runs and, when the base has
  bootstrap samples, pairs each replicate with one of them, so R*'s interval carries the base's
  uncertainty too.
  """
  U = np.asarray(U, dtype=np.float64)
  N, D, loss = fit_utils.positive_columns(N=N, D=D, loss=loss)
  fit_utils.same_length(N=N, U=U)
  bad = np.flatnonzero(~(np.isnan(U) | (U > 0)))
  if bad.size:
    raise ValueError(f'U[{bad[0]}] = {float(U[bad[0]])!r}: unique tokens must be > 0, or NaN for '
                     'fresh data')
  fit_utils.check_bootstrap(n_bootstrap, confidence, None)
  repeated = repetitions(D, U) > 0
  if repeated.sum() < 2:
    raise ValueError(f'the effective-data law needs at least 2 runs that repeat their unique '
                     f'tokens (D > U), got {int(repeated.sum())}')
  if base is None:
    fresh = ~repeated
    base = chinchilla.fit_parametric(N[fresh], D[fresh], loss[fresh], delta=delta, grid=grid,
                                     n_bootstrap=n_bootstrap, seed=seed, confidence=confidence)
  params = np.array([base.E, base.A, base.B, base.alpha, base.beta])
  n, d, u, l = N[repeated], D[repeated], U[repeated], loss[repeated]
  r_star, objective = _fit_r_star(_objective(params, n, d, u, l, delta))
  if r_star >= 0.99 * R_STAR_BOUNDS[1]:
    warnings.warn(f'R* reached its bound {R_STAR_BOUNDS[1]:g}: the repeated runs lose nothing to '
                  'repetition (or the base law overestimates their loss)', stacklevel=2)
  chinchilla_objective = _huber(np.log(base.predict(n, d)) - np.log(l), delta)

  base_samples = np.column_stack([base.samples[k] for k in ('E', 'A', 'B', 'alpha', 'beta')]) \
      if base.samples and len(base.samples.get('E', ())) else params[None]
  replicate = iter(range(n_bootstrap))

  def refit(idx):
    j = next(replicate)
    return [_fit_r_star(_objective(base_samples[j % len(base_samples)], n[idx], d[idx], u[idx],
                                   l[idx], delta))[0]]

  with fit_utils.single_threaded():
    samples = fit_utils.bootstrap(refit, len(n), n_bootstrap=n_bootstrap, seed=seed)
  ci, by_name = fit_utils.intervals(['R_star'], samples, confidence)
  return DataConstrainedFit(base, r_star, objective, chinchilla_objective, ci, by_name,
                            confidence, n, d, u, l)

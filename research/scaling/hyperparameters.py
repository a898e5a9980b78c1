"""Hyperparameter laws: the optimal learning rate and batch size as power laws in compute.

As DeepSeek LLM (2024, section 3.1) and Porian et al. (2024) do, each compute budget C gets a
sweep over the hyperparameter (alone, or on a grid with others); the loss against its log has a
minimum per budget, and value_opt = k C^exponent is fitted by least squares in log-log space
through the budgets whose minimum the values tried bracket (`budget_optima`, the same rule as
Approach 2). On a grid, each (budget, value) keeps its lowest loss over whatever else varied, so
the profile is the best loss reachable at that value.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from research.scaling import budget_optima
from research.scaling import fit_utils

NOUNS = {'learning_rate': 'learning rate', 'batch_size': 'batch size'}
# How the values read in messages: a batch size law's values are tokens per step, not sequences.
VALUE_NAMES = {'batch_size': 'batch_tokens'}


@dataclasses.dataclass(frozen=True, eq=False)
class HyperparameterLaw:
  """`name`_opt = coefficient C^exponent (C: compute, or what `against` names). Per budget
  (`budgets`): `optimum`, `loss_opt`, `bracketed`, `used` (`budgets_used`), `advice` and each
  `minima` entry; `C`, `value`, `loss` are the (budget, value) points fitted."""
  name: str
  against: str  # what the optimum is a power law in: 'C', or e.g. 'width'
  exponent: float
  coefficient: float
  ci: dict
  samples: dict
  confidence: float
  method: str
  keep_extrapolated: bool
  budgets: np.ndarray
  budgets_used: np.ndarray
  used: np.ndarray
  bracketed: np.ndarray
  advice: list
  optimum: np.ndarray
  loss_opt: np.ndarray
  minima: list
  C: np.ndarray
  value: np.ndarray
  loss: np.ndarray

  def predict(self, C):
    """The optimal value at compute C (scalar or array)."""
    C = np.asarray(C, dtype=np.float64)
    return fit_utils.scalar_or_array(self.coefficient * C ** self.exponent, C)

  def band(self, C) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap band of the optimal value at C."""
    C = np.atleast_1d(np.asarray(C, dtype=np.float64))
    s = self.samples
    return fit_utils.band(s['coefficient'][:, None] * C[None] ** s['exponent'][:, None],
                          self.confidence)

  def as_dict(self) -> dict:
    """The law, its intervals and each budget's optimum as plain values (for JSON)."""
    return {'law': f'{self.name}_opt = coefficient * {self.against}^exponent', 'name': self.name,
            'against': self.against,
            'exponent': self.exponent, 'coefficient': self.coefficient, 'method': self.method,
            'keep_extrapolated': self.keep_extrapolated, 'confidence': self.confidence,
            'ci': dict(self.ci), 'budgets_used': [float(c) for c in self.budgets_used],
            'budgets': [{'C': float(c), 'optimum': float(v), 'loss_opt': float(l),
                         'bracketed': bool(b), 'used': bool(u), 'advice': a}
                        for c, v, l, b, u, a in zip(self.budgets, self.optimum, self.loss_opt,
                                                    self.bracketed, self.used, self.advice)]}


def lowest_loss_per_point(labels: np.ndarray, value: np.ndarray, loss: np.ndarray) -> np.ndarray:
  """Indices of the lowest-loss run of each (budget, value) pair."""
  best = {}
  for i, key in enumerate(zip(labels, value)):
    if key not in best or loss[i] < loss[best[key]]:
      best[key] = i
  return np.array(sorted(best.values()), dtype=np.int64)


def fit_hyperparameter_law(C, value, loss, *, name: str = 'learning_rate', against: str = 'C',
                           method: str = 'parabola', keep_extrapolated: bool = False,
                           min_runs: int = 3, skip_bad_budgets: bool = False,
                           n_bootstrap: int = 200, seed: int = 0, confidence: float = 0.95,
                           subsample: float | None = None) -> HyperparameterLaw:
  """The power law of the optimal `value` (a learning rate, a batch size) in compute C.

  C labels each run's budget (agreeing to 6 significant digits), `value` its hyperparameter and
  `loss` its final loss. Each budget needs `min_runs` distinct values; its minimum comes from
  `method` ('parabola' in log value, or 'akima' within the values tried). Budgets whose minimum
  the values tried do not bracket are left out with a warning naming the values to add, unless
  `keep_extrapolated`; at least 2 must remain. The bootstrap resamples points within budgets.
  `against` names what C is: 'C' (compute), or e.g. 'width' for the optimum's drift with width
  under a parametrisation (muP transfer: an exponent near 0 means the optimum transfers).
  """
  C, value, loss = fit_utils.positive_columns(C=C, **{name: value}, loss=loss)
  budget_optima.check_options(method, min_runs)
  fit_utils.check_bootstrap(n_bootstrap, confidence, subsample)
  labels = budget_optima.budget_labels(C)
  keep = lowest_loss_per_point(labels, value, loss)
  labels, value, loss = labels[keep], value[keep], loss[keep]
  log_x = np.log(value)
  optima = budget_optima.find_optima(log_x, loss, labels, method=method,
                                     keep_extrapolated=keep_extrapolated, min_runs=min_runs,
                                     skip_bad_budgets=skip_bad_budgets,
                                     law=f'The {NOUNS.get(name, name)} law',
                                     name=VALUE_NAMES.get(name, name), noun=NOUNS.get(name, name),
                                     group='budget C' if against == 'C' else against)
  samples = budget_optima.bootstrap_optima(optima, log_x, loss, labels, fit_utils.power_law,
                                           method=method, keep_extrapolated=keep_extrapolated,
                                           n_bootstrap=n_bootstrap, seed=seed,
                                           subsample=subsample)
  exponent, log_k = fit_utils.power_law(optima.budgets_used, optima.x_opt[optima.used])
  if samples.size:
    samples = np.column_stack([samples[:, 0], np.exp(samples[:, 1])])
  ci, by_name = fit_utils.intervals(['exponent', 'coefficient'], samples, confidence)
  fitted = np.isin(labels, optima.budgets)
  return HyperparameterLaw(name, against, exponent, float(np.exp(log_k)), ci, by_name,
                           confidence, method,
                           keep_extrapolated, optima.budgets, optima.budgets_used, optima.used,
                           optima.bracketed, optima.advice, optima.x_opt, optima.loss_opt,
                           optima.minima, labels[fitted], value[fitted], loss[fitted])

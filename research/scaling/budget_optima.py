"""Per-budget optima and the power law through them: the machinery Approach 2 (the optimal model
size per IsoFLOP budget) and the hyperparameter laws (the optimal learning rate or batch size per
budget) share.

Runs are grouped by budget; each group's loss against log x has a minimum
(`profile_minimum`); only budgets whose minimum the values trained bracket enter the law unless
`keep_extrapolated`, and every budget left out is named in a warning with the values that would
bracket it. The bootstrap resamples runs within each budget and recomputes the minima.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import numpy as np

from research.scaling import fit_utils
from research.scaling import profile_minimum


@dataclasses.dataclass(frozen=True)
class Optima:
  """Budgets with a minimum (`budgets`), each `minima` entry, whether it is `bracketed`, whether
  the law `used` it, and `advice` on the values to add ('' when bracketed)."""
  budgets: np.ndarray
  minima: list
  bracketed: np.ndarray
  used: np.ndarray
  advice: list

  @property
  def budgets_used(self) -> np.ndarray:
    return self.budgets[self.used]

  @property
  def x_opt(self) -> np.ndarray:
    """Each budget's optimal x (not its log)."""
    return np.exp(np.array([m.log_n_opt for m in self.minima]))

  @property
  def loss_opt(self) -> np.ndarray:
    return np.array([m.loss_opt for m in self.minima])


def budget_labels(C: np.ndarray) -> np.ndarray:
  """Budget of each run, rounded to 6 significant digits so a CSV round trip keeps groups."""
  return np.array([float(f'{c:.6g}') for c in C])


def check_options(method: str, min_runs: int) -> None:
  if method not in profile_minimum.METHODS:
    raise ValueError(f'method={method!r}: expected one of {profile_minimum.METHODS}')
  if not isinstance(min_runs, (int, np.integer)) or min_runs < 3:
    raise ValueError(f'min_runs={min_runs!r}: a minimum needs at least 3 runs')


def find_optima(log_x: np.ndarray, loss: np.ndarray, labels: np.ndarray, *, method: str,
                keep_extrapolated: bool, min_runs: int, skip_bad_budgets: bool, law: str,
                name: str, noun: str, group: str = 'budget C') -> Optima:
  """Each budget's minimum; warnings name the budgets left out (or kept though unbracketed), and
  a ValueError says, for `law`, that fewer than 2 budgets are usable and what to add. `group`
  names the labels in messages ('budget C', or e.g. 'width' when the profiles are per width)."""
  kept, minima = [], []
  for budget in np.unique(labels):
    members = np.flatnonzero(labels == budget)
    try:
      if len(members) < min_runs:
        raise ValueError(f'{group}={budget:.4g}: has {len(members)} runs, fewer than '
                         f'min_runs={min_runs}')
      minima.append(profile_minimum.profile_minimum(log_x[members], loss[members], budget,
                                                    method))
      kept.append(budget)
    except ValueError as e:
      if not skip_bad_budgets:
        raise
      warnings.warn(f'skipping {e}', stacklevel=3)
  kept = np.array(kept)
  bracketed = np.array([m.bracketed for m in minima], dtype=bool)
  used = np.ones(len(kept), bool) if keep_extrapolated else bracketed
  advice = [profile_minimum.advice(m, b, name, noun, group) for m, b in zip(minima, kept)]
  for line, ok in zip(advice, bracketed):
    if not ok:
      what = ('kept as an extrapolation (keep_extrapolated=True)' if keep_extrapolated else
              'left out of the power law (keep_extrapolated=True keeps it)')
      warnings.warn(f'{line}; {what}', stacklevel=3)
  if used.sum() < 2:
    detail = ''.join(f'\n  {line}' for line, ok in zip(advice, bracketed) if not ok)
    groups = 'budgets' if group == 'budget C' else f'{group}s'
    raise ValueError(f'{law} needs at least 2 {groups} whose minimum the {noun}s trained '
                     f'bracket, got {int(used.sum())} of {len(kept)} usable '
                     f'({len(np.unique(labels))} in all){detail}')
  return Optima(kept, minima, bracketed, used, advice)


def bootstrap_optima(optima: Optima, log_x: np.ndarray, loss: np.ndarray, labels: np.ndarray,
                     statistic: Callable[[np.ndarray, np.ndarray], tuple], *, method: str,
                     keep_extrapolated: bool, n_bootstrap: int, seed: int,
                     subsample: float | None) -> np.ndarray:
  """`statistic(budgets, x_opt)` over replicates that resample runs within each budget used;
  a replicate drops the budgets it leaves without a (bracketed) minimum."""

  def refit(idx):
    xs, opts = [], []
    for budget in optima.budgets_used:
      members = idx[labels[idx] == budget]
      try:
        m = profile_minimum.profile_minimum(log_x[members], loss[members], budget, method)
      except ValueError:
        continue
      if m.bracketed or keep_extrapolated:
        opts.append(m.log_n_opt)
        xs.append(budget)
    if len(xs) < 2:
      raise ValueError('fewer than 2 budgets with a minimum')
    return statistic(np.array(xs), np.exp(np.array(opts)))

  with fit_utils.single_threaded():
    return fit_utils.bootstrap(refit, len(labels), n_bootstrap=n_bootstrap, seed=seed,
                               subsample=subsample, groups=labels)

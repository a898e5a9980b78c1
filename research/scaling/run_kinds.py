"""Which runs of a results table feed which fit, read from the table's `kind` (the sweep kind)
and `unique_tokens` columns.

  fresh-data runs of any other kind    Chinchilla's approaches, Kaplan's laws (`law_runs`)
  'hyperparameter' (a tuning grid)     only the learning-rate and batch-size laws
  'mup_transfer'                       only the optimal learning rate against width
  'wsd_stable' (a constant-LR parent)  nothing: its cooldown branches are the measurements
  repeated data (D > unique_tokens)    only the data-constrained law

The kind names are the sweep generators' (`research.sweeps.tuning`, `transfer`, `cooldown`),
spelled again here because the fits import nothing from the sweeps.
"""

from __future__ import annotations

import numpy as np

from research.scaling import data_constrained

TUNING_KIND = 'hyperparameter'  # sweep.kind of the runs of a learning-rate / batch-size sweep
TRANSFER_KIND = 'mup_transfer'  # a learning-rate grid per width and parametrisation
UNFITTED_KINDS = ('wsd_stable',)  # the constant-learning-rate parents of cooldown branches
HYPERPARAMETER_COLUMNS = {'learning_rate': ('train.learning_rate',),
                          'batch_size': ('train.batch_size', 'data.seq_len')}  # in tokens


def kind_in(results: dict, kinds) -> np.ndarray:
  """Rows whose sweep kind is one of `kinds`."""
  kind = results.get('kind')
  if kind is None:
    return np.zeros(len(results['N']), bool)
  return np.array([k in kinds for k in kind], dtype=bool)


def kept_out(results: dict) -> np.ndarray:
  """Rows that feed no compute law: tuning and transfer grids, and cooldown parents."""
  return kind_in(results, (TUNING_KIND, TRANSFER_KIND) + UNFITTED_KINDS)


def unique_tokens(results: dict) -> np.ndarray:
  """Each run's unique tokens U (NaN: fresh data, no limit)."""
  column = results.get('unique_tokens')
  if column is None or column.dtype == object:
    return np.full(len(results['N']), np.nan)
  unique = np.asarray(column, dtype=np.float64)
  return np.where(unique > 0, unique, np.nan)


def is_repeated(D: np.ndarray, unique: np.ndarray) -> np.ndarray:
  """Runs that repeat their unique tokens (D > U)."""
  return data_constrained.repetitions(D, unique) > 0


def law_runs(results: dict) -> dict:
  """The rows of `results` the Chinchilla and Kaplan fits use (and whose curves Approach 1
  should see): fresh data, and not kept out."""
  keep = ~is_repeated(np.asarray(results['D'], dtype=np.float64), unique_tokens(results))
  keep &= ~kept_out(results)
  return {name: column[keep] for name, column in results.items()}

"""Synthetic sweeps drawn from known scaling laws, written as the sweep runner writes its table.

They exercise the fits end to end without training anything: tests, the notebook's default data
and a dry run of `experiments.fit`. Final losses follow L(N, D) = E + A/N^alpha + B/D^beta
(Chinchilla's published values by default) times log-normal noise; each run's training curve
is the same law at the tokens seen so far, and an accuracy column follows a logistic in log N.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from research import run_dir as run_dir_lib
from research.scaling.chinchilla import PUBLISHED
from research.sweeps import table

EMBEDDING_FRACTION = 0.1  # N_non_embedding = 0.9 N in these fixtures
ACCURACY = {'floor': 0.25, 'ceiling': 0.85, 'threshold_N': 3e7, 'k': 2.0}


def chinchilla_loss(N, D, law: dict = PUBLISHED):
  """E + A / N^alpha + B / D^beta."""
  N, D = np.asarray(N, dtype=np.float64), np.asarray(D, dtype=np.float64)
  return law['E'] + law['A'] / N ** law['alpha'] + law['B'] / D ** law['beta']


def optimal_n(C, law: dict = PUBLISHED):
  """The closed-form compute-optimal N of the law under C = 6 N D."""
  alpha, beta = law['alpha'], law['beta']
  g = (alpha * law['A'] / (beta * law['B'])) ** (1 / (alpha + beta))
  return g * (np.asarray(C, dtype=np.float64) / 6) ** (beta / (alpha + beta))


def isoflop_design(budgets, sizes_per_budget: int = 7, width: float = 0.6,
                   law: dict = PUBLISHED):
  """(N, D, C) of IsoFLOP profiles: per budget, sizes log-spaced within +-`width` decades of the
  law's optimum and D = C / (6 N)."""
  N, D, C = [], [], []
  for budget in np.asarray(budgets, dtype=np.float64):
    sizes = optimal_n(budget, law) * np.logspace(-width, width, sizes_per_budget)
    N.extend(sizes)
    D.extend(budget / (6 * sizes))
    C.extend([budget] * sizes_per_budget)
  return np.array(N), np.array(D), np.array(C)


def accuracy(N, rng=None, noise: float = 0.0):
  """The fixtures' task accuracy: a logistic in log N (`ACCURACY`), plus optional noise."""
  p = ACCURACY
  x = p['k'] * (np.log(N) - np.log(p['threshold_N']))
  value = p['floor'] + (p['ceiling'] - p['floor']) / (1 + np.exp(-x))
  return value + (rng.normal(0, noise, np.shape(N)) if rng is not None else 0.0)


def _run_id(*values) -> str:
  """A 12-hex-digit identity, shaped like the runner's config hashes."""
  return hashlib.sha256(repr(values).encode()).hexdigest()[:12]


def write_sweep(workdir, *, budgets=(1e16, 3e16, 1e17, 3e17, 1e18), sizes_per_budget: int = 7,
                width: float = 0.6, noise: float = 0.01, curve_points: int = 40,
                seed: int = 0, law: dict = PUBLISHED) -> run_dir_lib.AnyPath:
  """Writes `workdir/results.csv` and one run directory per run; returns the table's path.

  Besides the completed IsoFLOP runs, the table holds one failed and one pending row (which
  loaders must skip).
  """
  rng = np.random.default_rng(seed)
  workdir = run_dir_lib.as_path(workdir)  # a local path or a URI (gs://bucket/sweep)
  workdir.mkdir(parents=True, exist_ok=True)
  N, D, C = isoflop_design(budgets, sizes_per_budget, width, law)
  rows = []
  for n, d, budget in zip(N, D, C):
    run_id = _run_id(seed, budget, n)
    run_dir = workdir / run_id
    run_dir.mkdir(exist_ok=True)
    steps = np.arange(1, curve_points + 1)
    tokens = d * steps / curve_points
    train = chinchilla_loss(n, tokens, law) * np.exp(rng.normal(0, noise, curve_points))
    eval_loss = float(chinchilla_loss(n, d, law) * np.exp(rng.normal(0, noise)))
    lines = [{'step': int(s), 'tokens': float(t), 'loss': float(l)}
             for s, t, l in zip(steps, tokens, train)]
    lines.append({'step': int(steps[-1]), 'eval_loss': eval_loss})
    (run_dir / run_dir_lib.METRICS_FILE).write_text(''.join(json.dumps(r) + '\n' for r in lines))
    summary = {'status': 'completed', 'params_total': int(n),
               'params_non_embedding': int(n * (1 - EMBEDDING_FRACTION)), 'tokens': float(d),
               'final_train_loss': float(train[-1]), 'final_eval_loss': eval_loss}
    run_dir_lib.write_json_atomically(run_dir / run_dir_lib.SUMMARY_FILE, summary)
    rows.append({'run_id': run_id, 'status': 'completed', 'sweep': 'synthetic',
                 'budget': budget, 'N': n, 'N_non_embedding': n * (1 - EMBEDDING_FRACTION),
                 'D': d, 'C': 6 * n * d, 'final_train_loss': float(train[-1]),
                 'final_eval_loss': eval_loss, 'wall_time_s': 1.0, 'git_commit': 'synthetic',
                 'run_dir': str(run_dir), 'eval_accuracy': float(accuracy(n, rng, 0.01)),
                 'model.d_model': 64})
  for status in ('failed', 'pending'):
    rows.append({'run_id': _run_id(seed, status), 'status': status, 'sweep': 'synthetic',
                 'budget': budgets[0], 'N': N[0], 'D': D[0], 'run_dir': str(workdir / status)})
  path = workdir / run_dir_lib.RESULTS_FILE
  table.write_csv(rows, path)
  return path

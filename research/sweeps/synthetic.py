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
                   law: dict = PUBLISHED, sizes=None):
  """(N, D, C) of IsoFLOP profiles: per budget, sizes log-spaced within +-`width` decades of the
  law's optimum (or the fixed grid `sizes` at every budget, whose optimum it may not bracket)
  and D = C / (6 N)."""
  N, D, C = [], [], []
  for budget in np.asarray(budgets, dtype=np.float64):
    if sizes is None:
      members = optimal_n(budget, law) * np.logspace(-width, width, sizes_per_budget)
    else:
      members = np.asarray(sizes, dtype=np.float64)
    N.extend(members)
    D.extend(budget / (6 * members))
    C.extend([budget] * len(members))
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
                seed: int = 0, law: dict = PUBLISHED, sizes=None) -> run_dir_lib.AnyPath:
  """Writes `workdir/results.csv` and one run directory per run; returns the table's path.
  `sizes` trains that fixed grid of sizes at every budget (see `isoflop_design`).

  Besides the completed IsoFLOP runs, the table holds one failed and one pending row (which
  loaders must skip).
  """
  rng = np.random.default_rng(seed)
  workdir = run_dir_lib.as_path(workdir)  # a local path or a URI (gs://bucket/sweep)
  workdir.mkdir(parents=True, exist_ok=True)
  N, D, C = isoflop_design(budgets, sizes_per_budget, width, law, sizes)
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


# ---- beyond Chinchilla: repeated data, hyperparameter grids, width transfer, cooldown tables ----

R_STAR = 15.4  # Muennighoff et al. (2023)'s fitted R_D*
# DeepSeek LLM (2024), eq. 1: eta_opt = 0.3118 C^-0.1250, B_opt = 0.2920 C^0.3271 (tokens).
LR_LAW, BATCH_LAW = (0.3118, -0.1250), (0.2920, 0.3271)


def repeated_data_runs(seed: int = 0, noise: float = 0.003, r_star: float = R_STAR,
                       law: dict = PUBLISHED):
  """(N, D, U, loss): fresh-data IsoFLOP runs (U NaN) and runs of 2 sizes repeating 2
  unique-token budgets for 2 to 40 epochs, their loss the law at Muennighoff's D'."""
  rng = np.random.default_rng(seed)
  n0, d0, _ = isoflop_design(np.logspace(18, 21, 4), sizes_per_budget=5, width=0.5, law=law)
  n, u, epochs = (x.ravel() for x in np.meshgrid([1e8, 4e8], [1e9, 4e9], [2, 4, 8, 16, 40],
                                                 indexing='ij'))
  N, D = np.concatenate([n0, n]), np.concatenate([d0, u * epochs])
  U = np.concatenate([np.full(len(n0), np.nan), u])
  d_eff = np.concatenate([d0, u + u * r_star * (1 - np.exp(-(epochs - 1) / r_star))])
  loss = chinchilla_loss(N, d_eff, law) * np.exp(rng.normal(0, noise, len(N)))
  return N, D, U, loss


def hyperparameter_grid(budgets=np.logspace(17, 20, 7), seed: int = 0, noise: float = 0.002,
                        lr_points: int = 7):
  """(C, learning rate, batch tokens, loss) on a grid around DeepSeek's laws at every budget: the
  loss is quadratic in both logs (skewed a little in the learning rate) above a floor that falls
  with C."""
  rng = np.random.default_rng(seed)
  C, lr, batch = (x.ravel() for x in np.meshgrid(budgets, np.linspace(-0.9, 0.9, lr_points),
                                                 np.linspace(-0.8, 0.8, 5), indexing='ij'))
  x, y = lr * np.log(10), batch * np.log(10)  # natural-log offsets from the optima
  lr = LR_LAW[0] * C ** LR_LAW[1] * np.exp(x)
  batch = BATCH_LAW[0] * C ** BATCH_LAW[1] * np.exp(y)
  loss = 2.0 + 50 * C ** -0.1 + 0.06 * x ** 2 + 0.01 * x ** 3 + 0.04 * y ** 2
  return C, lr, batch, loss * np.exp(rng.normal(0, noise, len(C)))


def transfer_runs(widths=(64, 128, 256, 512), seed: int = 7, noise: float = 0.002):
  """(parametrization, width, learning rate, loss): a learning-rate grid per width whose best
  learning rate falls as 1 / width under 'standard' and stays at 3e-3 under 'mup'."""
  rng = np.random.default_rng(seed)
  rows = []
  for kind, slope in (('standard', -1.0), ('mup', 0.0)):
    for width in widths:
      best = 3e-3 * (width / widths[0]) ** slope
      for lr in 3e-3 * 2.0 ** np.arange(-5, 3):
        rows.append((kind, width, lr, 3.0 + 0.05 * np.log(lr / best) ** 2
                     + rng.normal(0, noise)))
  kind, width, lr, loss = (np.array(x) for x in zip(*rows))
  return kind, width, lr, loss


def _rows(kind, N, D, loss, **columns):
  """Results-table rows of completed runs with these columns."""
  out = []
  for i in range(len(N)):
    row = {'run_id': _run_id(kind, i), 'status': 'completed', 'sweep': 'synthetic',
           'kind': kind, 'N': float(N[i]), 'N_non_embedding': float(N[i]) * 0.9,
           'D': float(D[i]), 'C': 6.0 * N[i] * D[i], 'final_eval_loss': float(loss[i])}
    row.update({k: (v[i].item() if hasattr(v[i], 'item') else v[i]) for k, v in columns.items()})
    out.append(row)
  return out


def write_beyond_sweeps(workdir, seed: int = 0, fraction: float = 0.2) -> dict:
  """Results tables shaped like those of the sweeps in docs/scaling_beyond_chinchilla.md, drawn
  from known laws, under `workdir`: 'cosine' (IsoFLOP runs on one size grid, plus repeated-data
  runs), 'cooldown' (one constant run per size and a branch per IsoFLOP point whose final loss is
  the law's, with its own noise), 'hyper' (a learning-rate x batch grid) and 'mup' (a learning-rate
  grid per width). Returns {name: directory}."""
  workdir = run_dir_lib.as_path(workdir)
  rng = np.random.default_rng(seed)
  budgets = np.logspace(18, 21, 4)
  N, D, C = isoflop_design(budgets, sizes=optimal_n(10 ** 19.5) * np.logspace(-1.1, 1.1, 8))
  cosine = chinchilla_loss(N, D) * np.exp(rng.normal(0, 0.003, len(N)))
  n, d, u, loss = repeated_data_runs(seed, 0.003)
  repeated = ~np.isnan(u)
  branch = chinchilla_loss(N, D) * np.exp(rng.normal(0, 0.003, len(N)))
  start = np.round((1 - fraction) * D)
  parents = {n_: start[N == n_].max() for n_ in np.unique(N)}
  pn = np.array(list(parents))
  pd = np.array(list(parents.values()))
  tables = {
      'cosine': _rows('isoflop', N, D, cosine, budget=C, own_tokens=D)
                + _rows('data_constrained', n[repeated], d[repeated], loss[repeated],
                        unique_tokens=u[repeated], epochs=d[repeated] / u[repeated]),
      'cooldown': _rows('cooldown', N, D, branch, budget=C, own_tokens=D - start)
                  + _rows('wsd_stable', pn, pd, chinchilla_loss(pn, pd) * 1.02, own_tokens=pd),
  }
  c, lr, batch, loss = hyperparameter_grid(seed=seed)
  tables['hyper'] = _rows('hyperparameter', np.full(len(c), 1e8), c / 6e8, loss, budget=c,
                          **{'train.learning_rate': lr, 'train.batch_size': batch / 1024,
                             'data.seq_len': np.full(len(c), 1024)})
  kind, width, lr, loss = transfer_runs(seed=seed + 7)
  tables['mup'] = _rows('mup_transfer', 12.0 * width ** 2, np.full(len(width), 1e7), loss,
                        **{'model.d_model': width, 'model.parametrization': kind,
                           'train.learning_rate': lr})
  paths = {}
  for name, rows in tables.items():
    (workdir / name).mkdir(parents=True, exist_ok=True)
    table.write_csv(rows, workdir / name / run_dir_lib.RESULTS_FILE)
    paths[name] = workdir / name
  return paths

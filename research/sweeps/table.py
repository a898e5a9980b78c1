"""A sweep's results table: rebuilt from its run directories alone, and read back for the fits.

Each run directory `DIR/<run_id>` holds `config.json`, and once finished `summary.json` (the train
loop's success marker); the runner adds `runner.json` (attempts, exit code, git commit). A row's
status is the summary's ('completed' or 'diverged'), else 'failed' if the last attempt exited
non-zero, else 'pending'. N, D and C follow the fits' convention: N = params_total,
D = tokens trained, C = 6 N D. For a Mixture-of-Experts run N and N_non_embedding count the
parameters each token uses (router, k routed and the shared experts: compute, not storage);
N_total and N_total_non_embedding count all of them, num_experts the routed experts per layer.
A cooldown branch's row names its `parent` run and `branch_step`; `own_tokens` is what the run
trained itself (D less its parent's part), and `unique_tokens` / `epochs` describe a
data-constrained run. Columns: `COLUMNS`, then `EXTRA_COLUMNS`, then every config field flattened
('model.d_model'). `read_rows` is the one parser of `results.csv`; `load_results` gives the same
rows as numpy columns for the fits, and `load_curves` each run's training curve.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import types
import warnings

import numpy as np

from research import run_dir as run_dir_lib
from research.model import counting

COLUMNS = ('run_id', 'status', 'sweep', 'budget', 'N', 'N_non_embedding', 'D', 'C',
           'final_train_loss', 'final_eval_loss', 'wall_time_s', 'git_commit', 'run_dir')
EXTRA_COLUMNS = ('label', 'kind', 'attempts', 'returncode', 'step', 'C_chinchilla',
                 'final_eval_bits_per_byte', 'tokens_per_sec', 'mfu', 'unique_tokens', 'epochs',
                 'parent', 'branch_step', 'own_tokens', 'N_total', 'N_total_non_embedding',
                 'num_experts')
TEXT_COLUMNS = ('run_id', 'status', 'sweep', 'git_commit', 'run_dir', 'label', 'kind', 'parent')
REQUIRED = ('run_id', 'status', 'N', 'D')  # what the fits cannot do without
STATUSES = ('completed', 'failed', 'diverged', 'pending')
_RUN_ID = re.compile(r'^[0-9a-f]{12}$')


# ---- the run directories -----------------------------------------------------------------------

def run_dirs(workdir) -> list[run_dir_lib.AnyPath]:
  """The run directories in `workdir` (named by a config hash; moved-aside ones excluded)."""
  workdir = run_dir_lib.as_path(workdir)
  if not workdir.is_dir():
    return []
  return sorted((p for p in workdir.iterdir() if _RUN_ID.match(p.name) and p.is_dir()
                 and (p / run_dir_lib.CONFIG_FILE).exists()), key=str)


def run_status(run_dir) -> str:
  """'completed' | 'diverged' (from summary.json) | 'failed' (last attempt exited non-zero) |
  'pending' (not started, running, or interrupted)."""
  summary = run_dir_lib.read_summary(run_dir)
  if summary is not None:
    return summary.get('status', 'failed')
  runner = run_dir_lib.read_json(run_dir_lib.as_path(run_dir) / run_dir_lib.RUNNER_FILE) or {}
  return 'failed' if runner.get('status') == 'failed' else 'pending'


def flatten(tree: dict, prefix: str = '') -> dict:
  """{'model': {'d_model': 64}} -> {'model.d_model': 64}; lists become JSON strings."""
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(flatten(value, f'{name}.'))
    elif isinstance(value, (list, tuple)):
      out[name] = json.dumps(value)
    else:
      out[name] = value
  return out


def _counts(model: dict, active: bool = False) -> counting.ParamCounts | None:
  try:
    return counting.predict_param_counts(types.SimpleNamespace(**model), active=active)
  except (AttributeError, TypeError, ValueError, ZeroDivisionError):
    return None  # a config the train CLI rejects has no meaningful count


def run_row(run_dir) -> dict:
  """One row: the required columns, extras, and every config field flattened ('model.d_model')."""
  run_dir = run_dir_lib.as_path(run_dir)
  config = run_dir_lib.read_config(run_dir) or {}
  summary = run_dir_lib.read_summary(run_dir) or {}
  runner = run_dir_lib.read_json(run_dir / run_dir_lib.RUNNER_FILE) or {}
  sweep = config.get('sweep') or {}
  model = config.get('model', {})
  counts, active = _counts(model), _counts(model, active=True)
  n_total = summary.get('params_total', counts.total if counts else None)
  n_total_non_embedding = summary.get('params_non_embedding',
                                      counts.non_embedding if counts else None)
  if 'params_total' in summary and 'params_active' not in summary:  # a dense run before MoE
    n, n_non_embedding = n_total, n_total_non_embedding
  else:
    n = summary.get('params_active', active.total if active else None)
    n_non_embedding = summary.get('params_active_non_embedding',
                                  active.non_embedding if active else None)
  train, data = config.get('train', {}), config.get('data', {})
  d = summary.get('tokens')
  if d is None:  # not trained yet: the planned tokens
    try:
      d = train['num_steps'] * train['batch_size'] * data['seq_len']
    except (KeyError, TypeError):
      d = None
  unique = data.get('unique_tokens') or None  # data-constrained runs repeat U tokens
  init = train.get('init_from') or {}  # a cooldown branch: the run it continues, and where
  branch_step = init.get('step') if init.get('run_dir') else None
  row = {
      'run_id': run_dir.name,
      'status': run_status(run_dir),
      'sweep': sweep.get('name', ''),
      'budget': sweep.get('budget'),
      'N': n,
      'N_non_embedding': n_non_embedding,
      'D': d,
      'C': 6.0 * n * d if n is not None and d is not None else None,
      'final_train_loss': summary.get('final_train_loss'),
      'final_eval_loss': summary.get('final_eval_loss'),
      'wall_time_s': summary.get('wall_time_s'),
      'git_commit': runner.get('git_commit', ''),
      'run_dir': str(run_dir_lib.absolute(run_dir)),
      'label': sweep.get('label', ''),
      'kind': sweep.get('kind', ''),
      'attempts': runner.get('attempts', 0),
      'returncode': runner.get('returncode'),
      'step': summary.get('step'),
      'C_chinchilla': (summary.get('flops') or {}).get('chinchilla'),
      'final_eval_bits_per_byte': summary.get('final_eval_bits_per_byte'),
      'tokens_per_sec': summary.get('tokens_per_sec'),
      'mfu': summary.get('mfu'),
      'unique_tokens': unique,
      'epochs': d / unique if unique and d is not None else None,
      'parent': init.get('run_id', '') if branch_step else '',
      'branch_step': branch_step,
      'own_tokens': (d - branch_step * train['batch_size'] * data['seq_len']
                     if branch_step and d is not None else d),
      'N_total': n_total,
      'N_total_non_embedding': n_total_non_embedding,
      'num_experts': summary.get('num_experts', model.get('num_experts', 0)),
  }
  row.update(flatten(config))
  return row


def collect(workdir) -> list[dict]:
  """Rows for every run directory in `workdir`, ordered by sweep, budget and size."""
  rows = [run_row(p) for p in run_dirs(workdir)]
  key = lambda r: (r['sweep'], r['budget'] or 0.0, r['N'] or 0, r['D'] or 0, r['run_id'])
  return sorted(rows, key=key)


# ---- writing ------------------------------------------------------------------------------------

def columns(rows: list[dict]) -> list[str]:
  """Required columns, then extras, then config fields in sorted order."""
  fixed = list(COLUMNS) + list(EXTRA_COLUMNS)
  return fixed + sorted({k for r in rows for k in r} - set(fixed))


def _csv_value(value):
  if value is None:
    return ''
  if isinstance(value, float) and math.isnan(value):
    return 'nan'
  return value


def write_csv(rows: list[dict], path) -> None:
  """The rows as CSV at `path`, atomically; missing cells are empty."""
  names = columns(rows)

  def write(tmp):
    with open(tmp, 'w', newline='') as f:
      writer = csv.DictWriter(f, fieldnames=names)
      writer.writeheader()
      for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in names})
  run_dir_lib.write_atomically(path, write)


def _arrow_type(pa, values):
  """float64 for numeric columns (None as null), int64 for all-int ones, else strings."""
  present = [v for v in values if v is not None]
  if all(isinstance(v, bool) for v in present) and present:
    return pa.bool_(), values
  if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
    return pa.int64(), values
  if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
    return pa.float64(), [None if v is None else float(v) for v in values]
  return pa.string(), [None if v is None else str(v) for v in values]


def write_parquet(rows: list[dict], path) -> bool:
  """Writes `path` if pyarrow is importable; returns whether it did."""
  try:
    import pyarrow as pa
    import pyarrow.parquet as pq
  except ImportError:
    return False
  arrays, names = [], columns(rows)
  for name in names:
    kind, values = _arrow_type(pa, [r.get(name) for r in rows])
    arrays.append(pa.array(values, type=kind))
  table = pa.Table.from_arrays(arrays, names=names)
  run_dir_lib.write_atomically(path, lambda tmp: pq.write_table(table, tmp))
  return True


def write_table(workdir) -> list[dict]:
  """Rebuilds `DIR/results.csv` (and `results.parquet` with pyarrow) from the run directories."""
  workdir = run_dir_lib.as_path(workdir)
  rows = collect(workdir)
  write_csv(rows, workdir / run_dir_lib.RESULTS_FILE)
  write_parquet(rows, workdir / run_dir_lib.RESULTS_PARQUET_FILE)
  return rows


# ---- reading ------------------------------------------------------------------------------------

def results_path(path_or_workdir) -> run_dir_lib.AnyPath:
  """`path` itself if it is a file, else `path/results.csv`; a ValueError if it is missing."""
  path = run_dir_lib.as_path(path_or_workdir)
  if path.is_dir():
    path = path / run_dir_lib.RESULTS_FILE
  if not path.is_file():
    raise ValueError(f'{path}: no results table (expected a {run_dir_lib.RESULTS_FILE} or a sweep '
                     'workdir holding one; run experiments.sweep first)')
  return path


def _parse(name: str, value: str):
  """Numbers as numbers, except in text columns (a hex run id can look like 1e5); '' is None."""
  if name in TEXT_COLUMNS:
    return value
  if value == '':
    return None
  for kind in (int, float):
    try:
      return kind(value)
    except ValueError:
      pass
  return value


def read_table(path: run_dir_lib.AnyPath) -> tuple[list[str], list[dict]]:
  """(column names, parsed rows) of the table at `path`."""
  with io.StringIO(path.read_bytes().decode('utf-8'), newline='') as f:
    reader = csv.DictReader(f)
    names = list(reader.fieldnames or [])
    missing = [c for c in REQUIRED if c not in names]
    if missing:
      raise ValueError(f'{path}: missing columns {missing}; is this a sweep results table?')
    return names, [{k: _parse(k, v or '') for k, v in row.items()} for row in reader]


def read_rows(path_or_workdir) -> list[dict]:
  """The rows of a results table, numbers parsed and empty cells None (text columns: '')."""
  return read_table(results_path(path_or_workdir))[1]


def _column(name: str, values: list) -> np.ndarray:
  """float64 if every non-empty cell is a number (empty cells NaN), else strings."""
  if name not in TEXT_COLUMNS and values and all(
      v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
  return np.array(['' if v is None else str(v) for v in values], dtype=object)


def resolve_run_dir(value: str, base: run_dir_lib.AnyPath, run_id: str) -> str:
  """The run directory as written, else relative to the table, else `<table dir>/<run_id>`."""
  candidates = ([run_dir_lib.as_path(value), base / value] if value else []) + [base / run_id]
  for candidate in candidates:
    if candidate.is_dir():
      return str(candidate)
  return value


def load_results(path_or_workdir, statuses=('completed',)) -> dict[str, np.ndarray]:
  """The table's rows with a status in `statuses`, as {column: numpy array}.

  Numeric columns are float64 (empty cells NaN, e.g. `budget` of a run outside any IsoFLOP
  profile); the others are object arrays of strings. `run_dir` is resolved against the
  table's directory when the path written there does not exist (a moved sweep).
  """
  path = results_path(path_or_workdir)
  if isinstance(statuses, str):
    statuses = (statuses,)
  names, rows = read_table(path)
  rows = [r for r in rows if r['status'] in statuses]
  result = {name: _column(name, [r.get(name) for r in rows]) for name in names}
  if 'run_dir' in result:
    result['run_dir'] = np.array([resolve_run_dir(d, path.parent, i) for d, i in
                                  zip(result['run_dir'], result['run_id'])], dtype=object)
  return result


def load_curves(results: dict, key: str = 'loss',
                n_column: str = 'N') -> list[tuple[float, np.ndarray, np.ndarray]]:
  """(N, tokens, loss) per run of `results` whose metrics.jsonl has at least 2 finite points.

  `key` picks the logged metric ('loss' for training loss, as Approach 1 uses); runs without
  a readable curve are skipped with a warning.
  """
  if 'run_dir' not in results or n_column not in results:
    raise ValueError(f'results: need the columns run_dir and {n_column} to load curves')
  curves, skipped = [], []
  for n, run_dir in zip(results[n_column], results['run_dir']):
    try:
      tokens, values = run_dir_lib.read_metrics(run_dir, key)
    except OSError:
      skipped.append(str(run_dir))
      continue
    ok = np.isfinite(tokens) & np.isfinite(values) & (tokens > 0) & (values > 0)
    if ok.sum() < 2 or not np.isfinite(n):
      skipped.append(str(run_dir))
      continue
    curves.append((float(n), tokens[ok], values[ok]))
  if skipped:
    warnings.warn(f'{len(skipped)} runs have no usable {key!r} curve in '
                  f'{run_dir_lib.METRICS_FILE}: {", ".join(skipped[:3])}'
                  f'{" ..." if len(skipped) > 3 else ""}', stacklevel=2)
  return curves

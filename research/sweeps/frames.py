"""A sweep as pandas DataFrames, for notebooks: its results table with typed columns, and every
run's logged curves joined with the columns of its row.

`results_frame` reads `results.parquet` (typed columns, written beside `results.csv` when pyarrow
is installed) and falls back to the CSV; `curves_frame` has one row per logged step of each run,
the training line and the evaluation logged at the same step merged into one row. Needs the
`results` extra (`pip install -e '.[results]'`: pandas and pyarrow).
"""

from __future__ import annotations

import numbers

from research import run_dir as run_dir_lib
from research.sweeps import table

# The columns of a run's row that `curves_frame` copies onto each of its steps by default.
CURVE_COLUMNS = ('sweep', 'label', 'budget', 'N', 'N_non_embedding', 'D', 'C', 'status')


def _pandas():
  try:
    import pandas as pd
  except ImportError as e:
    raise ImportError("research.sweeps.frames needs pandas: pip install -e '.[results]'") from e
  return pd


def _parquet_beside(csv_path):
  """The results.parquet written with `csv_path`, or None if there is none or it is older."""
  parquet = csv_path.parent / run_dir_lib.RESULTS_PARQUET_FILE
  if csv_path.name != run_dir_lib.RESULTS_FILE or not parquet.exists():
    return None
  return parquet if _mtime(parquet) >= _mtime(csv_path) else None


def _mtime(path) -> float:
  stat = path.stat()  # os.stat_result on a local disk, epath's StatResult on a bucket
  return stat.st_mtime if hasattr(stat, 'st_mtime') else stat.mtime


def results_frame(path_or_workdir, statuses=None):
  """The results table (a sweep directory or a results file) as a DataFrame, one row per run;
  only the rows whose status is in `statuses` if given. Numeric columns are float64 or int64 with
  missing cells NaN, text columns strings; `run_dir` is resolved as `table.load_results` does."""
  pd = _pandas()
  path = table.results_path(path_or_workdir)
  if path.suffix != '.parquet':
    path = _parquet_beside(path) or path
  if path.suffix == '.parquet':
    with path.open('rb') as f:
      frame = pd.read_parquet(f)
  else:
    names, rows = table.read_table(path)
    frame = pd.DataFrame(rows, columns=names)
    for name in names:  # a column of numbers and empty cells is numeric, as in load_results
      if name not in table.TEXT_COLUMNS:
        if all(isinstance(v, numbers.Number) for v in frame[name].dropna()):
          numeric = pd.to_numeric(frame[name])
          frame[name] = numeric.astype('float64') if numeric.isna().any() else numeric
  if statuses is not None:
    statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    frame = frame[frame['status'].isin(statuses)].reset_index(drop=True)
  if 'run_dir' in frame:
    frame['run_dir'] = [table.resolve_run_dir(d or '', path.parent, i)
                        for d, i in zip(frame['run_dir'], frame['run_id'])]
  return frame


def run_curve(run_dir):
  """One run's metrics.jsonl as a DataFrame, one row per step holding every number logged at
  that step (an evaluation at step 0 included); `tokens` filled from the training lines' tokens
  per step where a step has only lines without it."""
  pd = _pandas()
  records = [{k: v for k, v in r.items() if isinstance(v, numbers.Number)}
             for r in run_dir_lib.metric_records(run_dir)]
  records = [r for r in records if r.get('step', -1) >= 0]
  if not records:
    return pd.DataFrame({'step': pd.Series(dtype='int64')})
  frame = pd.DataFrame(records).groupby('step', as_index=False, sort=True).last()
  frame['step'] = frame['step'].astype('int64')
  known = (frame['tokens'].notna() & (frame['step'] > 0)) if 'tokens' in frame else None
  if known is not None and known.any():
    per_step = frame.loc[known, 'tokens'].iloc[0] / frame.loc[known, 'step'].iloc[0]
    frame['tokens'] = frame['tokens'].fillna(frame['step'] * per_step)
  return frame


def curves_frame(path_or_workdir, statuses=('completed',), columns=CURVE_COLUMNS):
  """Every run's curve (`run_curve`) stacked, each row carrying `run_id` and the `columns` of its
  run's row in the results table. Runs whose directory holds no metrics.jsonl are left out."""
  pd = _pandas()
  results = results_frame(path_or_workdir, statuses)
  missing = [c for c in columns if c not in results]
  if missing:
    raise ValueError(f'columns {missing}: not in the results table of {path_or_workdir}')
  curves = []
  for row in results.itertuples(index=False):
    run_dir = run_dir_lib.as_path(row.run_dir) if row.run_dir else None
    if run_dir is None or not (run_dir / run_dir_lib.METRICS_FILE).exists():
      continue
    curve = run_curve(run_dir)
    curve.insert(0, 'run_id', row.run_id)
    curves.append(curve)
  if not curves:
    return pd.DataFrame(columns=['run_id', 'step', *columns])
  stacked = pd.concat(curves, ignore_index=True)
  return stacked.merge(results[['run_id', *columns]], on='run_id', how='left')

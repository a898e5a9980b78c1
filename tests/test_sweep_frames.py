"""The sweep as pandas DataFrames: the results table typed from CSV or Parquet alike (a stale
Parquet file ignored), and each run's curve read back from its metrics.jsonl and joined with its
row."""

import json
import os

import numpy as np
import pytest

pd = pytest.importorskip('pandas')
pytest.importorskip('pyarrow')

from research import run_dir as run_dir_lib  # noqa: E402
from research.sweeps import frames, synthetic, table  # noqa: E402


@pytest.fixture
def sweep(tmp_path):
  path = synthetic.write_sweep(tmp_path, budgets=(1e16, 1e17), sizes_per_budget=3,
                               curve_points=6, seed=3)
  return tmp_path, path


def test_results_frame_is_the_table_typed_the_same_from_csv_and_parquet(sweep):
  workdir, csv_path = sweep
  rows = table.read_rows(csv_path)
  from_csv = frames.results_frame(workdir)
  assert list(from_csv['run_id']) == [r['run_id'] for r in rows]
  assert list(from_csv.columns) == list(rows[0])
  assert from_csv['N'].dtype == np.float64 and from_csv['attempts'].isna().all()
  loaded = table.load_results(csv_path, statuses=table.STATUSES)
  np.testing.assert_array_equal(from_csv['N'].to_numpy(), loaded['N'])
  assert list(frames.results_frame(workdir, 'completed')['run_id']) == \
      [r['run_id'] for r in rows if r['status'] == 'completed']

  parquet = workdir / run_dir_lib.RESULTS_PARQUET_FILE
  assert table.write_parquet(rows[:-1], parquet)  # one row short: which file was read shows
  from_parquet = frames.results_frame(workdir)
  assert len(from_parquet) == len(rows) - 1
  pd.testing.assert_frame_equal(from_parquet, from_csv.iloc[:-1], check_dtype=False)
  stat = csv_path.stat()
  os.utime(parquet, (stat.st_atime, stat.st_mtime - 60))  # older than the CSV: stale, ignored
  assert len(frames.results_frame(workdir)) == len(rows)
  assert len(frames.results_frame(parquet)) == len(rows) - 1  # named explicitly: read


def test_curves_frame_holds_every_logged_step_of_each_run_with_its_row(sweep):
  workdir, csv_path = sweep
  results = frames.results_frame(workdir, 'completed')
  curves = frames.curves_frame(workdir)
  assert set(curves['run_id']) == set(results['run_id'])
  for row in results.itertuples():
    lines = [json.loads(l) for l in
             (workdir / row.run_id / run_dir_lib.METRICS_FILE).read_text().splitlines()]
    train = [l for l in lines if 'loss' in l]
    curve = curves[curves['run_id'] == row.run_id]
    assert list(curve['step']) == [l['step'] for l in train]
    np.testing.assert_array_equal(curve['loss'], [l['loss'] for l in train])
    np.testing.assert_array_equal(curve['tokens'], [l['tokens'] for l in train])
    assert (curve['N'] == row.N).all() and (curve['budget'] == row.budget).all()
    evals = curve.dropna(subset=['eval_loss'])  # merged into the row of its step
    assert list(evals['step']) == [train[-1]['step']]
    assert evals['eval_loss'].item() == run_dir_lib.read_summary(
        workdir / row.run_id)['final_eval_loss']
  with pytest.raises(ValueError, match=r"\['no_such_column'\]"):
    frames.curves_frame(workdir, columns=('N', 'no_such_column'))


def test_run_curve_merges_lines_of_a_step_and_fills_tokens(tmp_path):
  lines = [{'step': 0, 'eval_loss': 9.0},
           {'step': 2, 'tokens': 64, 'loss': 5.0},
           {'step': 4, 'event': 'execution_changed', 'changes': ['mesh.ici']},
           {'step': 4, 'tokens': 128, 'loss': 4.0}, {'step': 4, 'eval_loss': 4.5},
           {'step': 5, 'eval_loss': 4.25}]
  (tmp_path / run_dir_lib.METRICS_FILE).write_text(
      ''.join(json.dumps(l) + '\n' for l in lines) + '{"step": 6, "loss"')  # cut by a kill
  curve = frames.run_curve(tmp_path)
  assert list(curve.columns) == ['step', 'eval_loss', 'tokens', 'loss']
  assert list(curve['step']) == [0, 2, 4, 5]
  np.testing.assert_array_equal(curve['tokens'], [0, 64, 128, 160])
  np.testing.assert_array_equal(curve['eval_loss'], [9.0, np.nan, 4.5, 4.25])
  np.testing.assert_array_equal(curve['loss'], [np.nan, 5.0, 4.0, np.nan])

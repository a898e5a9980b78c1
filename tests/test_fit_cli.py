"""`python -m experiments.fit` on a synthetic sweep: every fit, figures, fits.json, the table."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from research.scaling import report
from research.sweeps import synthetic
from research.sweeps.table import load_curves
from research.sweeps.table import load_results

ROOT = pathlib.Path(__file__).parents[1]
A_TRUE = 0.28 / 0.62


def run_cli(*args):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, '-m', 'experiments.fit', *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def sweep(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('sweep')
  synthetic.write_sweep(workdir, seed=11)
  return workdir


def test_loaders_keep_completed_runs_and_read_their_curves(sweep):
  results = load_results(sweep)
  assert len(results['run_id']) == 35 and set(results['status']) == {'completed'}
  assert results['N'].dtype == np.float64 and results['run_id'].dtype == object
  assert sorted(set(results['budget'])) == [1e16, 3e16, 1e17, 3e17, 1e18]
  curves = load_curves(results)
  assert len(curves) == 35
  n, tokens, loss = curves[0]
  assert n == results['N'][0] and len(tokens) == len(loss) == 40
  assert np.all(np.diff(tokens) > 0)
  assert len(load_results(sweep, statuses=('failed', 'pending'))['run_id']) == 2


def test_loaders_find_run_dirs_of_a_moved_sweep(tmp_path):
  synthetic.write_sweep(tmp_path / 'original', seed=12, budgets=(1e16, 1e17))
  (tmp_path / 'original').rename(tmp_path / 'moved')  # results.csv still names the old paths
  results = load_results(tmp_path / 'moved')
  assert all(d.startswith(str(tmp_path / 'moved')) for d in results['run_dir'])
  (tmp_path / 'moved' / results['run_id'][0] / 'metrics.jsonl').unlink()
  with pytest.warns(UserWarning, match='1 runs have no usable'):
    assert len(load_curves(results)) == 13


def test_loaders_reject_a_missing_or_foreign_table(tmp_path):
  with pytest.raises(ValueError, match='no results table'):
    load_results(tmp_path)
  (tmp_path / 'results.csv').write_text('a,b\n1,2\n')
  with pytest.raises(ValueError, match=r"missing columns \['run_id', 'status', 'N', 'D'\]"):
    load_results(tmp_path)


def test_cli_fits_every_law_and_writes_figures_and_json(sweep):
  result = run_cli(f'--workdir={sweep}', '--n_bootstrap=20', '--accuracy_column=eval_accuracy',
                   '--budgets=1e18,1e21')
  assert result.returncode == 0, result.stderr
  out = sweep / 'fits'
  summary = json.loads((out / 'fits.json').read_text(),
                       parse_constant=lambda c: pytest.fail(f'non-JSON constant {c}'))
  assert set(summary['fits']) == {'approach1', 'approach2', 'approach3', 'kaplan_N', 'kaplan_D',
                                  'kaplan_C', 'kaplan_ND', 'emergence'}
  assert summary['skipped'] == {}
  for name in ('approach1', 'approach2', 'approach3'):
    fit = summary['fits'][name]
    print(f'{name}: a = {fit["a"]:.4f} (true {A_TRUE:.4f}) ci {fit["ci"]["a"]}')
    assert fit['a'] == pytest.approx(A_TRUE, abs=0.05)
    assert fit['a'] + fit['b'] == pytest.approx(1.0)
  assert summary['fits']['emergence']['threshold_N'] == pytest.approx(3e7, rel=0.2)
  assert {r['C'] for r in summary['allocations']} == {1e18, 1e21}
  for name in ('isoflop', 'frontier', 'envelope', 'residuals', 'loss_vs_N', 'loss_vs_D',
               'loss_vs_C', 'loss_vs_N_D', 'emergence'):
    png = out / f'{name}.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name
  for text in ('Chinchilla approach 2 (IsoFLOP profiles)', 'alpha_N', 'D/N', '(95%)',
               'IsoFLOP budgets (parabola): 5 of 5 bracketed'):
    assert text in result.stdout


def test_fits_the_data_cannot_support_are_reported(sweep):
  results = load_results(sweep)
  results['budget'] = np.full(len(results['N']), np.nan)  # no IsoFLOP labels
  small = {'a': [5.0], 'b': [5.0], 'e': [0.5], 'alpha': [0.5], 'beta': [0.5]}
  fits = report.fit_all(results, None, n_bootstrap=0, parametric_grid=small)
  assert 'approach2' not in fits.fits and 'approach1' not in fits.fits
  assert 'IsoFLOP budget' in fits.skipped['approach2']
  assert 'no training curves' in fits.skipped['approach1']
  assert 'approach3' in fits.fits and 'kaplan_ND' in fits.fits
  table = report.format_table(fits)
  assert 'skipped:' in table and 'approach 2' in table
  assert json.loads(json.dumps(report.summary(fits)))['skipped'] == fits.skipped


SMALL_GRID = {'a': [5.0], 'b': [5.0], 'e': [0.5], 'alpha': [0.5], 'beta': [0.5]}


def edge_sweep(workdir, budgets):
  """One grid of sizes at every budget: the smallest budgets' optima lie below it."""
  synthetic.write_sweep(workdir, budgets=budgets, sizes=np.logspace(7.7, 9.3, 9), noise=0.003,
                        seed=13)
  return load_results(workdir)


def test_report_says_which_budgets_are_not_bracketed_and_what_to_add(tmp_path):
  results = edge_sweep(tmp_path / 'edge', (1e16, 1e17, 1e18, 1e19, 1e20))
  fits = report.fit_all(results, None, n_bootstrap=0, parametric_grid=SMALL_GRID)
  table = report.format_table(fits)
  assert 'IsoFLOP budgets (parabola): 3 of 5 bracketed by the sizes trained, 3 used' in table
  assert "budget C=1e+16: the parabola's minimum N=" in table and 'add models of about N=' in table
  assert report.summary(fits)['fits']['approach2']['budgets_used'] == [1e18, 1e19, 1e20]
  # Too few bracketed budgets: Approach 2 is skipped, and the reason lists the sizes to add.
  results = edge_sweep(tmp_path / 'low', (1e16, 1e17, 1e18))
  fits = report.fit_all(results, None, n_bootstrap=0, parametric_grid=SMALL_GRID)
  reason = fits.skipped['approach2']
  assert 'needs at least 2 budgets whose minimum the sizes trained bracket, got 1 of 3' in reason
  assert 'C=1e+17: ' in reason and 'add models of about N=' in reason
  assert reason in report.format_table(fits)
  fits = report.fit_all(results, None, n_bootstrap=0, parametric_grid=SMALL_GRID,
                        isoflop_method='akima', keep_extrapolated=True)
  assert 'IsoFLOP budgets (akima): 1 of 3 bracketed by the sizes trained, 3 used (extrapolated ' \
         'minima kept)' in report.format_table(fits)
  assert fits.fits['approach2'].method == 'akima'


@pytest.mark.parametrize('args,message', [
    (['--workdir={tmp}'], 'no results table'),
    (['--workdir={sweep}', '--budgets=big'], '--budgets=big: expected numbers'),
    (['--workdir={sweep}', '--budgets=-1'], 'every budget must be > 0'),
    (['--workdir={sweep}', '--confidence=2'], 'confidence=2.0'),
])
def test_cli_errors_name_the_problem(tmp_path, sweep, args, message):
  args = [a.format(tmp=tmp_path, sweep=sweep) for a in args]
  result = run_cli(*args, '--n_bootstrap=0', '--nocurves', '--isoflop_method=akima',
                   '--keep_extrapolated')
  assert result.returncode == 2
  assert message in result.stderr


"""The sweep runner end to end: a killed sweep restarts only its missing runs, a failing run is
recorded while the others finish and `--retry-failed` reruns it (a diverged one moved aside), the
Ray executor runs the same sweep, and results.csv has the columns the fits read."""

import json
import os
import pathlib
import subprocess
import sys
import time

import psutil
import pytest
from research import run_dir as run_dir_lib
from research.sweeps import plan, runner, table
from tests.train_helpers import write_corpus

ROOT = pathlib.Path(__file__).parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
TOKENS = (2560, 3840, 5120)  # 10, 15 and 20 steps of 8 x 32 tokens

SWEEP = '''from research.sweeps import generators
from tests.train_helpers import tiny_config


def get_sweep():
  base = tiny_config({corpus!r}, {cache!r}, eval_every=100, checkpoint_every=5, log_every=5)
  base.data.eval_batches = 1
  runs = generators.kaplan_data_size_sweep(base, {tokens!r}, name='test')
  if {bad!r}:
    bad = base.copy_and_resolve_references()
    bad.model.num_heads = 3  # d_model=32 does not split into 3 heads: the train CLI rejects it
    runs.append(('bad', bad))
  return runs
'''


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp('sweep')
  return write_corpus(root / 'text'), root / 'cache'


def sweep_file(directory, data, tokens=TOKENS, bad=False) -> pathlib.Path:
  corpus, cache = data
  path = pathlib.Path(directory) / 'sweep.py'
  path.write_text(SWEEP.format(corpus=str(corpus), cache=str(cache), tokens=tuple(tokens), bad=bad))
  return path


def sweep_command(path, workdir, *flags):
  return [sys.executable, '-m', 'experiments.sweep', f'--sweep={path}', f'--workdir={workdir}',
          *flags]


def run_cli(path, workdir, *flags):
  return subprocess.run(sweep_command(path, workdir, *flags), cwd=ROOT, env=ENV, text=True,
                        capture_output=True, timeout=300)


def runner_record(run_dir) -> dict:
  return run_dir_lib.read_json(pathlib.Path(run_dir) / run_dir_lib.RUNNER_FILE) or {}


def summary_times(workdir) -> dict:
  return {d.name: (d / 'summary.json').stat().st_mtime_ns for d in table.run_dirs(workdir)
          if (d / 'summary.json').exists()}


def kill_sweep(process, workdir):
  """SIGKILL the driver, then every process working in the sweep directory (its runs)."""
  psutil.Process(process.pid).kill()
  process.wait()
  for p in psutil.process_iter(['cmdline']):
    if any(str(workdir) in arg for arg in p.info['cmdline'] or ()):
      try:
        p.kill()
        p.wait(30)
      except psutil.NoSuchProcess:
        pass


@pytest.mark.slow
def test_killed_sweep_restarts_only_the_missing_runs(data, tmp_path):
  path, workdir = sweep_file(tmp_path, data), tmp_path / 'runs'
  process = subprocess.Popen(sweep_command(path, workdir), cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 180
  while time.time() < deadline:  # kill once one run has finished and the next has started
    dirs = table.run_dirs(workdir)
    done = [d for d in dirs if (d / 'summary.json').exists()]
    if done and any(runner_record(d).get('status') == 'running' for d in dirs if d not in done):
      break
    assert process.poll() is None, 'the sweep ended before it could be killed'
    time.sleep(0.05)
  else:
    process.kill()
    pytest.fail('the sweep did not get to its second run')
  kill_sweep(process, workdir)
  finished = summary_times(workdir)
  interrupted = [d.name for d in table.run_dirs(workdir) if d.name not in finished
                 and runner_record(d).get('attempts')]
  assert 1 <= len(finished) < len(TOKENS) and interrupted

  out = run_cli(path, workdir)
  assert out.returncode == 0, out.stdout + out.stderr
  assert f'{len(finished)} finished or skipped, {len(TOKENS) - len(finished)} to run' in out.stdout
  after = summary_times(workdir)
  assert len(after) == len(TOKENS)
  for run_id, mtime in finished.items():  # finished runs were not touched
    assert after[run_id] == mtime and runner_record(workdir / run_id)['attempts'] == 1
  for run_id in interrupted:  # the interrupted run was started again in its own directory
    assert runner_record(workdir / run_id)['attempts'] == 2
    assert (workdir / run_id / run_dir_lib.LOG_FILE).read_text().count('=====') == 2
  rows = table.read_rows(workdir)
  assert [r['status'] for r in rows] == ['completed'] * len(TOKENS)


def test_failed_run_is_recorded_and_retried(data, tmp_path):
  path, workdir = sweep_file(tmp_path, data, tokens=TOKENS[:1], bad=True), tmp_path / 'runs'
  out = run_cli(path, workdir, '--max-concurrent=2')
  assert out.returncode == 1 and 'bad (failed)' in out.stderr, out.stdout + out.stderr
  rows = {r['label']: r for r in table.read_rows(workdir)}
  good, bad = rows.pop(next(label for label in rows if label != 'bad')), rows['bad']
  assert (good['status'], bad['status']) == ('completed', 'failed')
  bad_dir, good_dir = pathlib.Path(bad['run_dir']), pathlib.Path(good['run_dir'])
  assert 'must be divisible by model.num_heads=3' in (bad_dir / run_dir_lib.LOG_FILE).read_text()
  assert runner_record(bad_dir)['returncode'] == 2

  # Without --retry-failed nothing is rerun.
  out = run_cli(path, workdir)
  assert out.returncode == 1 and 'not retried' in out.stdout
  assert runner_record(bad_dir)['attempts'] == 1

  # A diverged run (its summary says so) is moved aside and retried along with the failed one.
  summary = json.loads((good_dir / 'summary.json').read_text())
  (good_dir / 'summary.json').write_text(json.dumps({**summary, 'status': 'diverged'}))
  out = run_cli(path, workdir, '--retry-failed')
  assert out.returncode == 1, out.stdout + out.stderr
  assert runner_record(bad_dir)['attempts'] == 2
  assert (bad_dir / run_dir_lib.LOG_FILE).read_text().count('=====') == 2
  aside = good_dir.with_name(f'{good_dir.name}.failed-1')
  assert json.loads((aside / 'summary.json').read_text())['status'] == 'diverged'
  assert json.loads((good_dir / 'summary.json').read_text())['status'] == 'completed'
  rows = table.read_rows(workdir)
  assert sorted(r['status'] for r in rows) == ['completed', 'failed']
  assert all('.failed' not in r['run_dir'] for r in rows)


def test_results_table_has_the_columns_the_fits_read(data, tmp_path):
  path, workdir = sweep_file(tmp_path, data, tokens=TOKENS[:1]), tmp_path / 'runs'
  rows = runner.run_sweep(plan.load_sweep(path), workdir, log=lambda *_: None)
  assert [r['status'] for r in rows] == ['completed']
  with open(workdir / run_dir_lib.RESULTS_FILE) as f:
    header = f.readline().strip().split(',')
  assert header[:len(table.COLUMNS)] == list(table.COLUMNS)
  assert {'model.d_model', 'train.num_steps', 'sweep.name', 'sweep.label'} <= set(header)
  (row,) = table.read_rows(workdir)
  summary = json.loads((workdir / row['run_id'] / 'summary.json').read_text())
  assert row['N'] == summary['params_total']
  assert row['N_non_embedding'] == summary['params_non_embedding']
  assert row['D'] == TOKENS[0] and row['C'] == pytest.approx(6 * row['N'] * row['D'])
  assert row['sweep'] == 'test' and row['budget'] is None and row['git_commit'] != ''
  assert row['final_eval_loss'] > 0 and row['wall_time_s'] > 0
  assert row['run_dir'] == str(workdir / row['run_id'])
  pq = pytest.importorskip('pyarrow.parquet')
  parquet = pq.read_table(workdir / run_dir_lib.RESULTS_PARQUET_FILE)
  assert parquet.num_rows == 1 and parquet.column_names == header


@pytest.mark.slow
def test_ray_executor_runs_the_same_sweep(data, tmp_path):
  ray = pytest.importorskip('ray')
  path, workdir = sweep_file(tmp_path, data, tokens=TOKENS[:2]), tmp_path / 'runs'
  ray.init(num_cpus=2, include_dashboard=False,
           runtime_env={'env_vars': {'PYTHONPATH': str(ROOT), 'JAX_PLATFORMS': 'cpu'}})
  try:
    rows = runner.run_sweep(plan.load_sweep(path), workdir, executor='ray', max_concurrent=2,
                            log=lambda *_: None)
  finally:
    ray.shutdown()
  assert sorted(r['status'] for r in rows) == ['completed', 'completed']
  for row in rows:
    assert runner_record(row['run_dir'])['executor'] == 'ray'
    assert row['D'] in TOKENS and row['final_eval_loss'] > 0


def test_bad_sweeps_are_refused(tmp_path):
  from research.config import base_config
  c = base_config()
  with pytest.raises(ValueError, match='same config'):
    plan.resolve_runs([('a', c), ('b', c.copy_and_resolve_references())], tmp_path)
  with pytest.raises(ValueError, match=r'get_sweep\(\)\[0\]'):
    plan.resolve_runs([c], tmp_path)
  with pytest.raises(ValueError, match='non-empty'):
    plan.resolve_runs([], tmp_path)
  (tmp_path / 'empty.py').write_text('X = 1\n')
  with pytest.raises(ValueError, match='no get_sweep'):
    plan.load_sweep(tmp_path / 'empty.py')
  with pytest.raises(ValueError, match='no such file'):
    plan.load_sweep(tmp_path / 'missing.py')


def test_move_aside_never_overwrites(tmp_path):
  run_dir = tmp_path / 'abcdef012345'
  for n in (1, 2):
    run_dir.mkdir()
    (run_dir / 'summary.json').write_text(str(n))
    assert runner.move_aside(run_dir).name == f'abcdef012345.failed-{n}'
  assert (tmp_path / 'abcdef012345.failed-1' / 'summary.json').read_text() == '1'

"""Run directories in a bucket (gs://, served by the local GCS emulator) used end to end: a
training run preempted and resumed there ends bitwise equal to the same run on a local disk, and
a sweep there is fitted, its figures and fits.json written back to the bucket."""

import json
import os
import subprocess
import sys

import pytest

from research import run_dir
from research.scaling.chinchilla import PUBLISHED
from research.sweeps import synthetic
from research.train.checkpoint import load_state
from research.train.loop import train
from tests.storage_emulator import BUCKET, forget_filesystems
from tests.storage_emulator import emulator  # pylint: disable=unused-import (a fixture)
from tests.train_helpers import ROOT, assert_states_equal, preempt_at, tiny_config, write_corpus


def test_a_run_in_a_bucket_is_preempted_resumes_there_and_equals_the_local_run(emulator, tmp_path):
  c = tiny_config(write_corpus(tmp_path / 'corpus', num_docs=12), tmp_path / 'data',
                  num_steps=4, checkpoint_every=2, eval_every=4, warmup_steps=1)
  quiet = dict(log=lambda *_: None)
  expected = train(c, tmp_path / 'local', **quiet)
  assert expected['status'] == 'completed'

  workdir = run_dir.as_path(f'gs://{BUCKET}/runs/preempted')
  assert train(c, workdir, batch_hook=preempt_at(3), **quiet) == {'status': 'preempted',
                                                                      'step': 3}
  lines = []
  assert train(c, workdir, log=lines.append)['status'] == 'completed'
  assert 'resumed from the checkpoint at step 3' in lines, lines
  (step, state), (_, reference) = load_state(workdir), load_state(tmp_path / 'local')
  assert step == 4
  assert_states_equal(state, reference)
  assert run_dir.read_summary(workdir)['final_eval_loss'] == expected['final_eval_loss']


def test_a_sweep_in_a_bucket_is_fitted_there(emulator):
  """`experiments.fit` on a synthetic sweep in the bucket: the laws it recovers are the ones the
  sweep was drawn from, and its figures and fits.json are objects in the bucket."""
  sweep = f'gs://{BUCKET}/sweeps/synthetic'
  synthetic.write_sweep(sweep, seed=11)
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.fit', f'--workdir={sweep}', '--n_bootstrap=5'],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr
  out = run_dir.as_path(sweep) / run_dir.FITS_DIR
  fits = json.loads((out / run_dir.FITS_FILE).read_text())['fits']
  a_true = PUBLISHED['beta'] / (PUBLISHED['alpha'] + PUBLISHED['beta'])  # N_opt ~ C^a
  for name in ('approach1', 'approach2', 'approach3'):
    assert fits[name]['a'] == pytest.approx(a_true, abs=0.05), name
  assert (out / 'isoflop.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_a_sweep_in_a_bucket_killed_and_restarted_ends_as_the_local_sweep(emulator, tmp_path):
  """A two-run sweep into the bucket is SIGKILLed (driver and runs) after a checkpoint; once the
  leases the killed processes held expire, the restarted sweep completes, each run bitwise equal
  to the same run swept on a local disk, and the fit CLI reads the table in the bucket."""
  import time
  from research.sweeps import plan, runner, table
  from tests.test_sweep_runner import ENV, TOKENS, kill_sweep, sweep_command, sweep_file
  path = sweep_file(tmp_path, (write_corpus(tmp_path / 'text'), tmp_path / 'cache'),
                    tokens=TOKENS[:2])
  local = runner.run_sweep(plan.load_sweep(path), tmp_path / 'local', log=lambda *_: None)
  assert [r['status'] for r in local] == ['completed', 'completed']

  sweep_dir = f'gs://{BUCKET}/sweeps/killed'
  env = dict(ENV, **emulator)
  driver = subprocess.Popen(sweep_command(path, sweep_dir), cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  checkpointed = lambda: bool(list(  # committed: in a bucket Orbax writes this object last
      run_dir.as_path(sweep_dir).glob('*/checkpoints/5/commit_success.txt')))
  deadline = time.time() + 600
  while not checkpointed():
    assert driver.poll() is None and time.time() < deadline, driver.communicate()[0][-3000:]
    time.sleep(0.5)
  kill_sweep(driver, sweep_dir)
  assert [r['status'] for r in table.read_rows(sweep_dir)].count('completed') < 2
  leased = lambda: [d for d in (run_dir.as_path(sweep_dir), *run_dir.as_path(sweep_dir).glob('*'))
                    if run_dir.live_lease(d) or run_dir.live_lease(d, run_dir.SWEEP_LEASE_FILE)]
  while leased():  # a killed holder keeps its directory until its lease expires (60 s)
    assert time.time() < deadline
    time.sleep(2)
  result = subprocess.run(sweep_command(path, sweep_dir), cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  forget_filesystems()  # gcsfs's listings cached before the restart are stale
  rows = {r['label']: r for r in table.read_rows(sweep_dir)}
  assert len(rows) == 2 and all(r['status'] == 'completed' for r in rows.values())
  resumed = [r for r in rows.values()
             if 'resumed from the checkpoint' in (run_dir.as_path(r['run_dir']) /
                                                  run_dir.LOG_FILE).read_text()]
  assert resumed, 'no run of the restarted sweep resumed from a checkpoint'
  for expected in local:
    got = rows[expected['label']]
    (_, state), (_, reference) = load_state(got['run_dir']), load_state(expected['run_dir'])
    assert_states_equal(state, reference)
    assert got['final_eval_loss'] == expected['final_eval_loss']

  fit = subprocess.run([sys.executable, '-m', 'experiments.fit', f'--workdir={sweep_dir}',
                        '--n_bootstrap=5'], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
  assert fit.returncode == 0, fit.stderr
  assert 'needs at least 5 runs, got 2' in fit.stdout  # it read both rows from the bucket
  assert (run_dir.as_path(sweep_dir) / run_dir.FITS_DIR / run_dir.FITS_FILE).exists()

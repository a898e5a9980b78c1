"""Run directories in a bucket (gs://, served by the local GCS emulator) used end to end: a
training run preempted and resumed there ends bitwise equal to the same run on a local disk, and
a sweep there is fitted, its figures and fits.json written back to the bucket."""

import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest

from research import run_dir
from research.scaling.chinchilla import PUBLISHED
from research.sweeps import synthetic
from research.train.checkpoint import load_state
from research.train.loop import train
from tests.storage_emulator import BUCKET, gcs_emulator
from tests.train_helpers import ROOT, assert_states_equal, tiny_config, write_corpus


@pytest.fixture(scope='module')
def emulator():
  # Looked up, not imported: gcsfs reads the emulator's settings when first imported.
  if not all(importlib.util.find_spec(m) for m in ('gcsfs', 'gcp_storage_emulator')):
    pytest.skip('needs gcsfs and gcp-storage-emulator (the test extra)')
  with gcs_emulator() as env:
    yield env


def test_a_run_in_a_bucket_is_preempted_resumes_there_and_equals_the_local_run(emulator, tmp_path):
  c = tiny_config(write_corpus(tmp_path / 'corpus', num_docs=12), tmp_path / 'data',
                  num_steps=4, checkpoint_every=2, eval_every=4, warmup_steps=1)
  quiet = dict(log=lambda *_: None)
  expected = train(c, tmp_path / 'local', **quiet)
  assert expected['status'] == 'completed'

  def preempt_at_step_3(step, batch):
    if step == 2:  # the batch of step 3: the loop saves after it and returns
      os.kill(os.getpid(), signal.SIGTERM)
    return batch
  workdir = run_dir.as_path(f'gs://{BUCKET}/runs/preempted')
  assert train(c, workdir, batch_hook=preempt_at_step_3, **quiet) == {'status': 'preempted',
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

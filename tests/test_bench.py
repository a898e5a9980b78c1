"""The benchmark runs the real train step and reports consistent figures as its last line."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.train_helpers import write_corpus

ROOT = pathlib.Path(__file__).parents[1]


def test_bench_reports_consistent_figures(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.bench', '--config=configs/bench_cpu.py',
       '--config.model.num_layers=1', '--config.model.vocab_size=512', '--config.data.seq_len=64',
       '--config.model.max_seq_len=64', '--config.train.batch_size=4', '--steps=3', '--warmup=1',
       f'--profile={tmp_path / "trace"}'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  r = json.loads(result.stdout.strip().splitlines()[-1])
  for key in ('tokens_per_sec', 'step_time_s', 'model_flops_per_token', 'peak_flops', 'mfu',
              'device'):
    assert key in r
  assert r['tokens_per_step'] == 4 * 64
  assert abs(r['tokens_per_sec'] - r['tokens_per_step'] / r['step_time_s']) < 1e-6 * r['tokens_per_sec']
  assert abs(r['mfu'] - r['tokens_per_sec'] * r['model_flops_per_token'] / r['peak_flops']) < 1e-9
  assert 0 < r['mfu'] < 1
  assert list((tmp_path / 'trace').rglob('*.xplane.pb'))


def test_bench_compares_the_training_loop_with_the_step(tmp_path):
  corpus = write_corpus(tmp_path / 'corpus')
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.bench', '--config=configs/bench_cpu.py',
       '--config.model.num_layers=1', '--config.model.vocab_size=320', '--config.data.seq_len=32',
       '--config.model.max_seq_len=32', '--config.train.batch_size=4',
       '--config.data.eval_batches=1', '--config.data.corpus=text_dir', f'--config.data.text_dir={corpus}',
       f'--config.data.data_dir={tmp_path / "data"}', '--steps=3', '--warmup=1', '--loop_steps=4'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  r = json.loads(result.stdout.strip().splitlines()[-1])
  assert r['loop_step_time_s'] > 0
  assert r['loop_tokens_per_sec'] == pytest.approx(r['tokens_per_step'] / r['loop_step_time_s'],
                                                   rel=1e-6)
  assert abs(r['loop_vs_bench'] - r['loop_tokens_per_sec'] / r['tokens_per_sec']) < 1e-9
  assert 'loop tokens / s' in result.stdout

"""The benchmark runs the real train step and reports figures that agree with independent
counts: FLOPs from the model's own parameter tree, times within what the test's clock saw."""

import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from research.config import load_config_file
from research.model.init import abstract_params
from tests.train_helpers import write_corpus

ROOT = pathlib.Path(__file__).parents[1]
SMALL = {'num_layers': 1, 'vocab_size': 512, 'max_seq_len': 64}


def palm_flops_from_the_param_tree(model_config, seq_len: int) -> int:
  """6 x (every weight matrix the forward pass multiplies by, the tied embedding once, the learned
  position table and the biases, [heads, head_dim] ones included, not at all) + 12 x layers x
  query width x context (PaLM appendix B)."""
  leaves = [(jax.tree_util.keystr(path), x)
            for path, x in jax.tree_util.tree_leaves_with_path(abstract_params(model_config))]
  matmul_weights = sum(int(np.prod(x.shape)) for name, x in leaves if len(x.shape) >= 2
                       and 'pos_embed' not in name and not name.endswith("bias']"))
  query_width = model_config.num_heads * (model_config.head_dim or
                                          model_config.d_model // model_config.num_heads)
  return 6 * matmul_weights + 12 * model_config.num_layers * query_width * seq_len


def test_bench_reports_figures_that_match_independent_counts(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  start = time.perf_counter()
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.bench', '--config=configs/bench_cpu.py',
       *[f'--config.model.{k}={v}' for k, v in SMALL.items()], '--config.data.seq_len=64',
       '--config.train.batch_size=4', '--steps=3', '--warmup=1', f'--profile={tmp_path / "trace"}'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  wall_s = time.perf_counter() - start
  assert result.returncode == 0, result.stderr[-3000:]
  r = json.loads(result.stdout.strip().splitlines()[-1])
  model = load_config_file(ROOT / 'configs' / 'bench_cpu.py').model
  model.update(SMALL)
  assert r['model_flops_per_token'] == palm_flops_from_the_param_tree(model, 64)
  assert r['tokens_per_step'] == 4 * 64
  assert r['step_time_min_s'] <= r['step_time_s'] <= r['step_time_max_s']
  # 1 warm-up, 3 timed and 3 profiled steps ran inside the process the test timed.
  assert 7 * r['step_time_min_s'] < wall_s
  assert 0 < r['mfu'] < 1  # the measured peak is above the rate the step achieved
  assert list((tmp_path / 'trace').rglob('*.xplane.pb'))


def test_bench_compares_the_training_loop_with_the_step(tmp_path):
  corpus = write_corpus(tmp_path / 'corpus')
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.bench', '--config=configs/bench_cpu.py',
       '--config.model.num_layers=1', '--config.model.vocab_size=320', '--config.data.seq_len=32',
       '--config.model.max_seq_len=32', '--config.train.batch_size=4',
       '--config.data.eval_batches=1', '--config.data.corpus=text_dir',
       f'--config.data.text_dir={corpus}',
       f'--config.data.data_dir={tmp_path / "data"}', '--steps=3', '--warmup=1', '--loop_steps=4'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  r = json.loads(result.stdout.strip().splitlines()[-1])
  # The loop runs the same step with logging, guards and data around it: the same order of
  # magnitude as the bare step (a ratio of seconds to milliseconds would be off by 1000).
  assert 0.05 < r['loop_vs_bench'] < 5
  assert 'loop tokens / s' in result.stdout


def test_compare_times_each_value_on_the_same_batches_and_names_bad_fields():
  from experiments.bench_compare import compare
  config = load_config_file(ROOT / 'configs' / 'bench_cpu.py')
  config.model.update(SMALL)
  config.data.seq_len, config.train.batch_size = 64, 4
  rows = compare(config, 'model.attention_impl', ['xla', 'query_blocks'], steps=2, warmup=0)
  assert [r['value'] for r in rows] == ['xla', 'query_blocks']
  for r in rows:
    assert r['step_time_min_s'] <= r['step_time_s'] <= r['step_time_max_s']
  # Two attention paths that compute the same function, trained on the same batches.
  np.testing.assert_allclose(rows[1]['final_loss'], rows[0]['final_loss'], rtol=1e-5)
  assert rows[1]['ratio_to_first'] > 0
  with pytest.raises(ValueError, match='model.attention_imp: no such config field'):
    compare(config, 'model.attention_imp', ['xla', 'query_blocks'], 1, 0)
  with pytest.raises(ValueError, match="'four' is not a int"):
    compare(config, 'model.num_layers', ['1', 'four'], 1, 0)
  with pytest.raises(ValueError, match='model.attention_impl'):
    compare(config, 'model.attention_impl', ['xla', 'nonsense'], 1, 0)

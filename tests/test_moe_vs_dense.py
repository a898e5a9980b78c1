"""experiments.moe_vs_dense: its sweep pairs models of equal active FLOPs, and its table reads
what the runs wrote (the end-to-end run is slow)."""

import json
import pathlib
import subprocess
import sys

import pytest

from research.config import load_python_file
from research.model.counting import predict_param_counts
from experiments import moe_vs_dense

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_sweep_pairs_equal_active_feed_forwards_and_differs_only_in_the_balance_loss():
  runs = dict(load_python_file(moe_vs_dense.SWEEP).get_sweep(num_steps=50))
  dense, moe, bare = (runs[k].model for k in ('dense', 'moe', 'moe_no_balance_loss'))
  assert dense.num_experts == 0 and moe.num_experts == bare.num_experts == 8
  assert moe.experts_per_token * moe.moe_d_ff == dense.d_ff
  assert moe.load_balance_loss_weight > 0 and bare.load_balance_loss_weight == 0
  routers = dense.num_layers * dense.d_model * moe.num_experts
  biases = dense.num_layers * (moe.experts_per_token - 1) * dense.d_model  # k output biases
  assert (predict_param_counts(moe, active=True).total ==
          predict_param_counts(dense).total + routers + biases)
  assert predict_param_counts(moe).total > 3 * predict_param_counts(dense).total // 2
  assert {runs[k].train.num_steps for k in runs} == {50}
  with pytest.raises(ValueError, match='sparse'):
    load_python_file(moe_vs_dense.SWEEP).get_sweep(labels=('sparse',))


def test_load_curves_average_the_layers_of_each_record(tmp_path):
  records = [{'step': 10, 'loss': 5.0, 'moe/layer0/load_max': 3.0, 'moe/layer1/load_max': 1.0,
              'moe/layer0/load_min': 0.0, 'moe/layer1/load_min': 0.5},
             {'step': 10, 'eval_loss': 5.1},
             {'step': 20, 'loss': 4.0, 'moe/layer0/load_max': 1.5, 'moe/layer1/load_max': 1.1,
              'moe/layer0/load_min': 0.7, 'moe/layer1/load_min': 0.9}]
  (tmp_path / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  curves = moe_vs_dense.load_curves(tmp_path)
  assert curves == {'step': [10, 20], 'load_max': [2.0, 1.3], 'load_min': [0.25, 0.8]}


@pytest.mark.slow
def test_the_comparison_runs_end_to_end_at_toy_size(tmp_path):
  small = ('model.d_model=16,model.d_ff=32,model.num_layers=1,model.num_heads=2,'
           'model.num_kv_heads=2,train.log_every=2,train.eval_every=4,data.seq_len=32,'
           'model.max_seq_len=32,train.batch_size=4')
  done = subprocess.run([sys.executable, '-m', 'experiments.moe_vs_dense',
                         f'--workdir={tmp_path}', '--num_steps=8', f'--set={small}'],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-2000:]
  rows = {r['label']: r for r in json.loads((tmp_path / 'moe_vs_dense.json').read_text())}
  assert set(rows) == {'dense', 'moe', 'moe_no_balance_loss'}
  assert rows['dense']['params_active'] == rows['dense']['params_total']
  assert rows['moe']['params_active'] < rows['moe']['params_total']
  assert 'final_load_max' not in rows['dense'] and rows['moe']['final_load_max'] >= 1.0
  assert all(r['eval_curve']['loss'] and r['tokens_per_sec'] > 0 for r in rows.values())
  assert (tmp_path / 'moe_vs_dense.png').stat().st_size > 0
  assert '| moe_no_balance_loss |' in done.stdout

"""The ahead-of-time memory report: FSDP over 8 devices holds 1/8 of the parameter and
optimizer-state bytes, and a 1B-parameter model compiles on CPU without being allocated."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parents[1]


def compile_report(config, mesh, devices, *overrides):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  env.pop('XLA_FLAGS', None)
  result = subprocess.run([sys.executable, '-m', 'experiments.compile', f'--config={config}',
                           f'--mesh={mesh}', f'--devices={devices}', *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_fsdp_over_8_devices_holds_an_eighth_of_params_and_optimizer_state():
  single = compile_report('configs/llama_1b.py', '1,1,1', 1)
  fsdp = compile_report('configs/llama_1b.py', '1,8,1', 8)
  assert single['params_total'] > 1e9
  assert single['param_bytes_per_device'] == 4 * single['params_total']  # float32 master weights
  state = lambda r: r['param_bytes_per_device'] + r['optimizer_bytes_per_device']
  assert abs(state(fsdp) / state(single) - 1 / 8) < 0.01
  assert fsdp['temp_bytes'] < single['temp_bytes'] / 4
  assert fsdp['model_flops_per_step'] == single['model_flops_per_step'] > 0


def test_a_pipelined_mesh_reports_its_bubble_and_holds_a_stage_of_the_layers():
  small = ('--config.model.scan_layers=True', '--config.model.d_model=64',
           '--config.model.d_ff=128', '--config.model.vocab_size=512',
           '--config.data.seq_len=32', '--config.train.batch_size=8')
  single = compile_report('configs/tiny.py', '1,1,1', 1, *small)
  piped = compile_report('configs/tiny.py', '1,4,2,1,1', 8, *small,
                         '--config.train.pipeline_microbatches=2')
  assert 'pipeline' not in single
  assert piped['pipeline'] == {'schedule': 'gpipe', 'stages': 4, 'microbatches': 2, 'repeats': 1,
                               'iterations': 5, 'bubble_fraction': 0.6, 'bubble_theory': 0.6}
  # Each device holds a quarter of the layers (over 'stage') and half of the rest (over 'fsdp').
  assert piped['param_bytes_per_device'] < single['param_bytes_per_device'] / 4


def test_bad_mesh_is_reported_naming_the_field():
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  result = subprocess.run([sys.executable, '-m', 'experiments.compile', '--config=configs/tiny.py',
                           '--mesh=3,1,1', '--devices=8'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and 'mesh.ici=(3, 1, 1)' in result.stderr

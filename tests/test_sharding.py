"""Sharded training on 8 fake CPU devices equals single-device training."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from research.train.checkpoint import load_state
from tests.test_reshard import run
from tests.train_helpers import write_corpus

ROOT = pathlib.Path(__file__).parents[1]
MESHES = ('8,1,1', '1,8,1', '2,2,2', '1,2,4')
# float32 reductions in another order: losses agree to 1e-5 relative, params to
# 3e-5 absolute after 6 AdamW steps at learning rate 1e-2 (measured: 4e-6 to 9e-6).
LOSS_RTOL, PARAM_ATOL = 1e-5, 3e-5


def run_meshes(tmp_path, devices, meshes):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  out = tmp_path / f'{devices}.npz'
  subprocess.run([sys.executable, '-m', 'tests.mesh_runs', str(out), str(tmp_path / 'text'),
                  str(tmp_path / 'cache'), str(tmp_path / f'runs{devices}'), *meshes],
                 cwd=ROOT, env=env, check=True, timeout=600)
  return dict(np.load(out))


def single_and_mesh_runs(tmp_path_factory, name: str, single, meshes):
  """(directory, results of `single` on one device, results of `meshes` on 8 devices), trained
  on a fresh corpus in a new directory `name`: a module fixture's body."""
  tmp_path = tmp_path_factory.mktemp(name)
  write_corpus(tmp_path / 'text')
  return tmp_path, run_meshes(tmp_path, 1, single), run_meshes(tmp_path, 8, meshes)


def restore_on_one_device(tmp_path, ici: tuple, variant: str):
  """The state of the `run_meshes` run `variant@ici` (8 devices) restored onto one device by
  tests.reshard_runs, as {name: array}, and the state as saved."""
  workdir = tmp_path / 'runs8' / f'{variant}_{"x".join(str(i) for i in ici)}'
  config = tmp_path / f'{variant}_config.py'
  config.write_text(
      'from tests.mesh_runs import mesh_config\n\n\ndef get_config():\n'
      f'  return mesh_config({str(tmp_path / "text")!r}, {str(tmp_path / "cache")!r}, '
      f'{tuple(ici)!r}, {variant!r})\n')
  out = tmp_path / f'{variant}_restored.npz'
  run(['-m', 'tests.reshard_runs', str(out), str(config), str(workdir), '1,1,1'], 1)
  restored = dict(np.load(out))
  assert int(restored['num_devices']) == 1
  return restored, load_state(workdir)[1]


def assert_training_matches(single, sharded, reference, mesh, must_name):
  """The losses (next-token and total, MoE aux losses included) and final params of run `mesh`
  equal those of run `reference` (results of `run_meshes`); `must_name` are parts of the param
  names that must be among those compared."""
  for losses in ('losses', 'total_losses'):
    np.testing.assert_allclose(sharded[f'{mesh}/{losses}'], single[f'{reference}/{losses}'],
                               rtol=LOSS_RTOL, err_msg=losses)
  names = [k.split('/', 1)[1] for k in single if k.startswith(reference + '/')
           and 'losses' not in k]
  for part in must_name:
    assert any(part in n for n in names), part
  worst = max(np.max(np.abs(sharded[f'{mesh}/{n}'] - single[f'{reference}/{n}'])) for n in names)
  print(f'{mesh}: max |param difference| = {worst:.2e}')
  assert worst < PARAM_ATOL


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('sharding')
  write_corpus(tmp_path / 'text')
  single = run_meshes(tmp_path, 1, ['1,1,1'])
  return single, run_meshes(tmp_path, 8, MESHES)


@pytest.mark.parametrize('mesh', MESHES)
def test_mesh_matches_single_device(results, mesh):
  single, sharded = results
  np.testing.assert_allclose(sharded[f'{mesh}/losses'], single['1,1,1/losses'], rtol=LOSS_RTOL)
  names = [k.split('/', 1)[1] for k in single if k.startswith('1,1,1/') and 'losses' not in k]
  assert len(names) > 10
  worst = max(np.max(np.abs(sharded[f'{mesh}/{n}'] - single[f'1,1,1/{n}'])) for n in names)
  print(f'mesh {mesh}: max |param difference| = {worst:.2e}')
  assert worst < PARAM_ATOL

"""Expert-parallel MoE training on 8 fake CPU devices equals single-device training; its checkpoint
restores bitwise onto one device.

Tokens travel to the devices holding their experts by all-to-all inside shard_map (dropless and
capacity paths), next to data, FSDP and tensor parallelism.
"""

import numpy as np
import pytest

from research.train.checkpoint import load_state
from tests.test_reshard import run
from tests.test_sharding import LOSS_RTOL, PARAM_ATOL, run_meshes
from tests.train_helpers import write_corpus

# Dropless (unscanned) next to FSDP; capacity with a shared expert (scanned) next to data and
# tensor parallelism. Two meshes keep the test to two 8-device training runs.
SINGLE = ('moe@1,1,1', 'moe_capacity@1,1,1')
MESHES = ('moe@1,1,2,4,1', 'moe_capacity@2,1,1,2,2')


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('expert_parallel')
  write_corpus(tmp_path / 'text')
  return tmp_path, run_meshes(tmp_path, 1, SINGLE), run_meshes(tmp_path, 8, MESHES)


@pytest.mark.parametrize('mesh', MESHES)
def test_expert_parallel_training_matches_one_device(results, mesh):
  _, single, sharded = results
  variant = mesh.split('@')[0]
  reference = f'{variant}@1,1,1'
  np.testing.assert_allclose(sharded[f'{mesh}/losses'], single[f'{reference}/losses'],
                             rtol=LOSS_RTOL)
  names = [k.split('/', 1)[1] for k in single if k.startswith(reference + '/')
           and 'losses' not in k]
  assert any("'router'" in n for n in names) and any("'wo'" in n for n in names)
  worst = max(np.max(np.abs(sharded[f'{mesh}/{n}'] - single[f'{reference}/{n}'])) for n in names)
  print(f'{mesh}: max |param difference| = {worst:.2e}')
  assert worst < PARAM_ATOL


def test_expert_parallel_checkpoint_restores_on_one_device(results):
  tmp_path, _, _ = results
  workdir = tmp_path / 'runs8' / 'moe_1x1x2x4x1'
  config = tmp_path / 'moe_config.py'
  config.write_text(
      'from tests.mesh_runs import mesh_config\n\n\ndef get_config():\n'
      f'  return mesh_config({str(tmp_path / "text")!r}, {str(tmp_path / "cache")!r}, '
      '(1, 1, 2, 4, 1), "moe")\n')
  out = tmp_path / 'restored.npz'
  run(['-m', 'tests.reshard_runs', str(out), str(config), str(workdir), '1,1,1'], 1)
  restored = dict(np.load(out))
  assert int(restored['num_devices']) == 1
  _, state = load_state(workdir)
  wo = state['params']['layers_1']['mlp']['wo']
  np.testing.assert_array_equal(restored[".params['layers_1']['mlp']['wo']"], np.asarray(wo))
  np.testing.assert_array_equal(restored[".params['layers_0']['mlp']['router']"],
                                np.asarray(state['params']['layers_0']['mlp']['router']))

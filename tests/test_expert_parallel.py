"""Expert-parallel MoE training on 8 fake CPU devices equals single-device training; its checkpoint
restores bitwise onto one device.

Tokens travel to the devices holding their experts by all-to-all inside shard_map (dropless and
capacity paths), next to data, FSDP and tensor parallelism.
"""

import numpy as np
import pytest

from tests.test_sharding import (assert_training_matches, restore_on_one_device,
                                 single_and_mesh_runs)

# Dropless (unscanned) next to FSDP; capacity with a shared expert (scanned) next to data and
# tensor parallelism. Two meshes keep the test to two 8-device training runs.
SINGLE = ('moe@1,1,1', 'moe_capacity@1,1,1')
MESHES = ('moe@1,1,2,4,1', 'moe_capacity@2,1,1,2,2')


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  return single_and_mesh_runs(tmp_path_factory, 'expert_parallel', SINGLE, MESHES)


@pytest.mark.parametrize('mesh', MESHES)
def test_expert_parallel_training_matches_one_device(results, mesh):
  _, single, sharded = results
  variant = mesh.split('@')[0]
  assert_training_matches(single, sharded, f'{variant}@1,1,1', mesh, ("'router'", "'wo'"))


def test_expert_parallel_checkpoint_restores_on_one_device(results):
  tmp_path, _, _ = results
  restored, state = restore_on_one_device(tmp_path, (1, 1, 2, 4, 1), 'moe')
  wo = state['params']['layers_1']['mlp']['wo']
  np.testing.assert_array_equal(restored[".params['layers_1']['mlp']['wo']"], np.asarray(wo))
  np.testing.assert_array_equal(restored[".params['layers_0']['mlp']['router']"],
                                np.asarray(state['params']['layers_0']['mlp']['router']))

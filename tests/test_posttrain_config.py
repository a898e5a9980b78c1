"""Post-training refuses a mesh with pipeline stages (its steps run the layers unpipelined),
naming the field, before anything is read or built."""

import re

import pytest

from research.posttrain.config import posttrain_base_config, validate_posttrain_config


def _config(**mesh):
  c = posttrain_base_config('sft')
  c.posttrain.update(init_from='base_run', train_file='train.jsonl')  # not read by validation
  c.mesh.update(mesh)
  return c


@pytest.mark.parametrize('mesh, field', [
    (dict(ici=(1, 2, 1, 1, 1)), 'mesh.ici'),
    (dict(ici=(-1, 4, 1, 1, 1)), 'mesh.ici'),
    (dict(ici=(1, 1, 1, 1, 1), dcn=(1, 2, 1, 1, 1)), 'mesh.dcn'),
])
def test_pipeline_stages_are_refused_naming_the_field(mesh, field):
  with pytest.raises(ValueError, match=re.escape(field) + '=.*no pipeline stages'):
    validate_posttrain_config(_config(**mesh))


@pytest.mark.parametrize('ici', [(-1, 1, 1), (1, 1, 1, 1, 1), (1, -1, 1, 1, 1)])
def test_meshes_without_stages_pass(ici):
  validate_posttrain_config(_config(ici=ici))  # one device here: a -1 stage entry resolves to 1

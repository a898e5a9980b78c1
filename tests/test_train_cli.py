"""The command line rejects bad configs before compiling anything, naming the field."""

import os
import pathlib
import subprocess
import sys

import pytest

from research.config import base_config
from research.train.validate import validate_config

ROOT = pathlib.Path(__file__).parents[1]


def run_cli(*args):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'experiments.train', '--config=configs/tiny.py',
                         *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize('override,expected', [
    ('--config.train.num_stepz=5', 'num_stepz'),
    ('--config.model.d_model=wide', 'd_model'),
    ('--config.data.seq_len=4096', 'data.seq_len=4096: exceeds the model context'),
    ('--config.train.batch_size=10', 'grad_accum_steps'),
])
def test_bad_overrides_are_rejected_naming_the_field(tmp_path, override, expected):
  extra = ['--config.train.grad_accum_steps=4'] if 'batch_size' in override else []
  result = run_cli(f'--workdir={tmp_path / "run"}', override, *extra)
  assert result.returncode != 0
  assert expected in result.stdout + result.stderr
  assert not (tmp_path / 'run' / 'checkpoints').exists()


@pytest.mark.parametrize('section,field,value,expected', [
    ('train', 'batch_size', 0, 'train.batch_size=0'),
    ('train', 'schedule', 'linear', "train.schedule='linear'"),
    ('data', 'corpus', 'web', "data.corpus='web'"),
    ('data', 'text_dir', '', 'data.text_dir'),
    ('data', 'validation_fraction', 1.5, 'data.validation_fraction=1.5'),
    ('model', 'num_kv_heads', 3, 'model.num_heads=4'),
    ('data', 'unique_tokens', -5, 'data.unique_tokens=-5: must be an integer >= 0'),
    # 1000 steps x 16 x 128 = 2,048,000 tokens: less than one epoch of 3M unique tokens.
    ('data', 'unique_tokens', 3_000_000, 'data.unique_tokens=3000000: the run trains 2,048,000 '
     'tokens, less than one epoch'),
])
def test_validate_config_names_the_field(section, field, value, expected):
  config = base_config()
  if field == 'text_dir':
    config.data.corpus = 'text_dir'
  config[section][field] = value
  with pytest.raises(ValueError) as err:
    validate_config(config, num_devices=1)
  assert expected in str(err.value)


def test_batch_must_divide_over_devices():
  config = base_config()
  config.train.batch_size = 12
  with pytest.raises(ValueError, match='divide evenly over the 8 batch shards'):
    validate_config(config, num_devices=8)
  config.mesh.ici = (2, 1, 4)  # only data x fsdp = 2 ways split the batch
  validate_config(config, num_devices=8)


@pytest.mark.parametrize('ici,dcn,expected', [
    ((3, 1, 1), (1, 1, 1), 'uses 3 devices, but 8 are available'),
    ((-1, -1, 1), (1, 1, 1), 'at most one -1'),
    ((-1, 1, 3), (1, 1, 1), 'does not divide'),
    ((-1, 1, 1), (3, 1, 1), 'slices do not divide'),
    ((1, 1), (1, 1, 1), 'one size per axis'),
])
def test_bad_mesh_is_rejected_naming_the_field(ici, dcn, expected):
  config = base_config()
  config.mesh.ici, config.mesh.dcn = ici, dcn
  with pytest.raises(ValueError, match='mesh.'):
    validate_config(config, num_devices=8)
  with pytest.raises(ValueError, match=expected):
    validate_config(config, num_devices=8)

"""Cooldown branches (`train.init_from`): a branch continues its parent's params, optimizer state
and data exactly, trains its own schedule, and refuses a parent that does not fit."""

import json

import numpy as np
import pytest

from research.config import base_config
from research.train import checkpoint as ckpt
from research.train.loop import train
from research.train.schedules import make_schedule
from research.train.validate import validate_config
from tests.train_helpers import tiny_config, write_corpus

QUIET = dict(log=lambda *_: None)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp('corpus')
  return write_corpus(root / 'text'), root / 'cache'


@pytest.fixture(scope='module')
def parent(corpus, tmp_path_factory):
  """A constant-learning-rate run of 30 steps keeping its checkpoints at steps 10 and 20."""
  workdir = tmp_path_factory.mktemp('parent') / 'run'
  config = tiny_config(*corpus, num_steps=30, schedule='constant', save_steps=(10, 20),
                       checkpoint_every=5, keep_checkpoints=1, eval_every=100)
  train(config, workdir, **QUIET)
  return config, workdir


def branch_config(corpus, parent_dir, step=20, num_steps=25, **overrides):
  config = tiny_config(*corpus, num_steps=num_steps, schedule='wsd', eval_every=100,
                       decay_fraction=(num_steps - step) / num_steps, **overrides)
  config.train.init_from.update(run_dir=str(parent_dir), step=step)
  return config


def metrics(workdir):
  return [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]


def test_parent_keeps_its_branch_points(parent):
  _, workdir = parent
  manager = ckpt.make_manager(workdir, keep=None)
  assert sorted(manager.all_steps()) == [10, 20, 30]  # keep_checkpoints=1, plus the save_steps


def test_branch_is_the_wsd_run_it_stands_for(corpus, parent, tmp_path):
  # Up to step 20 a wsd run of 25 steps with a 5-step cooldown has the parent's constant
  # schedule: the branch from step 20 must end exactly where that run trained from scratch ends.
  _, parent_dir = parent
  branch = train(branch_config(corpus, parent_dir), tmp_path / 'branch', **QUIET)
  scratch = tiny_config(*corpus, num_steps=25, schedule='wsd', decay_fraction=0.2, eval_every=100)
  reference = train(scratch, tmp_path / 'scratch', **QUIET)
  assert branch['step'] == 25 and branch['tokens'] == 25 * 8 * 32
  assert branch['own_tokens'] == 5 * 8 * 32 and branch['init_from']['step'] == 20
  np.testing.assert_allclose(branch['final_eval_loss'], reference['final_eval_loss'], rtol=1e-5)
  np.testing.assert_allclose(branch['final_train_loss'], reference['final_train_loss'], rtol=1e-5)
  lines = [r for r in metrics(tmp_path / 'branch') if 'learning_rate' in r]
  assert [r['step'] for r in lines] == [21, 22, 23, 24, 25]
  peak, floor = 1e-2, 1e-3
  np.testing.assert_allclose([r['learning_rate'] for r in lines],
                             [peak + (floor - peak) * k / 5 for k in range(5)], rtol=1e-5)
  scratch_lines = {r['step']: r['loss'] for r in metrics(tmp_path / 'scratch') if 'loss' in r}
  np.testing.assert_allclose([r['loss'] for r in lines], [scratch_lines[s] for s in range(21, 26)],
                             rtol=1e-5)


def test_one_minus_sqrt_cooldown():
  t = base_config().train
  t.update(schedule='wsd', num_steps=100, warmup_steps=10, decay_fraction=0.25,
           decay_shape='1-sqrt', learning_rate=1.0, min_lr_ratio=0.0)
  schedule = make_schedule(t)
  assert float(schedule(50)) == pytest.approx(1.0)
  for s in (75, 80, 91, 100):
    assert float(schedule(s)) == pytest.approx(1 - np.sqrt((s - 75) / 25), abs=1e-6)


def test_bad_parents_are_refused_naming_the_field(corpus, parent, tmp_path):
  config, parent_dir = parent
  with pytest.raises(ValueError, match=r"train.init_from.run_dir='.*missing': no run directory"):
    train(branch_config(corpus, tmp_path / 'missing'), tmp_path / 'a', **QUIET)
  other = branch_config(corpus, parent_dir)
  other.model.d_ff = 128
  with pytest.raises(ValueError, match=r'(?s)a run of another config.*model.d_ff: 64 in the '
                     'parent, 128 now'):
    train(other, tmp_path / 'b', **QUIET)
  late = branch_config(corpus, parent_dir, step=40, num_steps=50)
  with pytest.raises(ValueError, match='train.init_from.step=40: the parent run trains only 30'):
    train(late, tmp_path / 'c', **QUIET)
  wrong_id = branch_config(corpus, parent_dir)
  wrong_id.train.init_from.run_id = 'abcdef012345'
  with pytest.raises(ValueError, match="not the parent train.init_from.run_id='abcdef012345'"):
    train(wrong_id, tmp_path / 'd', **QUIET)
  with pytest.raises(ValueError, match=r'train.init_from.step=15: the parent .* has no checkpoint '
                     r'there \(it has \[10, 20, 30\]\)'):
    train(branch_config(corpus, parent_dir, step=15, num_steps=20), tmp_path / 'e', **QUIET)
  for d in 'abcd':  # refused before any data is built
    assert not (tmp_path / d / 'checkpoints').exists()
  assert not any((tmp_path / 'e' / 'checkpoints').iterdir())  # nothing saved


def test_a_cooldown_longer_than_the_branch_is_refused(corpus, parent):
  _, parent_dir = parent
  config = branch_config(corpus, parent_dir)
  config.train.decay_fraction = 0.5  # 13 cooldown steps, but only 5 after step 20
  with pytest.raises(ValueError, match=r'train.decay_fraction=0.5: the cooldown of 12 steps is '
                     r'longer than the 5 steps this run trains after its parent\'s step 20'):
    validate_config(config, num_devices=1)
  config.train.init_from.step = 25
  with pytest.raises(ValueError, match=r'train.init_from.step=25: must be an integer in \[1, '):
    validate_config(config, num_devices=1)
  config = base_config()
  config.train.save_steps = (0,)
  with pytest.raises(ValueError, match=r'train.save_steps=\(0,\)'):
    validate_config(config, num_devices=1)

"""Training with each non-causal objective: its batches, and a run that crashes and resumes ending
bitwise equal to one that did not."""

import numpy as np
import pytest

from research.data import build
from research.data import objectives
from research.data import shared_tokenizers
from research.data import tokenizer as tok
from research.train.checkpoint import load_state
from research.train.loop import train
from tests.train_helpers import assert_states_equal, tiny_config, write_corpus


class Crash(Exception):
  pass


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp('objectives')
  return write_corpus(root / 'text', num_docs=20), root / 'cache'


def _config(corpus, objective, **train):
  config = tiny_config(*corpus, num_steps=6, checkpoint_every=3, eval_every=6, **train)
  config.train.objective = objective
  return config


# Three runs each; span corruption (the one with the most state: spans, sentinels, padding) by
# default, the other two with --slow.
@pytest.mark.parametrize('objective', [pytest.param('mlm', marks=pytest.mark.slow),
                                       'span_corruption',
                                       pytest.param('prefix_lm', marks=pytest.mark.slow)])
def test_crash_and_resume_is_bitwise_exact(corpus, tmp_path, objective):
  config = _config(corpus, objective)
  reference = train(config, tmp_path / 'reference', log=lambda *_: None)
  assert reference['status'] == 'completed' and np.isfinite(reference['final_eval_loss'])

  def crash_at_5(step, batch):
    if step == 5:
      raise Crash
    return batch

  with pytest.raises(Crash):
    train(config, tmp_path / 'run', batch_hook=crash_at_5, log=lambda *_: None)
  resumed = train(config, tmp_path / 'run', log=lambda *_: None)  # from the step-3 checkpoint
  assert resumed['final_train_loss'] == reference['final_train_loss']
  assert_states_equal(load_state(tmp_path / 'run')[1], load_state(tmp_path / 'reference')[1])


def test_objective_batches_carry_their_masks_and_tokens(corpus, tmp_path):
  config = _config(corpus, 'span_corruption')
  data = build.build_data(config, str(tmp_path / 'run' / 'tokenizer.json'))
  sentinels = [data.tokenizer.token_to_id(t) for t in objectives.extra_tokens(config.train, 32)]
  assert None not in sentinels and max(sentinels) < config.model.vocab_size
  batch = next(data.train_iter)
  assert set(batch) == {'inputs', 'targets', 'weights', 'in_prefix'}
  for row in range(batch['inputs'].shape[0]):
    prefix = int(batch['in_prefix'][row].sum())
    assert batch['weights'][row, :prefix - 1].sum() == 0  # no loss inside the inputs
    assert batch['targets'][row, prefix - 1] == sentinels[0]  # the targets open with sentinel 0
  config.train.objective = 'mlm'
  data = build.build_data(config, str(tmp_path / 'mlm' / 'tokenizer.json'))
  batch = next(data.train_iter)
  mask = data.tokenizer.token_to_id(objectives.MASK_TOKEN)
  assert batch['in_prefix'].all() and (batch['inputs'] == mask).any()
  assert batch['weights'].mean() == pytest.approx(0.15, abs=0.03)
  assert data.eval_set.num_tokens == int(sum(b['weights'].sum() for b in data.eval_set.batches))


def test_a_sweep_shares_the_tokenizer_with_the_objective_tokens(corpus, tmp_path):
  config = _config(corpus, 'mlm')
  run = tmp_path / 'sweep' / 'r0'
  run.mkdir(parents=True)
  logged = []
  shared_tokenizers.prepare_data([('r0', config, run)], tmp_path / 'sweep' / 'tokenizers',
                                 log=logged.append)
  assert not [line for line in logged if 'warning' in line]
  shared = build.build_data(config, str(run / 'tokenizer.json')).tokenizer  # read, not refit
  own = build.build_data(config, str(tmp_path / 'own' / 'tokenizer.json')).tokenizer
  assert tok.fingerprint(shared) == tok.fingerprint(own)
  assert shared.token_to_id(objectives.MASK_TOKEN) is not None


def test_grad_accumulation_of_a_weighted_loss_is_the_global_weighted_mean():
  """Micro-batches holding different numbers of targets are weighed by them: accumulating four
  micro-batches gives the loss and the update of the whole batch at once."""
  import jax
  from research.config import base_config
  from research.train.optimizer import make_optimizer
  from research.train.state import init_state
  from research.train.step import make_train_step
  c = base_config()
  c.model.update(vocab_size=64, d_model=32, num_layers=1, num_heads=2, num_kv_heads=2, d_ff=64,
                 max_seq_len=16)
  optimizer = make_optimizer(c.train, c.model)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 64, (8, 17))
  weights = np.zeros((8, 16), np.float32)
  for row, count in enumerate((1, 16, 3, 9, 0, 12, 5, 2)):  # very unequal targets per row
    weights[row, rng.choice(16, count, replace=False)] = 1.0
  batch = {'inputs': tokens[:, :-1], 'targets': tokens[:, 1:], 'weights': weights,
           'in_prefix': np.arange(16)[None, :] < rng.integers(1, 8, (8, 1))}
  results = []
  for accum in (1, 4):
    step = jax.jit(make_train_step(c.model, optimizer, grad_accum_steps=accum))
    state, metrics = step(init_state(c.model, optimizer, seed=0), batch)
    results.append((float(metrics['loss']), jax.tree.leaves(state.params)))
  (loss_1, params_1), (loss_4, params_4) = results
  assert loss_4 == pytest.approx(loss_1, rel=1e-5)
  for a, b in zip(params_1, params_4):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)

"""The training loop in-process: it learns, summarises, guards against spikes and NaNs."""

import json
import math

import numpy as np
import pytest

from research import run_dir
from research.train.loop import train
from tests.train_helpers import tiny_config, write_corpus


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp('corpus')
  return write_corpus(root / 'text'), root / 'cache'


def read_metrics(workdir):
  return [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]


def test_trains_below_unigram_entropy_and_writes_summary(corpus, tmp_path):
  config = tiny_config(*corpus, num_steps=60)
  summary = train(config, tmp_path / 'run', log=lambda *_: None)
  assert summary['status'] == 'completed' and summary['step'] == 60
  assert summary['final_eval_loss'] < 0.8 * summary['unigram_entropy_nats']
  for key in ('final_train_loss', 'tokens', 'params_total', 'params_non_embedding'):
    assert key in summary
  assert summary['tokens'] == 60 * 8 * 32
  on_disk = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  assert on_disk['final_eval_loss'] == summary['final_eval_loss']
  steps = [r['step'] for r in read_metrics(tmp_path / 'run') if 'loss' in r]
  assert steps == list(range(1, 61))
  assert (tmp_path / 'run' / 'tokenizer.json').exists()
  assert (tmp_path / 'run' / 'config.json').exists()
  # A finished run is never trained over: the same call returns the stored summary.
  again = train(config, tmp_path / 'run', log=lambda *_: None)
  assert again == on_disk


def test_workdir_of_a_different_config_is_refused(corpus, tmp_path):
  train(tiny_config(*corpus, num_steps=10), tmp_path / 'run', log=lambda *_: None)
  (tmp_path / 'run' / 'summary.json').unlink()
  with pytest.raises(ValueError, match=r'different config[\s\S]*train.learning_rate'):
    train(tiny_config(*corpus, num_steps=10, learning_rate=1e-3), tmp_path / 'run')


def test_corrupted_batch_triggers_rollback_and_training_continues(corpus, tmp_path):
  config = tiny_config(*corpus, num_steps=60, spike_threshold=4.0, spike_window=20,
                       skip_batches_after_rollback=3)
  corrupted = []

  def hook(step, batch):
    if step == 45 and not corrupted:  # one batch of uniform random tokens, once
      corrupted.append(step)
      rng = np.random.default_rng(0)
      tokens = rng.integers(0, config.model.vocab_size, batch['inputs'].shape, dtype=np.int32)
      return {'inputs': tokens, 'targets': np.roll(tokens, 1, axis=1)}
    return batch

  summary = train(config, tmp_path / 'run', batch_hook=hook, log=lambda *_: None)
  assert summary['status'] == 'completed' and summary['rollbacks'] == 1
  # Restored step 40, skipped the 6 batches of steps 41..46 and 3 more.
  assert summary['batches_skipped'] == 46 - 40 + 3
  assert math.isfinite(summary['final_train_loss'])
  events = [r for r in read_metrics(tmp_path / 'run') if r.get('event') == 'rollback']
  assert len(events) == 1 and events[0]['bad_step'] == 46 and events[0]['step'] == 40


def test_a_rollback_to_the_start_does_not_call_the_first_losses_spikes(corpus, tmp_path):
  """No checkpoint before the spike: the run restarts from step 0, whose losses are far above the
  ones the guard had accepted since; the guard must judge them against the restored history."""
  config = tiny_config(*corpus, num_steps=60, spike_threshold=4.0, spike_window=20,
                       checkpoint_every=1000, skip_batches_after_rollback=3)
  corrupted = []

  def hook(step, batch):
    if step == 45 and not corrupted:
      corrupted.append(step)
      tokens = np.random.default_rng(0).integers(0, config.model.vocab_size,
                                                 batch['inputs'].shape, dtype=np.int32)
      return {'inputs': tokens, 'targets': np.roll(tokens, 1, axis=1)}
    return batch

  summary = train(config, tmp_path / 'run', batch_hook=hook, log=lambda *_: None)
  assert summary['status'] == 'completed' and summary['rollbacks'] == 1
  events = [r for r in read_metrics(tmp_path / 'run') if r.get('event') == 'rollback']
  assert len(events) == 1 and events[0]['step'] == 0 and events[0]['bad_step'] == 46


def test_persistent_nan_ends_in_diverged(corpus, tmp_path):
  config = tiny_config(*corpus, num_steps=60, max_rollbacks=2)

  def hook(step, batch):
    if step >= 25:  # out-of-vocabulary ids: the embedding gather yields NaN
      return {k: np.full_like(v, config.model.vocab_size + 7) for k, v in batch.items()}
    return batch

  summary = train(config, tmp_path / 'run', batch_hook=hook, log=lambda *_: None)
  assert summary['status'] == 'diverged' and summary['rollbacks'] == 3
  assert run_dir.read_summary(tmp_path / 'run')['status'] == 'diverged'


def test_grad_accumulation_matches_one_big_batch(corpus, tmp_path):
  a = train(tiny_config(*corpus, num_steps=5, checkpoint_every=5), tmp_path / 'a',
            log=lambda *_: None)
  b = train(tiny_config(*corpus, num_steps=5, checkpoint_every=5, grad_accum_steps=4),
            tmp_path / 'b', log=lambda *_: None)
  assert a['final_train_loss'] == pytest.approx(b['final_train_loss'], rel=1e-5)


def test_profile_writes_a_trace(corpus, tmp_path):
  train(tiny_config(*corpus, num_steps=12), tmp_path / 'run', log=lambda *_: None, profile=True)
  traces = list((tmp_path / 'run' / 'profile').rglob('*.xplane.pb'))
  assert traces and traces[0].stat().st_size > 0

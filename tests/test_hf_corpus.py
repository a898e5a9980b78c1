"""Hugging Face datasets as a corpus (`data.corpus='hf'`), offline on a `save_to_disk` directory:
the splits hold exactly the saved documents, streaming reads the same, the grain pipeline built on
it resumes exactly from a saved iterator state, and a training run on it preempted and resumed
ends bitwise equal to an uninterrupted one."""

import random

import numpy as np
import pytest

from research import run_dir
from research.config import base_config
from research.data import corpus
from research.data import hf_corpus
from research.data.build import build_data
from research.train.checkpoint import load_state
from research.train.loop import train
from research.train.validate import validate_config
from tests.train_helpers import assert_states_equal, preempt_at

datasets = pytest.importorskip('datasets')

WORDS = 'the of and a to in is was he that it his for as with on by at'.split()


def texts(n, seed):
  rng = random.Random(seed)
  return [' '.join(rng.choice(WORDS) for _ in range(rng.randint(40, 120))) for _ in range(n)]


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  """A DatasetDict: a train and a test split (text in "body", and an id column), one blank."""
  root = tmp_path_factory.mktemp('hf')
  train, test = texts(60, 1) + ['   '], texts(10, 2)
  datasets.DatasetDict({
      'train': datasets.Dataset.from_dict({'body': train, 'id': list(range(len(train)))}),
      'test': datasets.Dataset.from_dict({'body': test, 'id': list(range(len(test)))}),
  }).save_to_disk(str(root / 'saved'))
  return root, train, test


def config_for(root, **data):
  c = base_config()
  c.model.vocab_size = 320
  c.data.update(corpus='hf', hf_name=str(root / 'saved'), hf_text_field='body',
                data_dir=str(root / 'cache'), seq_len=16, eval_batches=1, validation_fraction=0.2)
  c.data.update(data)
  c.train.batch_size = 4
  return c


def split_texts(c, split):
  hf_corpus._LOADED.clear()  # pylint: disable=protected-access
  return list(corpus.load_split(c.data, split))


def test_splits_hold_exactly_the_saved_documents_streamed_or_not(saved):
  root, train, test = saved
  c = config_for(root)
  held_train, held_out = split_texts(c, 'train'), split_texts(c, 'validation')
  assert sorted(held_train + held_out) == sorted(t for t in train if t.strip())
  assert held_train and held_out and not set(held_train) & set(held_out)
  c.data.hf_streaming = True
  assert split_texts(c, 'train') == held_train and split_texts(c, 'validation') == held_out
  c = config_for(root, hf_validation_split='test', hf_max_documents=30)
  assert split_texts(c, 'train') == train[:30] and split_texts(c, 'validation') == test


def test_bad_names_are_errors_naming_the_field(saved):
  root, _, _ = saved
  with pytest.raises(KeyError, match="'text'.*data.hf_text_field"):
    split_texts(config_for(root, hf_text_field='text'), 'train')
  with pytest.raises(ValueError, match="data.hf_split='dev'"):
    split_texts(config_for(root, hf_split='dev'), 'train')
  with pytest.raises(ValueError, match='data.hf_name'):
    validate_config(config_for(root, hf_name=''))


def test_the_pipeline_on_an_hf_corpus_resumes_exactly(saved, tmp_path):
  root, _, _ = saved
  hf_corpus._LOADED.clear()  # pylint: disable=protected-access
  c = config_for(root)
  tokenizer_path = str(tmp_path / 'tokenizer.json')
  data = build_data(c, tokenizer_path)
  for _ in range(5):
    next(data.train_iter)
  state = data.train_iter.get_state()
  expected = [next(data.train_iter)['inputs'] for _ in range(4)]
  resumed = build_data(c, tokenizer_path)  # a restarted process: the saved tokenizer, the cache
  resumed.train_iter.set_state(state)
  for batch in expected:
    np.testing.assert_array_equal(next(resumed.train_iter)['inputs'], batch)
  assert data.train_tokens > data.validation_tokens > 0


def test_training_on_an_hf_corpus_preempted_and_resumed_ends_bitwise_equal(saved, tmp_path):
  """A SIGTERM at step 5 saves and stops the run; run again, it resumes from that checkpoint
  (params, optimizer and the HF corpus's iterator) and ends as the uninterrupted run."""
  root, _, _ = saved
  c = config_for(root)
  c.model.update(d_model=32, num_layers=2, num_heads=2, num_kv_heads=2, d_ff=64, max_seq_len=16)
  c.train.update(num_steps=8, checkpoint_every=4, eval_every=8, warmup_steps=2, log_every=1)
  quiet = dict(log=lambda *_: None)
  expected = train(c, tmp_path / 'uninterrupted', **quiet)
  assert expected['status'] == 'completed'

  workdir = tmp_path / 'preempted'
  assert train(c, workdir, batch_hook=preempt_at(5), **quiet) == {'status': 'preempted',
                                                                      'step': 5}
  lines = []
  assert train(c, workdir, log=lines.append)['status'] == 'completed'
  assert 'resumed from the checkpoint at step 5' in lines, lines
  (step, state), (_, reference) = load_state(workdir), load_state(tmp_path / 'uninterrupted')
  assert step == 8
  assert_states_equal(state, reference)
  assert run_dir.read_summary(workdir)['final_eval_loss'] == expected['final_eval_loss']

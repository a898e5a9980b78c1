"""Weighted mixtures of train sources: proportions, reproducibility, exact resume, processes,
the config string and its errors, and a run's data built from a mixture."""

import os
import random

import numpy as np
import pytest

from research.config import base_config
from research.data import build
from research.data import mixture
from research.data import pipeline

SEQ_LEN = 8


def streams():
  """Two token streams whose ids tell them apart: source 0 < 1000 <= source 1."""
  rng = np.random.default_rng(0)
  return [rng.integers(0, 1000, 4000).astype(np.int32),
          rng.integers(1000, 2000, 1500).astype(np.int32)]


def _source_of_rows(batch):
  return (batch['inputs'] >= 1000).all(axis=1).astype(int) - (batch['inputs'] < 1000).all(axis=1)


def test_rows_follow_the_weights_and_every_row_is_a_window_of_one_source():
  dataset = mixture.train_dataset(streams(), [3.0, 1.0], SEQ_LEN, 8, seed=0)
  rows = np.concatenate([_source_of_rows(dataset[i]) for i in range(200)])  # 1600 rows
  assert set(rows) == {-1, 1}  # no row mixes sources
  assert (rows == 1).mean() == pytest.approx(0.25, abs=0.01)
  batch = dataset[3]
  np.testing.assert_array_equal(batch['inputs'][:, 1:], batch['targets'][:, :-1])
  # Past the smaller source's size (187 windows) it repeats: the mix runs on.
  assert len(dataset) > 10**6


def test_mixture_is_reproducible_resumes_exactly_and_splits_over_processes():
  make = lambda seed, p=0, n=1: mixture.train_dataset(streams(), [1.0, 2.0], SEQ_LEN, 4, seed,
                                                      p, n)
  first = pipeline.iterate(make(0))
  head = [next(first) for _ in range(5)]
  state = first.get_state()
  tail = [next(first) for _ in range(5)]
  again = pipeline.iterate(make(0))
  for expected in head:
    np.testing.assert_array_equal(next(again)['inputs'], expected['inputs'])
  resumed = pipeline.iterate(make(0))
  resumed.set_state(state)
  for expected in tail:
    np.testing.assert_array_equal(next(resumed)['inputs'], expected['inputs'])
  other_seed = next(pipeline.iterate(make(1)))['inputs']
  assert not np.array_equal(other_seed, head[0]['inputs'])
  halves = [next(pipeline.iterate(make(0, p, 2)))['inputs'] for p in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), head[0]['inputs'])


def test_zero_weight_leaves_a_source_out():
  dataset = mixture.train_dataset(streams(), [0.0, 1.0], SEQ_LEN, 8, seed=0)
  assert set(np.concatenate([_source_of_rows(dataset[i]) for i in range(20)])) == {1}


@pytest.mark.parametrize('spec, weight, message', [
    ('/a:-1', 1.0, r'data.mixture \(/a\): weight -1.0 must be finite and >= 0'),
    ('/a:1', -0.5, r'data.mixture_weight: weight -0.5'),
    ('/a:0', 0.0, r'sum to zero'),
    ('/a:nan', 1.0, r'weight nan'),
    ('/a', 1.0, r"'/a' is not DIR:WEIGHT"),
    ('/a:x', 1.0, r"'/a:x' is not DIR:WEIGHT"),
])
def test_bad_mixtures_name_the_field(spec, weight, message):
  with pytest.raises(ValueError, match=message):
    mixture.parse(spec, weight)


def test_parse():
  assert mixture.parse('', 1.0) == []
  assert mixture.parse('/data/code:0.25, C:/x:2', 0.75) == [('', 0.75), ('/data/code', 0.25),
                                                           ('C:/x', 2.0)]


def _write_docs(directory, word, count, seed):
  os.makedirs(directory)
  rng = random.Random(seed)
  for i in range(count):
    text = ' '.join(f'{word}{rng.randrange(5)}' for _ in range(rng.randint(60, 120)))
    (directory / f'{i}.txt').write_text(text)


def test_build_data_mixes_a_second_directory(tmp_path):
  _write_docs(tmp_path / 'main', 'alpha', 30, 0)
  _write_docs(tmp_path / 'extra', 'beta', 30, 1)
  config = base_config()
  config.model.vocab_size = 300
  config.data.update(corpus='text_dir', text_dir=str(tmp_path / 'main'),
                     data_dir=str(tmp_path / 'cache'), seq_len=16, eval_batches=1,
                     mixture=f'{tmp_path / "extra"}:1', mixture_weight=1.0)
  config.train.batch_size = 4
  data = build.build_data(config, str(tmp_path / 'run' / 'tokenizer.json'))
  texts = [data.tokenizer.decode(row.tolist()) for _ in range(5)
           for row in next(data.train_iter)['inputs']]
  from_extra = sum('beta' in t and 'alpha' not in t for t in texts)
  assert from_extra == len(texts) // 2  # 1:1, interleaved row by row
  config.data.unique_tokens = 1000
  with pytest.raises(ValueError, match='data.unique_tokens and data.mixture'):
    build.build_data(config, str(tmp_path / 'run' / 'tokenizer.json'))

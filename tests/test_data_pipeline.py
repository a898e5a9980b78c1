"""The grain pipeline: packing, shuffling, exact resume, per-process sharding, eval bytes."""

import math
import os
import random

import grain
import numpy as np
import pytest
from etils import epath

from research.config import base_config
from research.data import build_data
from research.data import pipeline
from research.data import tokenizer as tok

WORDS = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu'.split()
SEQ_LEN = 16


def make_texts(n=40, seed=0):
  rng = random.Random(seed)
  texts = [' '.join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) for _ in range(n)]
  texts[7] = ' '.join(WORDS * 12)  # longer than several windows
  return texts


@pytest.fixture(scope='module')
def tokenizer():
  return tok.train_tokenizer(make_texts(), vocab_size=320, max_chars=10**6)


@pytest.fixture(scope='module')
def stream(tokenizer):
  return pipeline.tokenize_documents(tokenizer, make_texts(), tok.special_ids(tokenizer).eos)


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


def test_stream_is_documents_with_eos_separators(tokenizer, stream):
  eos = tok.special_ids(tokenizer).eos
  expected = []
  for ids in tok.encode_texts(tokenizer, make_texts()):
    expected += ids + [eos]
  np.testing.assert_array_equal(stream, expected)
  assert stream.dtype == np.int32


def test_windows_pack_the_stream_and_split_long_documents(tokenizer, stream):
  windows = pipeline.num_windows(len(stream), SEQ_LEN)
  examples = [pipeline.WindowToExample(stream, SEQ_LEN)(i) for i in range(windows)]
  for e in examples:
    assert e['inputs'].shape == e['targets'].shape == (SEQ_LEN,)
    np.testing.assert_array_equal(e['inputs'][1:], e['targets'][:-1])
  # Inputs laid end to end, plus the last target, give back the stream: nothing lost or repeated.
  rebuilt = np.concatenate([e['inputs'] for e in examples] + [examples[-1]['targets'][-1:]])
  np.testing.assert_array_equal(rebuilt, stream[:windows * SEQ_LEN + 1])
  assert len(stream) - len(rebuilt) < SEQ_LEN
  # The long document (no EOS inside) spans several consecutive windows.
  eos = tok.special_ids(tokenizer).eos
  spans = [i for i, e in enumerate(examples) if eos not in e['inputs']]
  assert len(spans) >= 3
  long_ids = tok.encode_texts(tokenizer, [make_texts()[7]])[0]
  assert len(long_ids) > 3 * SEQ_LEN


def test_batches_are_int32_windows_of_the_stream(stream):
  batch = next(pipeline.train_iterator(stream, SEQ_LEN, 8, seed=0))
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      'inputs': ((8, SEQ_LEN), np.int32), 'targets': ((8, SEQ_LEN), np.int32)}
  for row_in, row_t in zip(batch['inputs'], batch['targets']):
    starts = [s for s in range(0, len(stream) - SEQ_LEN, SEQ_LEN)
              if np.array_equal(stream[s:s + SEQ_LEN], row_in)]
    assert starts and np.array_equal(stream[starts[0] + 1:starts[0] + SEQ_LEN + 1], row_t)


def test_shuffle_is_seeded_and_reshuffles_every_epoch(stream):
  windows = pipeline.num_windows(len(stream), SEQ_LEN)
  a = take(pipeline.train_iterator(stream, SEQ_LEN, 4, seed=1), 10)
  assert_same_batches(a, take(pipeline.train_iterator(stream, SEQ_LEN, 4, seed=1), 10))
  other = take(pipeline.train_iterator(stream, SEQ_LEN, 4, seed=2), 10)
  assert not all(np.array_equal(x['inputs'], y['inputs']) for x, y in zip(a, other))
  # Window ids, via a batch of 1: each epoch is a permutation of every window, in a new order.
  ids = pipeline.train_dataset(np.arange(windows * SEQ_LEN + 1, dtype=np.int32), SEQ_LEN, 1, 1)
  order = [int(ids[i]['inputs'][0, 0]) // SEQ_LEN for i in range(2 * windows)]
  first, second = order[:windows], order[windows:]
  assert sorted(first) == sorted(second) == list(range(windows))
  assert first != second and first != list(range(windows))


def test_unique_tokens_repeat_an_evenly_spread_subset_every_epoch(stream):
  windows = pipeline.num_windows(len(stream), SEQ_LEN)
  unique = 7 * SEQ_LEN + 5  # 7 windows' worth (the remainder is dropped)
  subset = pipeline.unique_windows(windows, unique, SEQ_LEN, 1)
  assert len(subset) == 7 and np.all(np.diff(subset) > 0)
  assert subset[0] == 0 and subset[-1] >= windows - windows // 7 - 1  # spread over the split
  ids = pipeline.train_dataset(np.arange(windows * SEQ_LEN + 1, dtype=np.int32), SEQ_LEN, 1, 1,
                               unique_tokens=unique)
  order = [int(ids[i]['inputs'][0, 0]) // SEQ_LEN for i in range(3 * 7)]
  epochs = [order[7 * e:7 * (e + 1)] for e in range(3)]
  assert all(sorted(e) == sorted(subset.tolist()) for e in epochs)  # every epoch: the subset
  assert epochs[0] != epochs[1]  # reshuffled
  with pytest.raises(ValueError, match=r'data.unique_tokens=1,000,000: the train split has only'):
    pipeline.train_dataset(stream, SEQ_LEN, 4, 0, unique_tokens=10**6)
  with pytest.raises(ValueError, match=r'data.unique_tokens=32: 2 windows .* fewer than one batch'):
    pipeline.train_dataset(stream, SEQ_LEN, 4, 0, unique_tokens=2 * SEQ_LEN)


def test_restored_iterator_yields_the_same_next_batches(stream, tmp_path):
  windows = pipeline.num_windows(len(stream), SEQ_LEN)
  steps_per_epoch = windows // 4
  iterator = pipeline.train_iterator(stream, SEQ_LEN, 4, seed=3)
  take(iterator, steps_per_epoch - 2)  # stop mid-epoch, just before the boundary
  state = iterator.get_state()
  grain.checkpoint.CheckpointHandler().save(epath.Path(tmp_path), item=iterator)
  expected = take(iterator, 6)  # crosses into the next epoch
  restored = pipeline.train_iterator(stream, SEQ_LEN, 4, seed=3)
  restored.set_state(state)
  assert_same_batches(take(restored, 6), expected)
  from_disk = grain.checkpoint.CheckpointHandler().restore(
      epath.Path(tmp_path), item=pipeline.train_iterator(stream, SEQ_LEN, 4, seed=3))
  assert_same_batches(take(from_disk, 6), expected)


@pytest.mark.parametrize('process_count', [2, 4])
def test_processes_together_read_the_single_process_global_batch(stream, process_count):
  global_batch = 8
  single = take(pipeline.train_iterator(stream, SEQ_LEN, global_batch, seed=5), 12)
  local = [take(pipeline.train_iterator(stream, SEQ_LEN, global_batch, 5, p, process_count), 12)
           for p in range(process_count)]
  for step in range(12):
    for k in ('inputs', 'targets'):
      assert local[0][step][k].shape == (global_batch // process_count, SEQ_LEN)
      stacked = np.concatenate([local[p][step][k] for p in range(process_count)])
      np.testing.assert_array_equal(stacked, single[step][k])


def test_pipeline_errors_name_the_problem(stream):
  with pytest.raises(ValueError, match='train.batch_size=6 must be a positive multiple of the '
                     'process count 4'):
    pipeline.train_dataset(stream, SEQ_LEN, 6, 0, 0, 4)
  with pytest.raises(ValueError, match=r'data.seq_len\+1=.*fewer than'):
    pipeline.train_dataset(stream[:40], SEQ_LEN, 8, 0)


def test_eval_batches_are_fixed_disjoint_and_count_their_bytes(tokenizer, stream):
  lengths_V = tok.token_byte_lengths(tokenizer)
  eval_set = pipeline.eval_batches(stream, SEQ_LEN, 4, 3, lengths_V)
  again = pipeline.eval_batches(stream, SEQ_LEN, 4, 3, lengths_V)
  assert_same_batches(eval_set.batches, again.batches)
  assert len(eval_set.batches) == 3 and eval_set.num_tokens == 3 * 4 * SEQ_LEN
  rows = [tuple(r) for b in eval_set.batches for r in b['targets']]
  assert len(set(rows)) == len(rows)  # no window twice
  # Bytes are those of the target text (EOS targets cover none): decode each row and count.
  text_bytes = sum(len(tokenizer.decode(list(r)).encode('utf-8')) for r in rows)
  assert eval_set.num_bytes == text_bytes
  # A model with uniform predictions over V tokens has log2(V) bits per token.
  vocab = tokenizer.get_vocab_size()
  nats = eval_set.num_tokens * math.log(vocab)
  bits_per_byte = nats / math.log(2) / eval_set.num_bytes
  assert bits_per_byte == pytest.approx(math.log2(vocab) * eval_set.num_tokens / text_bytes)
  # Per-process rows stack to the global batch; bytes stay global.
  halves = [pipeline.eval_batches(stream, SEQ_LEN, 4, 3, lengths_V, p, 2) for p in range(2)]
  for b in range(3):
    np.testing.assert_array_equal(
        np.concatenate([h.batches[b]['targets'] for h in halves]), eval_set.batches[b]['targets'])
  assert halves[0].num_bytes == halves[1].num_bytes == eval_set.num_bytes
  # A short split gives fewer batches rather than repeating windows.
  windows = pipeline.num_windows(len(stream), SEQ_LEN)
  assert len(pipeline.eval_batches(stream, SEQ_LEN, 4, 10**6, lengths_V).batches) == windows // 4


def test_build_data_end_to_end(tmp_path):
  docs = tmp_path / 'docs'
  os.makedirs(docs)
  for i, text in enumerate(make_texts(80)):
    (docs / f'{i}.txt').write_text(text)
  config = base_config()
  config.model.vocab_size = 320
  config.data.update(corpus='text_dir', text_dir=str(docs), data_dir=str(tmp_path / 'cache'),
                     seq_len=SEQ_LEN, eval_batches=2, validation_fraction=0.2)
  config.train.batch_size = 4
  tokenizer_path = str(tmp_path / 'run' / 'tokenizer.json')
  data = build_data(config, tokenizer_path)
  assert os.path.exists(tokenizer_path)
  assert data.special_ids.eos == 2 and data.tokenizer.get_vocab_size() <= 320
  batch = next(data.train_iter)
  assert batch['inputs'].shape == (4, SEQ_LEN) and batch['inputs'].dtype == np.int32
  assert len(data.eval_set.batches) == 2 and data.eval_set.num_bytes > 0
  assert data.bytes_per_token > 1.0
  assert data.train_tokens > data.validation_tokens > 0
  assert 0 < data.unigram_entropy_nats < math.log(320)
  # A second build (a resumed run, or another process) reuses the saved tokenizer and caches.
  again = build_data(config, tokenizer_path, process_index=1, process_count=2)
  assert tok.fingerprint(again.tokenizer) == tok.fingerprint(data.tokenizer)
  assert again.unigram_entropy_nats == data.unigram_entropy_nats
  np.testing.assert_array_equal(next(again.train_iter)['inputs'], batch['inputs'][2:])
  config.model.vocab_size = 300
  with pytest.raises(ValueError, match='model.vocab_size=300'):
    build_data(config, tokenizer_path)

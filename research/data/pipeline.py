"""The grain input pipeline: tokenize once, pack into windows, shuffle, batch and shard.

A split is tokenized once into one stream `doc0 EOS doc1 EOS ...` cached as `.npy`. Window `i` is
`stream[i*T : i*T + T + 1]` (T = seq_len): consecutive windows overlap by one token, so every token
after the first is a target exactly once and a long document runs on across windows. Windows are
random access, so the pipeline is a grain `MapDataset` (range -> shuffle -> repeat -> map -> batch
-> slice) whose iterator state is just the next step: it resumes exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterable

import grain
import numpy as np
from tokenizers import Tokenizer

from research.data import tokenizer as tokenizer_lib

_ENCODE_CHUNK = 256  # documents per call into the (multi-threaded) Rust encoder
# Training repeats the windows for this many in all: endless in practice. (`repeat(None)` has
# length sys.maxsize, which grain's `batch` turns into a float and overflows for batches of 1.)
ENDLESS_WINDOWS = 2**40
# The windows live in memory: a couple of threads and a short prefetch overlap them with training.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


def tokenize_documents(tokenizer: Tokenizer, texts: Iterable[str], eos_id: int) -> np.ndarray:
  """One int32 stream of every text's tokens, each followed by `eos_id`. Shape [N]."""
  encoder = tokenizer_lib.text_encoder(tokenizer)
  pieces, chunk = [], []

  def flush():
    ids = []
    for encoding in encoder.encode_batch_fast(chunk, add_special_tokens=False):
      ids += encoding.ids
      ids.append(eos_id)
    pieces.append(np.asarray(ids, np.int32))
    chunk.clear()

  for text in texts:
    chunk.append(text)
    if len(chunk) == _ENCODE_CHUNK:
      flush()
  flush()
  return np.concatenate(pieces) if pieces else np.zeros([0], np.int32)


def token_stream(source, tokenizer: Tokenizer, cache_dir: str) -> np.ndarray:
  """The tokenized split `source`, cached (memory-mapped) under `cache_dir/tokens/`.

  The cache key hashes the tokenizer and `source.fingerprint`, so a new tokenizer or changed
  documents never reuse stale tokens. Writes are atomic: concurrent processes may share the cache.
  """
  key = hashlib.sha256(
      f'{tokenizer_lib.fingerprint(tokenizer)}\0{source.fingerprint}'.encode()).hexdigest()[:24]
  path = os.path.join(cache_dir, 'tokens', f'{key}.npy')
  if not os.path.exists(path):
    eos = tokenizer_lib.special_ids(tokenizer).eos
    stream_T = tokenize_documents(tokenizer, source, eos)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.tmp.{os.getpid()}.npy'
    np.save(tmp, stream_T)
    os.replace(tmp, path)
  return np.load(path, mmap_mode='r')


def num_windows(num_tokens: int, seq_len: int) -> int:
  """How many windows of seq_len + 1 tokens, stepping by seq_len, fit in a stream."""
  return max(num_tokens - 1, 0) // seq_len


@dataclasses.dataclass(frozen=True)
class WindowToExample:
  """Window index -> {'inputs': [T], 'targets': [T]} int32, targets shifted by one token; with
  `windows_K`, index i reads window windows_K[i] (a subset of the stream)."""
  stream_T: np.ndarray
  seq_len: int
  windows_K: np.ndarray | None = None

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    if self.windows_K is not None:
      index = self.windows_K[int(index)]
    start = int(index) * self.seq_len
    window_T1 = np.asarray(self.stream_T[start:start + self.seq_len + 1], np.int32)
    return {'inputs': window_T1[:-1], 'targets': window_T1[1:]}


def local_batch_size(global_batch_size: int, process_count: int) -> int:
  """Rows of the global batch that each process reads."""
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(f'train.batch_size={global_batch_size} must be a positive multiple of the '
                     f'process count {process_count}.')
  return global_batch_size // process_count


def _check_windows(stream_T: np.ndarray, seq_len: int, needed: int, what: str) -> int:
  if seq_len <= 0:
    raise ValueError(f'data.seq_len={seq_len} must be positive.')
  windows = num_windows(len(stream_T), seq_len)
  if windows < needed:
    raise ValueError(f'The {what} split has {len(stream_T)} tokens: {windows} windows of '
                     f'data.seq_len+1={seq_len + 1}, fewer than the {needed} one batch needs. '
                     'Use more text, a shorter data.seq_len or a smaller batch.')
  return windows


def unique_windows(num_windows_total: int, unique_tokens: int, seq_len: int,
                   global_batch_size: int) -> np.ndarray:
  """The windows a run limited to `unique_tokens` distinct training tokens repeats: U // T of
  them, spread evenly over the split (so the subset samples the whole corpus, not its first
  documents). A ValueError names data.unique_tokens if the split is smaller or a batch larger."""
  count = unique_tokens // seq_len
  if count > num_windows_total:
    raise ValueError(f'data.unique_tokens={unique_tokens:,}: the train split has only '
                     f'{num_windows_total * seq_len:,} tokens ({num_windows_total} windows)')
  if count < global_batch_size:
    raise ValueError(f'data.unique_tokens={unique_tokens:,}: {count} windows of '
                     f'data.seq_len={seq_len}, fewer than one batch of {global_batch_size}')
  return (np.arange(count, dtype=np.int64) * num_windows_total) // count


def train_dataset(stream_T: np.ndarray, seq_len: int, global_batch_size: int, seed: int,
                  process_index: int = 0, process_count: int = 1,
                  unique_tokens: int = 0, transform=None) -> grain.MapDataset:
  """This process's batches, endless and reshuffled every epoch: [B/P, T] inputs and targets.

  Global step s holds the shuffled windows [s*B, (s+1)*B); process p reads rows [p*B/P, (p+1)*B/P)
  of it and nothing else, so the processes' batches of one step stack to the single-process batch.
  With `unique_tokens` > 0 an epoch is the `unique_windows` subset only, repeated as often as the
  run needs (data-constrained training, Muennighoff et al. 2023). `transform(example, rng)` (an
  objectives.Objective) rewrites each window with an rng seeded by its position in the dataset.
  """
  local = local_batch_size(global_batch_size, process_count)
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} must lie in [0, {process_count}).')
  windows = _check_windows(stream_T, seq_len, global_batch_size, 'train')
  subset = None
  if unique_tokens:
    subset = unique_windows(windows, unique_tokens, seq_len, global_batch_size)
    windows = len(subset)
  examples = (grain.MapDataset.range(windows)
              .shuffle(seed=seed)
              .repeat(max(1, ENDLESS_WINDOWS // windows))  # epoch e is shuffled with seed + e
              .map(WindowToExample(stream_T, seq_len, subset)))
  if transform is not None:
    examples = examples.random_map(transform, seed=seed)
  return examples.batch(local).slice(slice(process_index, None, process_count))


def iterate(dataset: grain.MapDataset) -> grain.DatasetIterator:
  """A prefetching iterator; `get_state()`/`set_state()` save and restore its exact position."""
  return iter(dataset.to_iter_dataset(_READ_OPTIONS))


def train_iterator(stream_T: np.ndarray, seq_len: int, global_batch_size: int, seed: int,
                   process_index: int = 0,
                   process_count: int = 1) -> grain.DatasetIterator:
  """An iterator over `train_dataset` (see `iterate`)."""
  return iterate(train_dataset(stream_T, seq_len, global_batch_size, seed, process_index,
                               process_count))


@dataclasses.dataclass(frozen=True)
class EvalSet:
  """A fixed validation set: this process's batches, and what the whole (global) set covers.

  bits per byte = (sum of -ln p(target) over every target of every global batch, EOS targets
  included) / ln 2 / num_bytes. `num_bytes` counts the UTF-8 bytes of the target tokens (EOS: 0).
  """
  batches: list[dict[str, np.ndarray]]
  num_bytes: int  # over the global batches, all processes together
  num_tokens: int  # targets in the global batches


def eval_batches(stream_T: np.ndarray, seq_len: int, global_batch_size: int, num_batches: int,
                 byte_lengths_V: np.ndarray, process_index: int = 0,
                 process_count: int = 1, transform=None) -> EvalSet:
  """`num_batches` validation batches of windows spread evenly over the split (fewer if short).

  Windows never repeat, and their targets are disjoint, so no byte or token is counted twice.
  With `transform` (an objective) window i is rewritten with an rng seeded by i, and only the
  targets of weight 1 count (`num_tokens`, `num_bytes`).
  """
  local = local_batch_size(global_batch_size, process_count)
  if num_batches <= 0:
    raise ValueError(f'data.eval_batches={num_batches} must be positive.')
  windows = _check_windows(stream_T, seq_len, global_batch_size, 'validation')
  num_batches = min(num_batches, windows // global_batch_size)
  count = num_batches * global_batch_size
  index_G = (np.arange(count) * windows) // count  # evenly spread, strictly increasing
  to_example = WindowToExample(stream_T, seq_len)
  batches, num_bytes = [], 0
  num_tokens = count * seq_len
  for b in range(num_batches):
    rows = [to_example(i) for i in index_G[b * global_batch_size:(b + 1) * global_batch_size]]
    if transform is not None:
      rows = [transform(r, np.random.default_rng(int(i))) for r, i in
              zip(rows, index_G[b * global_batch_size:(b + 1) * global_batch_size])]
    targets_BxT = np.stack([r['targets'] for r in rows])
    if transform is None:
      num_bytes += int(byte_lengths_V[targets_BxT].sum())
    else:
      weights_BxT = np.stack([r['weights'] for r in rows])
      num_bytes += int((byte_lengths_V[targets_BxT] * weights_BxT).sum())
      num_tokens -= int((weights_BxT == 0).sum())
    mine = rows[process_index * local:(process_index + 1) * local]
    batches.append({k: np.stack([r[k] for r in mine]) for k in rows[0]})
  return EvalSet(batches=batches, num_bytes=num_bytes, num_tokens=num_tokens)

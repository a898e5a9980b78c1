"""Training on several sources at once, with weights: grain's `MapDataset.mix` over each source's
shuffled windows.

`data.mixture='DIR:WEIGHT,DIR:WEIGHT'` adds directories of .txt files (their train splits) to
`data.corpus`, which has weight `data.mixture_weight`. Each source is shuffled on its own (seed +
its position) and repeated; the mix interleaves them deterministically in proportion to the
weights, so the batches are reproducible and, being random access, resume exactly. The tokenizer
is fitted on `data.corpus` alone, and evaluation stays on its validation split.
"""

from __future__ import annotations

import math
from typing import Sequence

import grain
import numpy as np

from research.data import pipeline


def parse(spec: str, corpus_weight: float) -> list[tuple[str, float]]:
  """[('', corpus_weight), (dir, weight), ...] from `data.mixture` (empty: no mixture)."""
  if not spec.strip():
    return []
  sources = [('', corpus_weight)]
  for entry in spec.split(','):
    directory, sep, weight = entry.strip().rpartition(':')
    try:
      value = float(weight)
    except ValueError:
      value = None
    if not sep or not directory or value is None:
      raise ValueError(f'data.mixture={spec!r}: {entry!r} is not DIR:WEIGHT.')
    sources.append((directory, value))
  check_weights([w for _, w in sources], [d or 'data.corpus' for d, _ in sources])
  return sources


def check_weights(weights: Sequence[float], names: Sequence[str]) -> None:
  """ValueError naming the source when a weight is negative or not finite, or all are zero."""
  for name, weight in zip(names, weights):
    if not math.isfinite(weight) or weight < 0:
      field = 'data.mixture_weight' if name == 'data.corpus' else f'data.mixture ({name})'
      raise ValueError(f'{field}: weight {weight} must be finite and >= 0.')
  if sum(weights) <= 0:
    raise ValueError(f'data.mixture: the weights {list(weights)} sum to zero; at least one source '
                     'needs a positive weight.')


def train_dataset(streams: Sequence[np.ndarray], weights: Sequence[float], seq_len: int,
                  global_batch_size: int, seed: int, process_index: int = 0,
                  process_count: int = 1, transform=None) -> grain.MapDataset:
  """This process's batches of the weighted mix of `streams` ([B/P, T] inputs and targets);
  sources of weight 0 are left out. `transform`: an objective, as in pipeline.train_dataset."""
  check_weights(weights, [f'source {i}' for i in range(len(weights))])
  local = pipeline.local_batch_size(global_batch_size, process_count)
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} must lie in [0, {process_count}).')
  parts, kept = [], []
  for k, (stream_T, weight) in enumerate(zip(streams, weights)):
    if weight == 0:
      continue
    windows = pipeline.num_windows(len(stream_T), seq_len)
    if windows == 0:
      raise ValueError(f'data.mixture: source {k} has {len(stream_T)} tokens, not one window of '
                       f'data.seq_len+1={seq_len + 1}.')
    parts.append(grain.MapDataset.range(windows)
                 .shuffle(seed=seed + k)
                 .repeat(max(1, pipeline.ENDLESS_WINDOWS // windows))
                 .map(pipeline.WindowToExample(stream_T, seq_len)))
    kept.append(weight)
  mixed = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, kept)
  if transform is not None:
    mixed = mixed.random_map(transform, seed=seed)
  return mixed.batch(local).slice(slice(process_index, None, process_count))

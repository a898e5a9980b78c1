"""The train split after quality filters, exact and near deduplication, as the data fields ask.

Stages run in order (Rae et al. 2021: filters, then deduplication): `data.quality_filter`, then
`data.exact_dedup`, then `data.near_dedup`. The kept documents and the counts of what each stage
removed are written once to `<cache>/clean/<key>.json`, next to the built dataset, and read back
by every later run; the key hashes the split's fingerprint and the settings. The validation split
is left as it is, so runs with and without cleaning are measured on the same text.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Iterator, Sequence

import ml_collections
import numpy as np

from research.data import corpus
from research.data import dedup
from research.data import quality
from research.run_dir import read_json
from research.run_dir import write_json_atomically

_READ_CHUNK = 1024  # documents per batched read
_FIELDS = ('quality_filter', 'quality', 'exact_dedup', 'near_dedup', 'near_dedup_threshold',
           'near_dedup_lsh_threshold', 'near_dedup_num_perm', 'near_dedup_shingle_words')


def enabled(data_config: ml_collections.ConfigDict) -> bool:
  return bool(data_config.quality_filter or data_config.exact_dedup or data_config.near_dedup)


def check_config(data_config: ml_collections.ConfigDict) -> None:
  """ValueError naming the field when a setting of an enabled stage is out of range."""
  if data_config.quality_filter:
    quality.check_config(data_config.quality)
  if data_config.near_dedup:
    dedup.check_near_settings(
        data_config.near_dedup_threshold, data_config.near_dedup_lsh_threshold,
        data_config.near_dedup_num_perm, data_config.near_dedup_shingle_words)


class Subset:
  """The documents `indices` of a source (len, [i], iteration), with its own fingerprint."""

  def __init__(self, source, indices: np.ndarray, fingerprint: str = ''):
    self._source = source
    self._indices = indices
    self.name = f'{getattr(source, "name", "texts")} (cleaned)'
    self.fingerprint = fingerprint

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, index: int) -> str:
    return self._source[int(self._indices[index])]

  def __getitems__(self, indices: Sequence[int]) -> list[str]:
    chosen = [int(self._indices[i]) for i in indices]
    if hasattr(self._source, '__getitems__'):  # a TextSource reads a batch at once
      return self._source.__getitems__(chosen)
    return [self._source[i] for i in chosen]

  def __iter__(self) -> Iterator[str]:
    for start in range(0, len(self), _READ_CHUNK):
      yield from self.__getitems__(range(start, min(start + _READ_CHUNK, len(self))))


def _settings(data_config: ml_collections.ConfigDict) -> dict:
  return {k: (data_config[k].to_dict() if k == 'quality' else data_config[k]) for k in _FIELDS}


def clean(source, data_config: ml_collections.ConfigDict, cache_dir: str, log=print):
  """`source` with the removed documents left out (itself when no stage is enabled)."""
  if not enabled(data_config):
    return source
  settings = _settings(data_config)
  key, path = _record_key_and_path(source, data_config, cache_dir)
  record = read_json(path)
  if record is None:
    record = run_stages(source, data_config)
    record.update(source=source.name, settings=settings)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_atomically(path, record)
    log(f'cleaned {source.name}: kept {len(record["kept"])} of {record["documents"]} documents '
        f'({path})')
  kept = np.asarray(record['kept'], np.int64)
  if not len(kept):
    raise ValueError(f'{source.name}: cleaning removed every document; see {path}')
  return Subset(source, kept, f'{source.fingerprint}|clean-{key}')


def _record_key_and_path(source, data_config: ml_collections.ConfigDict, cache_dir: str):
  key = hashlib.sha256(json.dumps([source.fingerprint, _settings(data_config)], sort_keys=True)
                       .encode()).hexdigest()[:16]
  return key, os.path.join(cache_dir, 'clean', f'{key}.json')


def train_record(data_config: ml_collections.ConfigDict) -> dict | None:
  """The counts cleaning wrote for `data.corpus`'s train split (None if not cleaned yet)."""
  if not enabled(data_config):
    return None
  source = corpus.load_split(data_config, 'train')
  return read_json(_record_key_and_path(source, data_config, corpus.cache_dir(data_config))[1])


def train_split(data_config: ml_collections.ConfigDict, log=print):
  """The train split of `data.corpus`, cleaned as the data fields ask."""
  return clean(corpus.load_split(data_config, 'train'), data_config,
               corpus.cache_dir(data_config), log)


def run_stages(texts: Sequence[str], data_config: ml_collections.ConfigDict) -> dict:
  """{documents, kept (indices), removed: {stage: count}, reasons: {rule: count}, ...}."""
  check_config(data_config)
  keep = np.ones(len(texts), bool)
  removed, reasons = {}, {}
  if data_config.quality_filter:
    for i, text in enumerate(texts):
      broken = quality.reasons(text, data_config.quality)
      for rule in broken:
        reasons[rule] = reasons.get(rule, 0) + 1
      keep[i] = not broken
    removed['quality_filter'] = int((~keep).sum())
  index = np.flatnonzero(keep)
  record = {}
  if data_config.exact_dedup:
    view = Subset(texts, index)
    duplicates = dedup.exact_duplicates(view)
    removed['exact_dedup'] = len(duplicates)
    index = index[dedup.keep_mask(len(index), duplicates)]
  if data_config.near_dedup:
    found = dedup.near_duplicates(
        Subset(texts, index), data_config.near_dedup_threshold,
        data_config.near_dedup_lsh_threshold, data_config.near_dedup_num_perm,
        data_config.near_dedup_shingle_words)
    removed['near_dedup'] = len(found.removed)
    record['near_duplicate_pairs'] = [[int(index[r]), int(index[m])]
                                      for r, m in zip(found.removed, found.matched)]
    record['lsh_candidates_rejected'] = found.candidates_rejected
    index = index[dedup.keep_mask(len(index), found.removed)]
  record.update(documents=len(texts), kept=[int(i) for i in index], removed=removed,
                quality_reasons=reasons)
  return record

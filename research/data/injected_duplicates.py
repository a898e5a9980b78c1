"""A corpus with injected duplicates, for measuring what deduplication does to training.

The documents of a corpus (both splits), plus exact copies and near copies (a few words
replaced) of some of its train documents, written as a `data.corpus='text_dir'` directory. Every
copy lands in the train split (splits are drawn from a hash of each text, so an exact copy
follows its original and a near copy is redrawn until its hash says train), so the validation
split is the original corpus's, clean.
"""

from __future__ import annotations

import collections
import json
import os
import random

import ml_collections

from research.data import corpus
from research.data import sources

RECORD_FILE = 'injected.json'


def near_copy(rng: random.Random, text: str, edits: int) -> str:
  """`text` with `edits` of its space-separated words replaced by new ones."""
  words = text.split(' ')
  for i in rng.sample(range(len(words)), min(edits, len(words))):
    words[i] = 'edit' + str(rng.randrange(10**6))
  return ' '.join(words)


def _train_near_copy(rng, text, edits, validation_fraction):
  while True:  # a near copy is a new text: redraw until its hash puts it in train
    copy = near_copy(rng, text, edits)
    if sources.text_unit(copy) >= validation_fraction:
      return copy


def write_injected_corpus(data_config: ml_collections.ConfigDict, out_dir: str, *,
                          num_originals: int = 12, exact_copies: int = 12, near_copies: int = 4,
                          near_edit_fraction: float = 0.005, seed: int = 0) -> dict:
  """Writes `data_config`'s corpus to `out_dir` (originals `doc_<i>.txt`) with
  `exact_copies` byte-identical and `near_copies` near copies (`near_edit_fraction` of the words
  replaced) of `num_originals` train documents chosen at random (`dup_<k>.txt`); returns, and
  writes as `out_dir/injected.json`, what was injected. Kept if already written."""
  for name, value in (('num_originals', num_originals), ('exact_copies', exact_copies),
                      ('near_copies', near_copies)):
    if value < 0:
      raise ValueError(f'{name}={value}: must be >= 0')
  path = os.path.join(out_dir, RECORD_FILE)
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  train = list(corpus.load_split(data_config, 'train'))
  validation = list(corpus.load_split(data_config, 'validation'))
  if num_originals > len(train):
    raise ValueError(f'num_originals={num_originals}: the train split has {len(train)} documents')
  rng = random.Random(seed)
  chosen = sorted(rng.sample(range(len(train)), num_originals))
  fraction = data_config.validation_fraction
  copies = []
  for i in chosen:
    copies += [train[i]] * exact_copies
    edits = max(1, round(near_edit_fraction * len(train[i].split(' '))))
    copies += [_train_near_copy(rng, train[i], edits, fraction) for _ in range(near_copies)]
  os.makedirs(out_dir, exist_ok=True)
  for i, text in enumerate(train + validation):
    with open(os.path.join(out_dir, f'doc_{i:05d}.txt'), 'w', encoding='utf-8') as f:
      f.write(text)
  for k, text in enumerate(copies):
    with open(os.path.join(out_dir, f'dup_{k:05d}.txt'), 'w', encoding='utf-8') as f:
      f.write(text)
  record = {'source_documents': len(train) + len(validation), 'train_documents': len(train),
            'validation_documents': len(validation), 'originals': chosen,
            'exact_copies': exact_copies * num_originals,
            'near_copies': near_copies * num_originals,
            'injected': len(copies), 'near_edit_fraction': near_edit_fraction, 'seed': seed}
  with open(path + '.tmp', 'w') as f:
    json.dump(record, f, indent=1)
  os.replace(path + '.tmp', path)
  return record


def audit(kept_train, out_dir: str, record: dict) -> dict:
  """What is left of the injection in `kept_train` (a train split, cleaned or not): copies still
  there (a group of an original and its copies keeps one), and false positives (documents that
  no copy duplicates yet were removed, or a group left with none). Either member of a group may
  be the one kept: dedup keeps the first in the split's order."""
  from research.data import dedup

  def read(name):
    with open(os.path.join(out_dir, name), encoding='utf-8') as f:
      return dedup.normalise(f.read())

  per_original = record['injected'] // max(1, len(record['originals']))
  group_of = {}  # normalised text -> the train index of its original
  for i in range(record['train_documents']):
    group_of.setdefault(read(f'doc_{i:05d}.txt'), i)
  for k in range(record['injected']):
    group_of.setdefault(read(f'dup_{k:05d}.txt'), record['originals'][k // per_original])
  kept = collections.Counter(group_of.get(dedup.normalise(text), -1) for text in kept_train)
  groups = set(group_of.values())
  return {'duplicates_left': sum(n - 1 for g, n in kept.items() if g in groups),
          'false_positives': len(groups - set(kept))}

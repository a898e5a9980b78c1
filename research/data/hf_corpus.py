"""Hugging Face datasets as a corpus (`data.corpus='hf'`): a hub dataset or a `save_to_disk` directory.

`data.hf_name` is a directory written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`, or
a hub name read with `datasets.load_dataset` (`data.hf_config`, `data.hf_split`), whole or, with
`data.hf_streaming`, streamed in the dataset's order without downloading the split (at most
`data.hf_max_documents` documents, 0 = all). The text is `data.hf_text_field`; blank documents are
dropped. Validation is `data.hf_validation_split` if given, else the documents of `hf_split` whose
text hash falls below `data.validation_fraction`: the rule of the other corpora, independent of
the order documents come in. A split's documents are held in memory as `str`s, fingerprinted by
their content, and feed the same tokenize-once grain pipeline (exact resume) as every corpus.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterator, Sequence

import ml_collections

from research.data import sources

_BATCH = 1024  # documents per batched read
_LOADED: dict[tuple, dict[str, 'DocumentList']] = {}


class DocumentList:
  """A split's documents as `str`s (len, [i], iteration), named and fingerprinted by content."""

  def __init__(self, texts: Sequence[str], name: str):
    self._texts = list(texts)
    self.name = name
    digest = hashlib.sha256()
    for text in self._texts:
      digest.update(hashlib.sha256(text.encode('utf-8')).digest())
    self.fingerprint = f'hf|{digest.hexdigest()}|{len(self._texts)}'

  def __len__(self) -> int:
    return len(self._texts)

  def __getitem__(self, index: int) -> str:
    return self._texts[index]

  def __iter__(self) -> Iterator[str]:
    return iter(self._texts)


def _open(d: ml_collections.ConfigDict, split: str):
  """The `datasets` split `split` of `data.hf_name` (streamed if `data.hf_streaming`)."""
  import datasets  # heavy: only for this corpus
  path = os.path.expanduser(d.hf_name)
  if os.path.isdir(path):
    loaded = datasets.load_from_disk(path)
    if isinstance(loaded, datasets.DatasetDict):
      if split not in loaded:
        raise ValueError(f'data.hf_split={split!r}: {path} holds the splits {sorted(loaded)}')
      loaded = loaded[split]
    return loaded.to_iterable_dataset() if d.hf_streaming else loaded
  try:
    return datasets.load_dataset(d.hf_name, d.hf_config or None, split=split,
                                 streaming=d.hf_streaming)
  except Exception as e:  # the hub, the cache and the builders raise many types
    raise RuntimeError(f'data.corpus=hf: cannot load split {split!r} of data.hf_name='
                       f'{d.hf_name!r} (data.hf_config={d.hf_config!r}): {e}') from e


def _texts(dataset, field: str, limit: int, name: str) -> Iterator[str]:
  """The `field` of each record, at most `limit` (0 = all), in the dataset's order."""
  columns = getattr(dataset, 'column_names', None)
  if columns is not None and field not in columns:
    raise KeyError(f'{name}: records have no field {field!r} (data.hf_text_field); they have '
                   f'{list(columns)}.')
  count = 0
  for batch in dataset.iter(batch_size=_BATCH):
    if field not in batch:
      raise KeyError(f'{name}: records have no field {field!r} (data.hf_text_field); they have '
                     f'{list(batch)}.')
    for text in batch[field]:
      if limit and count >= limit:
        return
      count += 1
      yield text if isinstance(text, str) else str(text)


def _read(d: ml_collections.ConfigDict, split: str) -> list[str]:
  name = f'data.hf_name={d.hf_name!r} split {split!r}'
  return list(_texts(_open(d, split), d.hf_text_field, d.hf_max_documents, name))


def load_split(d: ml_collections.ConfigDict, split: str) -> DocumentList:
  """The documents of `split` ('train' or 'validation') of the HF corpus `d` describes."""
  key = (d.hf_name, d.hf_config, d.hf_split, d.hf_validation_split, d.hf_text_field,
         bool(d.hf_streaming), int(d.hf_max_documents), float(d.validation_fraction))
  if key not in _LOADED:
    where = f'data.hf_name={d.hf_name!r}'
    texts = _read(d, d.hf_split)
    if d.hf_validation_split:
      splits = {'train': [t for t in texts if t.strip()],
                'validation': [t for t in _read(d, d.hf_validation_split) if t.strip()]}
    else:
      assigned = sources.assign_splits(((str(i), t) for i, t in enumerate(texts)),
                                       d.validation_fraction, where)
      splits = {s: [t for i, t in enumerate(texts) if assigned.get(str(i)) == s]
                for s in sources.SPLITS}
    names = {'train': d.hf_split, 'validation': d.hf_validation_split or
             f'{d.hf_split}, held out by data.validation_fraction'}
    _LOADED[key] = {s: DocumentList(splits[s], f'{where} ({names[s]})') for s in sources.SPLITS}
  return _LOADED[key][split]

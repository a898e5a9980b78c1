"""Text corpora as random-access sources of documents: `load_split(data_config, split)`.

`data.corpus` picks the source: 'default' (public-domain books and speeches fetched with npm),
'text_dir' (one document per `.txt` file), 'tfds' (an already-built TFDS text dataset by name) or
'hf' (a Hugging Face dataset: `hf_corpus.py`).
The first two are written once as a TFDS `array_record` dataset under the cache directory.
`.txt` files are read as UTF-8; invalid bytes become U+FFFD, with a warning naming the file.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Iterator, Sequence

import ml_collections
import tensorflow_datasets as tfds

from research.data import builder as builder_lib
from research.data import hf_corpus
from research.data import npm
from research.data import sources

CORPORA = ('default', 'text_dir', 'tfds', 'hf')
_READ_CHUNK = 1024  # documents per batched read when iterating a whole split


def cache_dir(data_config: ml_collections.ConfigDict) -> str:
  """`data.data_dir`, else $RESEARCH_DATA_DIR, else ~/.cache/research."""
  path = data_config.data_dir or os.environ.get('RESEARCH_DATA_DIR') or os.path.join(
      os.path.expanduser('~'), '.cache', 'research')
  return os.path.abspath(os.path.expanduser(path))


class TextSource:
  """A split as a sequence of `str` documents (len, [i], iteration) over a TFDS data source."""

  def __init__(self, records: Any, text_key: str, name: str, fingerprint: str):
    self._records = records
    self._text_key = text_key
    self.name = name  # how messages name the source
    self.fingerprint = fingerprint  # changes whenever the documents may have changed

  def __len__(self) -> int:
    return len(self._records)

  def _text(self, record: Any) -> str:
    try:
      text = record[self._text_key]
    except (KeyError, TypeError, IndexError):
      keys = list(record) if isinstance(record, dict) else type(record).__name__
      raise KeyError(f'{self.name}: records have no field {self._text_key!r} (data.tfds_text_key);'
                     f' they have {keys}.') from None
    return text.decode('utf-8') if isinstance(text, bytes) else str(text)

  def __getitem__(self, index: int) -> str:
    if not -len(self) <= index < len(self):
      raise IndexError(f'{self.name}: document {index} out of range for {len(self)} documents.')
    return self._text(self._records[index % len(self)])

  def __getitems__(self, indices: Sequence[int]) -> list[str]:
    return [self._text(r) for r in self._records.__getitems__(list(indices))]

  def __iter__(self) -> Iterator[str]:
    for start in range(0, len(self), _READ_CHUNK):
      yield from self.__getitems__(range(start, min(start + _READ_CHUNK, len(self))))


def corpus_config(data_config: ml_collections.ConfigDict) -> builder_lib.CorpusConfig:
  """The builder config for corpus 'default' or 'text_dir'; its name fingerprints the documents."""
  fraction = data_config.validation_fraction
  if data_config.corpus == 'default':
    pins = ','.join(f'{p.spec}={p.sha256}' for p in npm.DEFAULT_PACKAGES)
    key = hashlib.sha256(f'{pins}|{fraction!r}'.encode()).hexdigest()[:16]
    return builder_lib.CorpusConfig(
        name=f'default-{key}', source='default',
        npm_dir=os.path.join(cache_dir(data_config), 'npm'), validation_fraction=fraction)
  text_dir = os.path.abspath(os.path.expanduser(data_config.text_dir))
  content = sources.text_dir_fingerprint(text_dir)
  key = hashlib.sha256(f'{content}|{fraction!r}'.encode()).hexdigest()[:16]
  return builder_lib.CorpusConfig(
      name=f'text_dir-{key}', source='text_dir', text_dir=text_dir, validation_fraction=fraction)


_PREPARED: dict[tuple[str, str], builder_lib.ResearchCorpus] = {}


def prepare(data_config: ml_collections.ConfigDict) -> builder_lib.ResearchCorpus:
  """Builds (once; later calls reuse the files) and returns the corpus 'default' or 'text_dir'."""
  config = corpus_config(data_config)
  data_dir = os.path.join(cache_dir(data_config), 'tfds')
  key = (config.name, data_dir)
  if key not in _PREPARED or not os.path.isdir(_PREPARED[key].data_dir):
    corpus = builder_lib.ResearchCorpus(config=config, data_dir=data_dir,
                                        file_format='array_record')
    corpus.download_and_prepare()
    _PREPARED[key] = corpus
  return _PREPARED[key]


def _check_split(split: str) -> None:
  if split not in sources.SPLITS:
    raise ValueError(f'split={split!r}: expected one of {sources.SPLITS}.')


def _load_tfds(data_config: ml_collections.ConfigDict, split: str) -> TextSource:
  """A split of a built TFDS dataset `data.tfds_name` in `data.data_dir` (else the TFDS default)."""
  name = data_config.tfds_name
  if not name:
    raise ValueError("data.tfds_name is empty; data.corpus='tfds' needs a TFDS dataset name.")
  tfds_split = data_config[f'tfds_{split}_split']
  try:
    records = tfds.data_source(name, split=tfds_split, data_dir=data_config.data_dir or None)
  except Exception as e:  # TFDS raises many types: unknown name, unbuilt data, a bad split
    where = data_config.data_dir or 'the TFDS default directory'
    raise RuntimeError(
        f'data.corpus=tfds: cannot read split {tfds_split!r} of data.tfds_name={name!r} in '
        f'{where} (data.data_dir); it must be built in array_record format. TFDS said: {e}') from e
  info = getattr(records, 'dataset_info', None)
  version = getattr(info, 'version', '')
  where = f'{name}:{tfds_split}'
  fingerprint = f'tfds|{name}|{version}|{tfds_split}|{data_config.data_dir}|{len(records)}'
  return TextSource(records, data_config.tfds_text_key, f'TFDS dataset {where}', fingerprint)


def load_split(data_config: ml_collections.ConfigDict, split: str) -> TextSource:
  """The documents of `split` ('train' or 'validation') of `data.corpus` as `str`s."""
  _check_split(split)
  if data_config.corpus not in CORPORA:
    raise ValueError(f'data.corpus={data_config.corpus!r}: expected one of {CORPORA}.')
  if data_config.corpus == 'tfds':
    source = _load_tfds(data_config, split)
  elif data_config.corpus == 'hf':
    source = hf_corpus.load_split(data_config, split)
  else:
    corpus = prepare(data_config)
    records = corpus.as_data_source(split=split)
    config = corpus.builder_config
    source = TextSource(records, 'text', f'{builder_lib.describe(config)} ({split})',
                        f'{corpus.name}/{config.name}/{corpus.version}/{split}')
  if len(source) == 0:
    raise ValueError(f'{source.name} holds no documents.')
  return source

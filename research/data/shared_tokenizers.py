"""Data for many runs at once (a sweep): each corpus built once, each distinct tokenizer fit once.

Runs started in parallel would race to build the same corpus, and each would fit the same BPE
again. BPE fitting is deterministic, so the shared copy placed in a run directory is the tokenizer
the run would have fitted itself; only the time is saved.
"""

from __future__ import annotations

import collections
import hashlib
import json
import pathlib
from typing import Sequence

import ml_collections

from research import run_dir as run_dir_lib
from research.data import build
from research.data import clean
from research.data import corpus
from research.data import objectives
from research.data import tokenizer as tokenizer_lib
from research.data import tokenizer_kinds

# Data fields a fitted BPE does not depend on.
_NOT_TOKENIZER_FIELDS = ('seq_len', 'seed', 'eval_batches', 'tokenizer_path', 'unique_tokens',
                         'mixture', 'mixture_weight')  # fitted on data.corpus alone
# Data fields added since the first release, left out of the key at their defaults.
_ADDED_FIELDS = {'tokenizer': 'bpe', 'quality_filter': False, 'exact_dedup': False,
                 'near_dedup': False}
_CLEANING_SETTINGS = ('quality', 'near_dedup_threshold', 'near_dedup_lsh_threshold',
                      'near_dedup_num_perm', 'near_dedup_shingle_words')


def tokenizer_key(config: ml_collections.ConfigDict) -> str:
  """What a run's tokenizer depends on: its corpus, cleaning, split, kind, character cap and
  vocabulary size."""
  data = {k: v for k, v in config.data.to_dict().items() if k not in _NOT_TOKENIZER_FIELDS}
  if not clean.enabled(config.data):  # the cleaning settings matter only when cleaning is on
    for field in _CLEANING_SETTINGS:
      data.pop(field, None)
  for field, default in _ADDED_FIELDS.items():  # at their defaults: keys stay those of older runs
    if data.get(field) == default:
      del data[field]
  key = {'data': data, 'vocab_size': config.model.vocab_size}
  extra = objectives.extra_tokens(config.train, config.data.seq_len)
  if extra:  # an objective's mask or sentinel tokens (none for causal: keys stay as they were)
    key['extra_tokens'] = extra
  return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def prepare_data(runs: Sequence[tuple[str, ml_collections.ConfigDict, pathlib.Path]],
                 shared_dir, share_tokenizer: bool = True, log=print) -> None:
  """Builds each corpus of `runs` ((label, config, run_dir) triples) before they start and, with
  `share_tokenizer`, fits each distinct BPE once into `shared_dir` and copies it into the run
  directories.

  A run without `data.tokenizer_path` fits its own BPE on first start unless `tokenizer.json` is
  already in its directory. A failure here only skips the preparation: the run then meets the same
  error and records it in its own log.
  """
  groups = collections.defaultdict(list)
  for label, config, run_dir in runs:
    groups[tokenizer_key(config)].append((label, config, run_dir_lib.as_path(run_dir)))
  for key, members in groups.items():
    label, config, _ = members[0]
    unfitted = [run_dir for _, c, run_dir in members if not c.data.tokenizer_path
                and not (run_dir / run_dir_lib.TOKENIZER_FILE).exists()]
    shared = run_dir_lib.as_path(shared_dir) / f'{key}.json'
    shared_model = shared.with_suffix(tokenizer_kinds.SENTENCEPIECE_SUFFIX)
    try:
      source = clean.train_split(config.data, log)
      corpus.load_split(config.data, 'validation')
      if not share_tokenizer or not unfitted:
        continue
      if not shared.exists():
        log(f'fitting the shared tokenizer {shared.name} ({config.data.tokenizer}, vocab '
            f'{config.model.vocab_size}) for {len(unfitted)} run(s)')
        fitted = build.fit_tokenizer(config.data, config.model.vocab_size, source,
                                     objectives.extra_tokens(config.train, config.data.seq_len))
        if fitted.sentencepiece_model is not None:  # written first: the .json marks it complete
          shared.parent.mkdir(parents=True, exist_ok=True)
          _copy(fitted.sentencepiece_model, shared_model)
        tokenizer_lib.save_tokenizer(fitted.tokenizer, str(shared))
    except Exception as e:  # the runs meet the same error, each in its own log
      log(f'warning: could not prepare the data of {label!r} and its group: {e}')
      continue
    for run_dir in unfitted:
      if shared_model.exists():
        _copy(shared_model.read_bytes(), run_dir / run_dir_lib.SENTENCEPIECE_FILE)
      _copy(shared.read_bytes(), run_dir / run_dir_lib.TOKENIZER_FILE)


def _copy(data: bytes, path) -> None:
  run_dir_lib.write_atomically(path, lambda tmp: pathlib.Path(tmp).write_bytes(data))

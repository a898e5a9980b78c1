"""Deduplication at equal compute (issue 16): the default corpus with injected duplicates
(`research/data/injected_duplicates.py`: 12 train documents each copied 12 times exactly and 4
times with 0.5% of the words replaced), trained without cleaning and with exact + MinHash near
dedup, both measured on the same clean validation split (the default corpus's).

  python -m experiments.sweep --sweep=configs/sweeps/dedup.py --workdir=runs/equal/dedup
"""

import os
import pathlib

from research.config import load_python_file
from research.data import corpus
from research.data import injected_duplicates
from research.sweeps import generators

INJECTION = dict(num_originals=12, exact_copies=12, near_copies=4, near_edit_fraction=0.005,
                 seed=0)


def injected_dir(data_config) -> str:
  """Where the injected corpus is written: beside the built datasets, named by its settings."""
  name = '-'.join(f'{k}{v}' for k, v in sorted(INJECTION.items()))
  return os.path.join(corpus.cache_dir(data_config), 'injected_duplicates', name)


def get_sweep(num_steps: int | None = None, overrides=()):
  shared = load_python_file(pathlib.Path(__file__).parents[1] / 'equal_compute.py')
  c = shared.base(num_steps or shared.NUM_STEPS, overrides)
  text_dir = injected_dir(c.data)
  injected_duplicates.write_injected_corpus(c.data, text_dir, **INJECTION)
  c.data.update(corpus='text_dir', text_dir=text_dir)
  deduped = c.copy_and_resolve_references()
  deduped.data.update(exact_dedup=True, near_dedup=True)
  return [(label, generators.with_sweep(config, name='dedup', kind='equal_compute', label=label))
          for label, config in (('dedup=none', c), ('dedup=exact+near', deduped))]

"""Tokenizers at equal training compute, compared by validation bits per byte (issue 16).

One run per `data.tokenizer` kind, all of `equal_compute.base()`: the same model (its embedding
keeps 4096 rows even where char and byte use fewer), batch, sequence length and steps, so the
same FLOPs. A coarse tokenizer therefore sees more text in those FLOPs; bits per byte counts
the loss per byte of text, so it compares kinds (WordPiece's dropped whitespace is not counted).

  python -m experiments.sweep --sweep=configs/sweeps/tokenizers.py --workdir=runs/equal/tokenizers
"""

import pathlib

from research.config import load_python_file
from research.sweeps import generators
from research.data import tokenizer_kinds

KINDS = ('bpe', 'sentencepiece_unigram', 'sentencepiece_bpe', 'wordpiece', 'char', 'byte')


def get_sweep(num_steps: int | None = None, kinds=KINDS, overrides=()):
  shared = load_python_file(pathlib.Path(__file__).parents[1] / 'equal_compute.py')
  runs = []
  for kind in kinds:
    tokenizer_kinds.check_kind(kind)
    c = shared.base(num_steps or shared.NUM_STEPS, overrides)
    c.data.tokenizer = kind
    label = f'tokenizer={kind}'
    runs.append((label, generators.with_sweep(c, name='tokenizers', kind='equal_compute',
                                              label=label)))
  return runs

"""The optimal batch size against compute: five batch sizes (4 to 64 sequences of 64 tokens) at
the budgets and models of `learning_rate.py`, at one of its learning rates, 1.25e-2. Every run of
a budget trains the same tokens, so a larger batch takes fewer steps. On the default corpus these
short runs (0.3M to 1M tokens) do best at the smallest batch that trains stably: 4 sequences wins
at every budget, and 1 or 2 sequences diverged at this learning rate (so the batch-size law is
not bracketed here; docs/scaling_beyond_chinchilla.md).

  python -m experiments.sweep --sweep=configs/sweeps/batch_size.py --workdir=runs/batch
  python -m experiments.fit --workdir=runs/batch
"""

import pathlib

from research.config import load_python_file

BATCH_SIZES = (4, 8, 16, 32, 64)
LEARNING_RATE = 1.25e-2


def get_sweep():
  learning_rate = load_python_file(pathlib.Path(__file__).with_name('learning_rate.py'))
  return learning_rate.get_sweep(learning_rates=(LEARNING_RATE,), batch_sizes=BATCH_SIZES,
                                 name='batch_size')

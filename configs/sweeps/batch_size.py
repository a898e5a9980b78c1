"""The optimal batch size against compute: six batch sizes (1 to 32 sequences of 64 tokens) at the
budgets and models of `learning_rate.py`, at one of its learning rates, 1.25e-2. Every run of a
budget trains the same tokens, so a larger batch takes fewer steps. These runs are short (0.3M
to 1M tokens) and more steps win: grids of 8 to 64 sequences (at 4e-3) and 4 to 64 (at 1.25e-2)
found every budget's optimum at or below their smallest batch.

  python -m experiments.sweep --sweep=configs/sweeps/batch_size.py --workdir=runs/batch
  python -m experiments.fit --workdir=runs/batch
"""

import pathlib

from research.config import load_python_file

BATCH_SIZES = (1, 2, 4, 8, 16, 32)
LEARNING_RATE = 1.25e-2


def get_sweep():
  learning_rate = load_python_file(pathlib.Path(__file__).with_name('learning_rate.py'))
  return learning_rate.get_sweep(learning_rates=(LEARNING_RATE,), batch_sizes=BATCH_SIZES,
                                 name='batch_size')

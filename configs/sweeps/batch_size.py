"""The optimal batch size against compute: four batch sizes (8 to 64 sequences of 64 tokens) at
the budgets and models of `learning_rate.py`, at its learning rate 4e-3. Every run of a budget
trains the same tokens, so a larger batch takes fewer steps.

  python -m experiments.sweep --sweep=configs/sweeps/batch_size.py --workdir=runs/batch
  python -m experiments.fit --workdir=runs/batch
"""

import pathlib

from research.config import load_python_file

BATCH_SIZES = (8, 16, 32, 64)


def get_sweep():
  learning_rate = load_python_file(pathlib.Path(__file__).with_name('learning_rate.py'))
  return learning_rate.get_sweep(learning_rates=(4e-3,), batch_sizes=BATCH_SIZES,
                                 name='batch_size')

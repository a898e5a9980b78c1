"""The optimal batch size against compute: seven batch sizes (1 to 64 sequences of 64 tokens) at
two learning rates (5e-3 and 1.25e-2) at the budgets and models of `learning_rate.py`; per budget
each batch size counts at its better rate. Every run of a budget trains the same tokens, so a
smaller batch takes more steps. On the default corpus the optimum is bracketed at 2e10 (2
sequences) and 1.8e11 (4 sequences): batch_opt ~ C^0.20, interval [0.07, 0.46]
(docs/scaling_beyond_chinchilla.md). The first grids, at one rate, had their lowest loss at their
smallest batch everywhere.

  python -m experiments.sweep --sweep=configs/sweeps/batch_size.py --workdir=runs/batch
  python -m experiments.fit --workdir=runs/batch
"""

import pathlib

from research.config import load_python_file

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
LEARNING_RATES = (5e-3, 1.25e-2)
# At 1-2 sequences of 64 tokens a step's loss is noisy enough to cross the spike guard's 6 std devs
# of its 50-step window without diverging: the first grids' runs at these batches were stopped
# there at train losses of 4.4-5.0. Their guard is off (a non-finite loss still stops a run).
NO_SPIKE_GUARD_UP_TO = 2


def get_sweep():
  learning_rate = load_python_file(pathlib.Path(__file__).with_name('learning_rate.py'))
  runs = learning_rate.get_sweep(learning_rates=LEARNING_RATES, batch_sizes=BATCH_SIZES,
                                 name='batch_size')
  for _, config in runs:
    if config.train.batch_size <= NO_SPIKE_GUARD_UP_TO:
      config.train.spike_threshold = 0.0
  return runs

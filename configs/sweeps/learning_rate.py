"""The optimal learning rate against compute (DeepSeek LLM 2024): five peak learning rates, a
factor 2.5 apart, at each of three budgets, one two-layer model per budget (about 40 tokens per
parameter, widths from `sizing.FINE_TWO_LAYER_SHAPES`, so only the width changes with the
budget), batch 16. A first grid (1.5e-3 to 2.5e-2) found the two smaller budgets' optima at or
above its largest rate; this one reaches 7.8e-2.

  python -m experiments.sweep --sweep=configs/sweeps/learning_rate.py --workdir=runs/lr
  python -m experiments.fit --workdir=runs/lr
"""

import pathlib

from research.config import load_python_file
from research.sweeps import generators
from research.sweeps import sizing
from research.sweeps import tuning

BUDGETS = (2e10, 6e10, 1.8e11)
LEARNING_RATES = (2e-3, 5e-3, 1.25e-2, 3.1e-2, 7.8e-2)
BATCH_SIZES = (16,)


def get_sweep(learning_rates=LEARNING_RATES, batch_sizes=BATCH_SIZES, name='learning_rate'):
  base = load_python_file(pathlib.Path(__file__).with_name('cooldown.py')).base()
  return tuning.hyperparameter_sweep(base, BUDGETS, learning_rates, batch_sizes,
                                     shapes=sizing.FINE_TWO_LAYER_SHAPES,
                                     guess=generators.chinchilla_guess(40.0), name=name)

"""The optimal learning rate against compute (DeepSeek LLM 2024): four peak learning rates at
each of three budgets, one tiny model per budget (about 40 tokens per parameter), batch 16.

  python -m experiments.sweep --sweep=configs/sweeps/learning_rate.py --workdir=runs/lr
  python -m experiments.fit --workdir=runs/lr
"""

import pathlib

from research.config import load_python_file
from research.sweeps import generators
from research.sweeps import sizing
from research.sweeps import tuning

BUDGETS = (2e10, 6e10, 1.8e11)
LEARNING_RATES = (1.5e-3, 4e-3, 1e-2, 2.5e-2)
BATCH_SIZES = (16,)


def get_sweep(learning_rates=LEARNING_RATES, batch_sizes=BATCH_SIZES, name='learning_rate'):
  base = load_python_file(pathlib.Path(__file__).with_name('cooldown.py')).base()
  return tuning.hyperparameter_sweep(base, BUDGETS, learning_rates, batch_sizes,
                                     shapes=sizing.TINY_SHAPES,
                                     guess=generators.chinchilla_guess(40.0), name=name)

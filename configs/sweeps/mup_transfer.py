"""muP transfer on 2 CPU cores: five learning rates at widths 32, 64 and 128 (2 layers, heads of
16), under the standard parametrisation and under muP with base width 32, each on 1M tokens.
Under muP the best learning rate should stay put as the width grows; under the standard one it
should fall. A first version trained 250k tokens (244 steps): the models were still leaving the
unigram plateau (train loss ~5.35) when they stopped, at a step that varied with the learning
rate, and losses zigzagged by 0.3-0.4 between neighbouring rates.

  python -m experiments.sweep --sweep=configs/sweeps/mup_transfer.py --workdir=runs/mup
  python -m experiments.fit --workdir=runs/mup
"""

import pathlib

from research.config import load_python_file
from research.sweeps import transfer

WIDTHS = (32, 64, 128)
LEARNING_RATES = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
TOKENS = 1e6


def get_sweep():
  base = load_python_file(pathlib.Path(__file__).with_name('cooldown.py')).base()
  base.model.num_layers = 2
  return transfer.mup_transfer_sweep(base, WIDTHS, LEARNING_RATES, TOKENS, base_width=32)

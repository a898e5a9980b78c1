"""muP transfer on 2 CPU cores: four learning rates at widths 32, 64 and 128 (2 layers, heads of
16), under the standard parametrisation and under muP with base width 32, each on 250k tokens.
Under muP the best learning rate should stay put as the width grows; under the standard one it
should fall.

  python -m experiments.sweep --sweep=configs/sweeps/mup_transfer.py --workdir=runs/mup
  python -m experiments.fit --workdir=runs/mup
"""

import pathlib

from research.config import load_python_file
from research.sweeps import transfer

WIDTHS = (32, 64, 128)
LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2)
TOKENS = 2.5e5


def get_sweep():
  base = load_python_file(pathlib.Path(__file__).with_name('cooldown.py')).base()
  base.model.num_layers = 2
  return transfer.mup_transfer_sweep(base, WIDTHS, LEARNING_RATES, TOKENS, base_width=32)

"""Data-constrained runs (Muennighoff et al. 2023) on 2 CPU cores: a two-layer model of about 31k
parameters from the family of `cooldown.py` repeating 10k, 30k, 100k or 300k unique tokens for 2
to 32 epochs, each beside a fresh-data control of the same steps (40 runs). Without the controls
R* ran to the top of its range in every version: U = 100k and 300k for 2 to 8, then 2 to 32
epochs; then U down to 10k, whose few tokens the cosine runs' law does not reach.

Run it into the workdir of `cooldown_cosine.py` (fresh-data runs of other sizes), so that
experiments.fit takes the Chinchilla law from those and the controls and R* from the repeats:

  python -m experiments.sweep --sweep=configs/sweeps/cooldown_cosine.py --workdir=runs/cosine
  python -m experiments.sweep --sweep=configs/sweeps/data_constrained.py --workdir=runs/cosine
  python -m experiments.fit --workdir=runs/cosine
"""

import pathlib

from research.config import load_python_file
from research.sweeps import data_constrained
from research.sweeps import sizing

PARAMS = (31e3,)
UNIQUE_TOKENS = (1e4, 3e4, 1e5, 3e5)
EPOCHS = (2, 4, 8, 16, 32)


def get_sweep():
  base = load_python_file(pathlib.Path(__file__).with_name('cooldown.py')).base()
  return data_constrained.data_constrained_sweep(base, PARAMS, UNIQUE_TOKENS, EPOCHS,
                                                 shapes=sizing.FINE_TWO_LAYER_SHAPES,
                                                 fresh_controls=True)

"""Data-constrained runs (Muennighoff et al. 2023) on 2 CPU cores: a two-layer model of about 31k
parameters from the family of `cooldown.py` repeating 100k or 300k unique tokens for 2 to 32
epochs. A first version stopped at 8 epochs, where repeating cost nothing measurable (R* ran to
the top of its range).

Run it into the workdir of `cooldown_cosine.py` (fresh-data runs of the same models), so that
experiments.fit takes the Chinchilla law from those and the effective-data R* from these:

  python -m experiments.sweep --sweep=configs/sweeps/cooldown_cosine.py --workdir=runs/cosine
  python -m experiments.sweep --sweep=configs/sweeps/data_constrained.py --workdir=runs/cosine
  python -m experiments.fit --workdir=runs/cosine
"""

import pathlib

from research.config import load_python_file
from research.sweeps import data_constrained
from research.sweeps import sizing

PARAMS = (31e3,)
UNIQUE_TOKENS = (1e5, 3e5)
EPOCHS = (2, 4, 8, 16, 32)


def get_sweep():
  base = load_python_file(pathlib.Path(__file__).with_name('cooldown.py')).base()
  return data_constrained.data_constrained_sweep(base, PARAMS, UNIQUE_TOKENS, EPOCHS,
                                                 shapes=sizing.FINE_TWO_LAYER_SHAPES)

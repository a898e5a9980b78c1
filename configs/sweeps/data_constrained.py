"""Data-constrained runs (Muennighoff et al. 2023) on 2 CPU cores: the 31k-parameter model of
`cooldown.py` repeating 100k or 300k unique tokens for 2, 4 and 8 epochs.

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
EPOCHS = (2, 4, 8)


def get_sweep():
  base = load_python_file(pathlib.Path(__file__).with_name('cooldown.py')).base()
  return data_constrained.data_constrained_sweep(base, PARAMS, UNIQUE_TOKENS, EPOCHS,
                                                 shapes=sizing.TINY_SHAPES)

"""The cosine twin of `cooldown.py`: the same (N, D) points, each its own run with a cosine
schedule over its own steps (Hoffmann et al. 2022's setting), to set beside the cooldown law.

  python -m experiments.sweep --sweep=configs/sweeps/cooldown_cosine.py --workdir=runs/cosine
"""

import pathlib

from research.config import load_python_file


def get_sweep():
  return load_python_file(pathlib.Path(__file__).with_name('cooldown.py')).cosine_sweep()

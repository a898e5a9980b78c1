"""Mixture of Experts against dense at equal active compute: 3 budgets x (dense, 8 experts top-2,
4 experts top-1) two-layer models on the default corpus, 9 runs.

Per budget the dense model is the `sizing.TWO_LAYER_SHAPES` member nearest the quickstart sweep's
pilot law N_opt = 12.6k (C / 1e11)^0.86 (configs/sweeps/quickstart.py); each MoE model keeps its
shape and splits the feed-forward into experts of width d_ff / k, so a token uses the dense
model's parameters plus a small router (research/sweeps/moe.py). All runs of a budget train the
same tokens, D = C / (6 N_dense), with the default aux-loss weights (load balance 0.01, router
z 0.001). results.csv reports N = active parameters, N_total and num_experts for each run.

  python -m experiments.sweep --sweep=configs/sweeps/moe.py --workdir=runs/moe
"""

import pathlib

from research.config import load_python_file
from research.sweeps import moe
from research.sweeps import sizing

BUDGETS = (3.5e11, 1.2e12, 4e12)  # training FLOPs, C = 6 N_active D
EXPERTS = ((8, 2), (4, 1))  # (routed experts, experts per token): Mixtral-like, Switch-like
# The quickstart sweep's base config (corpus, row length, batch, schedule) and pilot law.
QUICKSTART = load_python_file(pathlib.Path(__file__).with_name('quickstart.py'))


def get_sweep():
  return moe.moe_sweep(QUICKSTART.base(), BUDGETS, EXPERTS, guess=QUICKSTART.pilot_law,
                       shapes=sizing.TWO_LAYER_SHAPES, name='moe')

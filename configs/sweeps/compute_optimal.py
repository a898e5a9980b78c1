"""A compute-optimal ladder: one run per budget at N_opt(C) = G C^a, D = C / (6 N).

The law here is Hoffmann et al.'s rule of thumb, D = 20 N (a = 0.5, G = 1 / sqrt(120)); replace
A and G with the exponent and coefficient that experiments.fit reports for your IsoFLOP sweep.

  python -m experiments.sweep --sweep=configs/sweeps/compute_optimal.py --workdir=runs/ladder
"""

import math

from research.config import base_config
from research.sweeps import generators
from research.sweeps import sizing

A = 0.5
G = 1 / math.sqrt(6 * 20)
BUDGETS = (1e12, 4e12, 1.6e13)


def base():
  c = base_config()
  c.data.corpus = 'default'
  c.data.seq_len = 128
  c.model.update(vocab_size=1024, max_seq_len=128)
  c.train.update(batch_size=16, learning_rate=3e-3, warmup_steps=100, eval_every=500,
                 checkpoint_every=500)
  return c


def get_sweep():
  return generators.compute_optimal_ladder(base(), BUDGETS, generators.power_law_allocation(A, G),
                                           shapes=sizing.TINY_SHAPES, name='compute_optimal')

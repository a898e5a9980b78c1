"""Warmup-stable-decay (Hagele et al. 2024) on 2 CPU cores: one constant-learning-rate run per
model size and a 20% linear cooldown branch per budget, at the (N, D) points of
`cooldown_cosine.py` (separate cosine runs), so the two laws can be compared with their compute.

Four tiny models per budget at four budgets, D = C / (6 N): one grid (12.5k to 84k parameters)
at the three smaller budgets, the setting where one constant run per size serves every budget,
moved up one size at the largest (31k to 113k), where the optimum has moved up.

  python -m experiments.sweep --sweep=configs/sweeps/cooldown.py --workdir=runs/cooldown
  python -m experiments.fit --workdir=runs/cooldown
"""

from research.config import base_config
from research.sweeps import cooldown
from research.sweeps import generators
from research.sweeps import sizing

BUDGETS = (3e10, 9e10, 2.7e11, 8.1e11)  # training FLOPs, C = 6 N D


def grid_centre(budget: float) -> float:
  """The size the grid is centred on (log-spaced over a factor 7 around it)."""
  return 30e3 if budget < 5e11 else 55e3


GRID = dict(num_sizes=4, span=7.0, shapes=sizing.TINY_SHAPES, guess=grid_centre)
FRACTION = 0.2


def base():
  c = base_config()
  c.data.corpus = 'default'
  c.data.seq_len = 64
  c.model.update(vocab_size=512, max_seq_len=64)
  c.train.update(batch_size=16, learning_rate=3e-3, warmup_steps=20, log_every=25,
                 eval_every=100_000, checkpoint_every=500)  # evaluate once, at the end
  return c


def get_sweep():
  return cooldown.cooldown_sweep(base(), BUDGETS, fraction=FRACTION, name='cooldown', **GRID)


def cosine_sweep():
  """The same (N, D) points as separate runs, each with its own cosine schedule."""
  return generators.isoflop_sweep(base(), BUDGETS, name='cooldown_cosine', **GRID)

"""Warmup-stable-decay (Hagele et al. 2024) on 2 CPU cores: one constant-learning-rate run per
model size and a 20% linear cooldown branch per budget, at the (N, D) points of
`cooldown_cosine.py` (separate cosine runs), so the two laws can be compared with their compute.

Six two-layer models (`sizing.FINE_TWO_LAYER_SHAPES`, 6.4k to 109k parameters, 1.6-2.1x apart)
at each of three budgets 3x apart, D = C / (6 N): one grid for every budget, so that one constant
run per size serves them all, wide enough to bracket each budget's optimum (the quickstart's
minima, at context 128, put them near 12k, 27k and 59k). A first grid (`TINY_SHAPES`, 12.5k to
84k at 3e10 to 2.7e11, 31k to 137k at 8.1e11) left 3 of 4 budgets' minima at its smallest size.

  python -m experiments.sweep --sweep=configs/sweeps/cooldown.py --workdir=runs/cooldown
  python -m experiments.fit --workdir=runs/cooldown
"""

from research.config import base_config
from research.sweeps import cooldown
from research.sweeps import generators
from research.sweeps import sizing

BUDGETS = (9e10, 2.7e11, 8.1e11)  # training FLOPs, C = 6 N D


def grid_centre(budget: float) -> float:
  """The size the grid is centred on (log-spaced over a factor 16 around it), every budget."""
  return 27.5e3


GRID = dict(num_sizes=6, span=16.0, shapes=sizing.FINE_TWO_LAYER_SHAPES, guess=grid_centre)
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

"""Warmup-stable-decay (Hagele et al. 2024) on 2 CPU cores: one constant-learning-rate run per
model size and a 20% linear cooldown branch per budget, at the (N, D) points of
`cooldown_cosine.py` (separate cosine runs), so the two laws can be compared with their compute.

Four tiny models (12.5k to 84k parameters, one grid at every budget: the setting where one
constant run per size serves all budgets) at three budgets; D = C / (6 N).

  python -m experiments.sweep --sweep=configs/sweeps/cooldown.py --workdir=runs/cooldown
  python -m experiments.fit --workdir=runs/cooldown
"""

from research.config import base_config
from research.sweeps import cooldown
from research.sweeps import generators
from research.sweeps import sizing

BUDGETS = (3e10, 9e10, 2.7e11)  # training FLOPs, C = 6 N D
GRID = dict(num_sizes=4, span=7.0, shapes=sizing.TINY_SHAPES,
            guess=lambda budget: 30e3)  # the same sizes at every budget
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

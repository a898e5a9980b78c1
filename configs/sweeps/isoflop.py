"""Hoffmann et al. (2022) approach 2: IsoFLOP profiles, 4 budgets x 7 model sizes.

Sizes come from the CPU family `sizing.TINY_SHAPES`, log-spaced over a factor 16 around
N = sqrt(C / (6 x 5)); each model trains on D = C / (6 N) tokens (N total parameters), its cosine
schedule decaying over exactly those steps. A few hours on 2 CPU cores; for larger budgets on an
accelerator swap in `sizing.CHINCHILLA_SHAPES` and a larger vocabulary and batch.

  python -m experiments.sweep --sweep=configs/sweeps/isoflop.py --workdir=runs/isoflop
"""

from research.config import base_config
from research.sweeps import generators
from research.sweeps import sizing

BUDGETS = (1e12, 3e12, 1e13, 3e13)


def base():
  c = base_config()
  c.data.corpus = 'default'
  c.data.seq_len = 128
  c.model.update(vocab_size=1024, max_seq_len=128)
  c.train.update(batch_size=16, learning_rate=3e-3, warmup_steps=100, eval_every=100_000,
                 checkpoint_every=500)
  return c


def get_sweep():
  return generators.isoflop_sweep(base(), BUDGETS, num_sizes=7, span=16.0,
                                  shapes=sizing.TINY_SHAPES,
                                  guess=generators.chinchilla_guess(tokens_per_param=5.0),
                                  name='isoflop')

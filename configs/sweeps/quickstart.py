"""A first IsoFLOP sweep on 2 CPU cores: 3 budgets x 5 tiny models on the default corpus.

About 20 minutes in total on a 2-core laptop; afterwards fit the compute-optimal law from the
results table with experiments.fit. Models come from `sizing.TINY_SHAPES` with a 512-token BPE (so
embeddings do not swamp the smallest models), log-spaced over a factor 8 around
N = sqrt(C / (6 x 40)): models this small are compute-optimal at many more tokens per parameter
than Chinchilla's 20 (fits of this sweep put it near 100), and 40 brackets the optimum while keeping
the smallest models' runs short. Each trains on D = C / (6 N) tokens, N the total parameter count,
with its cosine schedule decaying over exactly its own steps.

  python -m experiments.sweep --sweep=configs/sweeps/quickstart.py --workdir=runs/quickstart
"""

from research.config import base_config
from research.sweeps import generators
from research.sweeps import sizing

BUDGETS = (4e11, 1.2e12, 3.6e12)  # training FLOPs, C = 6 N D


def base():
  c = base_config()
  c.data.corpus = 'default'
  c.data.seq_len = 128
  c.model.update(vocab_size=512, max_seq_len=128)
  c.train.update(batch_size=16, learning_rate=3e-3, warmup_steps=50, log_every=25,
                 eval_every=100_000, checkpoint_every=250)  # evaluate once, at the end
  return c


def get_sweep():
  return generators.isoflop_sweep(base(), BUDGETS, num_sizes=5, span=8.0, shapes=sizing.TINY_SHAPES,
                                  guess=generators.chinchilla_guess(tokens_per_param=40.0),
                                  name='quickstart')

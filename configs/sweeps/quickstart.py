"""A first IsoFLOP sweep on 2 CPU cores: 3 budgets x 5-6 two-layer models on the default corpus.

Designed so that every budget's loss minimum lies between the sizes trained and the fits'
exponents come out with usable intervals: budgets 3.5x apart (1e11 to 1.2e12 FLOPs), each with 6
targets log-spaced over a factor 6 (1.43x apart) around a pilot law N_opt = 12.6k (C / 1e11)^0.86,
the line through the minima a pilot sweep of these models measured at 1e11 and 3.5e11. Models this
small are compute-optimal at ~100 tokens per parameter at 1e11, not Chinchilla's 20, and their
optimum grows faster than sqrt(C) (docs/scaling_beyond_chinchilla.md). Models come from
`sizing.TWO_LAYER_SHAPES` (sizes by width alone, fine steps from 7k) with a 512-token BPE; targets
that round to the same shape are trained once (17 runs). Each trains on D = C / (6 N) tokens, N the
total parameter count, with its cosine schedule decaying over exactly its own steps, and is
evaluated once, at the end, on 32 batches.

  python -m experiments.sweep --sweep=configs/sweeps/quickstart.py --workdir=runs/quickstart
"""

from research.config import base_config
from research.sweeps import generators
from research.sweeps import sizing

BUDGETS = (1e11, 3.5e11, 1.2e12)  # training FLOPs, C = 6 N D
# The pilot law N_opt = PILOT_N (C / PILOT_C)^PILOT_A: through the parabola minima a pilot sweep
# (7 sizes per budget around N = sqrt(C / (6 x 80))) measured, N = 12.6k at 1e11 and 37.1k at
# 3.5e11 FLOPs.
PILOT_C, PILOT_N, PILOT_A = 1e11, 12.6e3, 0.86


def pilot_law(budget: float) -> float:
  """The model size about which each budget's sizes are centred."""
  return PILOT_N * (budget / PILOT_C) ** PILOT_A


def base():
  c = base_config()
  c.data.corpus = 'default'
  c.data.seq_len = 128
  c.data.eval_batches = 32
  c.model.update(vocab_size=512, max_seq_len=128)
  c.train.update(batch_size=16, learning_rate=3e-3, warmup_steps=50, log_every=25,
                 eval_every=100_000, checkpoint_every=250)  # evaluate once, at the end
  return c


def get_sweep():
  return generators.isoflop_sweep(
      base(), BUDGETS, num_sizes=6, span=6.0, shapes=sizing.TWO_LAYER_SHAPES,
      guess=pilot_law, name='quickstart')

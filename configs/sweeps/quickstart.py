"""A first IsoFLOP sweep on 2 CPU cores: 4 budgets x 5-6 two-layer models on the default corpus.

Designed so that every budget's loss minimum lies between the sizes trained and the exponent of
N_opt ~ C^a comes out within about +-0.1: budgets 2.3x apart (1e11 to 1.2e12 FLOPs), each with 6
targets log-spaced over a factor 5 (1.38x apart) around the minima an earlier 3-budget design of
these models measured (12.6k at 1e11, 33.6k at 3.5e11, 77.1k at 1.2e12; straight between them in
log-log). Models this small are compute-optimal at ~100 tokens per parameter at 1e11, not
Chinchilla's 20, and their optimum grows faster than sqrt(C) (docs/scaling_beyond_chinchilla.md).
Models come from `sizing.FINE_TWO_LAYER_SHAPES` (sizes by width alone, neighbours within 1.35x)
with a 512-token BPE; targets that round to the same shape are trained once (23 runs). Each
trains on D = C / (6 N) tokens, N the total parameter count, with its cosine schedule decaying
over exactly its own steps, and is evaluated once, at the end, on 32 batches. Two runs at a time,
one core each, finish sooner on 2 cores than one run on both (these models are too small to use
two threads well):

  python -m experiments.sweep --sweep=configs/sweeps/quickstart.py --workdir=runs/quickstart \
      --max_concurrent=2
"""

import numpy as np

from research.config import base_config
from research.sweeps import generators
from research.sweeps import sizing

BUDGETS = (1e11, 2.3e11, 5.2e11, 1.2e12)  # training FLOPs, C = 6 N D; 2.3x apart
# The minima (parabola in log N) the previous design measured, 3 budgets x 5-6 sizes:
MEASURED_MINIMA = ((1e11, 12.6e3), (3.5e11, 33.6e3), (1.2e12, 77.1e3))  # (C, N_opt)
# The pilot law through a first pilot sweep's minima (N = 12.6k at 1e11, 37.1k at 3.5e11); the
# previous design and configs/sweeps/moe.py centre on it.
PILOT_C, PILOT_N, PILOT_A = 1e11, 12.6e3, 0.86


def pilot_law(budget: float) -> float:
  """The first pilot law, N_opt = PILOT_N (C / PILOT_C)^PILOT_A."""
  return PILOT_N * (budget / PILOT_C) ** PILOT_A


def measured_law(budget: float) -> float:
  """The model size about which each budget's sizes are centred: N_opt through the measured
  minima, straight between them in log-log (the local exponent falls from 0.78 to 0.68)."""
  log_c, log_n = np.log(np.array(MEASURED_MINIMA)).T
  return float(np.exp(np.interp(np.log(budget), log_c, log_n)))


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
      base(), BUDGETS, num_sizes=6, span=5.0, shapes=sizing.FINE_TWO_LAYER_SHAPES,
      guess=measured_law, name='quickstart')

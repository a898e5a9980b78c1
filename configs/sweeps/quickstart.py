"""A first IsoFLOP sweep on 2 CPU cores: 3 budgets x 6-7 two-layer models on the default corpus.

Designed so that every budget's loss minimum lies between the sizes trained and the fits'
exponents come out with usable intervals: budgets 3.5x apart (1e11 to 1.2e12), each with 7 targets
log-spaced over a factor 8 (a factor 1.41 apart) around a pilot law N = sqrt(C / (6 x 80)): models
this small are compute-optimal at many more tokens per parameter than Chinchilla's 20 (the first
release's sweep put its 4e11 minimum at N = 31k, 68 tokens per parameter, and its 1.2e12 minimum at
its smallest size). Models come from `sizing.TWO_LAYER_SHAPES` (sizes by width alone, fine steps
from 7k) with a 512-token BPE; targets that round to the same shape are trained once (19 runs).
Each trains on D = C / (6 N) tokens, N the total parameter count, with its cosine schedule decaying
over exactly its own steps, and is evaluated once, at the end, on 32 batches.

  python -m experiments.sweep --sweep=configs/sweeps/quickstart.py --workdir=runs/quickstart
"""

from research.config import base_config
from research.sweeps import generators
from research.sweeps import sizing

BUDGETS = (1e11, 3.5e11, 1.2e12)  # training FLOPs, C = 6 N D
PILOT_TOKENS_PER_PARAM = 80.0  # the pilot law's D / N at the optimum


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
      base(), BUDGETS, num_sizes=7, span=8.0, shapes=sizing.TWO_LAYER_SHAPES,
      guess=generators.chinchilla_guess(tokens_per_param=PILOT_TOKENS_PER_PARAM), name='quickstart')

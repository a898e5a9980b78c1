"""Kaplan et al. (2020) L(N): five model sizes at a fixed aspect ratio, all on the same data.

Non-embedding sizes from 50k to 3M parameters, each trained on 5M tokens (about one pass over the
default corpus); a few hours on 2 CPU cores. Fit L(N) with experiments.fit.

  python -m experiments.sweep --sweep=configs/sweeps/kaplan_model_size.py --workdir=runs/kaplan_n
"""

from research.config import base_config
from research.sweeps import generators

PARAMS = (5e4, 1.5e5, 5e5, 1.5e6, 3e6)  # non-embedding
TOKENS = 5e6


def base():
  c = base_config()
  c.data.corpus = 'default'
  c.data.seq_len = 128
  c.model.update(vocab_size=4096, max_seq_len=128)
  c.train.update(batch_size=16, learning_rate=3e-3, warmup_steps=100, eval_every=500,
                 checkpoint_every=500)
  return c


def get_sweep():
  return generators.kaplan_model_size_sweep(base(), PARAMS, TOKENS, aspect_ratio=32.0, head_dim=16,
                                            name='kaplan_model_size')

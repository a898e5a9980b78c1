"""Kaplan et al. (2020) L(D): the tiny preset trained on five data sizes, 300k to 5M tokens.

Each run has its own cosine schedule over its own steps. Fit L(D) with experiments.fit.

  python -m experiments.sweep --sweep=configs/sweeps/kaplan_data_size.py --workdir=runs/kaplan_d
"""

from research.config import base_config
from research.sweeps import generators

TOKENS = (3e5, 6e5, 1.25e6, 2.5e6, 5e6)


def base():
  c = base_config()  # the model of configs/tiny.py: 4 layers of 128, 0.8M non-embedding params
  c.data.corpus = 'default'
  c.data.seq_len = 128
  c.model.update(vocab_size=4096, d_model=128, num_layers=4, num_heads=4, num_kv_heads=4,
                 d_ff=512, max_seq_len=128)
  c.train.update(batch_size=16, learning_rate=3e-3, warmup_steps=100, eval_every=500,
                 checkpoint_every=500)
  return c


def get_sweep():
  return generators.kaplan_data_size_sweep(base(), TOKENS, name='kaplan_data_size')
